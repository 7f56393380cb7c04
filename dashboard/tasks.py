"""Celery beat keeps the dashboard rollups fresh. Both tasks are idempotent."""

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from celery import shared_task
from django.core.cache import cache
from django.db import OperationalError, connection

from personalization.models import Property

from .rollups import RollupResult, rollup_retention, rollups_run

LOCK_SECONDS = 30 * 60


@contextmanager
def exclusive(name: str) -> Iterator[bool]:
    """True when this run holds the lock. On PostgreSQL a session advisory lock, which the
    server releases when the holder's connection ends, so a worker killed mid-rollup does not
    leave it set; elsewhere (SQLite, one process) a lock in the shared cache."""
    key = f"dashboard:lock:{name}"
    if connection.vendor == "postgresql":
        # Its own connection: session locks are re-entrant within one session, and this one
        # ends (releasing the lock) with the process that holds it.
        with psycopg.connect(**connection.get_connection_params(), autocommit=True) as own:
            row = own.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [key]).fetchone()
            held = bool(row and row[0])
            yield held
        return
    token = uuid.uuid4().hex
    held = cache.add(key, token, LOCK_SECONDS)
    try:
        yield held
    finally:
        if held and cache.get(key) == token:
            cache.delete(key)


def _locked(name: str, run: Callable[[], list[RollupResult]]) -> dict[str, Any]:
    with exclusive(name) as held:
        if not held:
            return {"skipped": "another run holds the lock"}
        results = run()
    return {"runs": len(results), "rows": sum(r.rows for r in results)}


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def dashboard_rollups_task() -> dict[str, Any]:
    """Hourly, survey, segment, fate and consent rollups of every property."""
    return _locked("rollups", lambda: rollups_run())


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def dashboard_retention_task() -> dict[str, Any]:
    """Retention cohorts of every property (recomputed whole, daily)."""
    return _locked(
        "retention",
        lambda: [
            rollup_retention(property_id=pid)
            for pid in Property.objects.order_by("pk").values_list("pk", flat=True)
        ],
    )
