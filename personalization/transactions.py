"""Transactions that survive the database's concurrency refusals: a deadlock victim or a
serialization failure is rerun whole (it changed nothing) instead of failing the request.
Ingestion stores each batch this way."""

import logging
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError, connection, transaction

logger = logging.getLogger(__name__)
T = TypeVar("T")

DEADLOCK_ATTEMPTS = 3
RETRYABLE_SQLSTATES = {"40P01", "40001"}  # deadlock detected, serialization failure


def atomic_retrying(work: Callable[[], T]) -> T:
    """Run ``work`` in a transaction; rerun it whole when the database picked it as a
    deadlock victim (it then changed nothing), instead of failing the request."""
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                return work()
        except OperationalError as exc:
            sqlstate = getattr(exc.__cause__, "sqlstate", None)
            nested = connection.in_atomic_block
            if sqlstate not in RETRYABLE_SQLSTATES or nested or attempt == DEADLOCK_ATTEMPTS:
                raise
            logger.info("transaction retried after %s (attempt %d)", sqlstate, attempt)
    raise AssertionError("unreachable")
