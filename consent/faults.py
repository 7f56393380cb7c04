"""Fault tests' hooks, for every app (consent is the lowest one): a pause at a point where
a test kills the worker, to prove the work resumes. Each pause is a setting, 0 (no pause)
unless a fault test sets it: ``PRIVACY_FAULT_PAUSE_SECONDS`` (erasure and access exports),
``LEARNING_FAULT_PAUSE_SECONDS`` (model training), ``DASHBOARD_FAULT_PAUSE_SECONDS``
(rollups)."""

import time

from django.conf import settings


def fault_pause(setting: str = "PRIVACY_FAULT_PAUSE_SECONDS") -> None:
    """Fault tests' hook (``PRIVACY_FAULT_PAUSE_SECONDS``, or the ``*_FAULT_PAUSE_SECONDS``
    named): a window to kill the worker in. Always 0 in production."""
    seconds = float(getattr(settings, setting, 0) or 0)
    if seconds:
        time.sleep(seconds)
