"""Dashboard reads on a PostgreSQL read replica, when one is configured.

With ``DATABASE_REPLICA_URL`` set, settings define a second database alias, ``replica``.
``ReplicaReadsMiddleware`` marks the requests whose reads may go there: ``GET``/``HEAD`` of
the paths in ``DATABASE_REPLICA_PATHS`` (the dashboards); ``ReplicaRouter`` then sends those
requests' reads of the product's own tables to ``replica``. Writes always go to ``default``,
and so does everything else: the storefront API and the decisions (which must read what
they just wrote), staff forms (read-after-write), Celery tasks, and, even inside a
dashboard request, the session, user and permission tables (a replica's lag must never log
anyone out or hide a grant).

A replica lags its primary by a moment: a dashboard may show figures a second old, which
its rollups already are. Without ``DATABASE_REPLICA_URL`` the router answers nothing and
every query uses ``default``.
"""

import contextvars
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse

REPLICA = "replica"
# The apps whose tables a dashboard may read from the replica.
REPLICA_APPS = frozenset({"personalization", "consent", "dashboard"})

_replica_reads: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "replica_reads", default=False
)


def replica_configured() -> bool:
    return REPLICA in connections.settings


class ReplicaRouter:
    def db_for_read(self, model: type, **hints: Any) -> str | None:
        if (
            _replica_reads.get()
            and model._meta.app_label in REPLICA_APPS  # type: ignore[attr-defined]
            and replica_configured()
        ):
            return REPLICA
        return None

    def db_for_write(self, model: type, **hints: Any) -> str | None:
        return "default"

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        return True  # one database: the replica holds the primary's rows

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        return db != REPLICA  # migrations reach the replica by replication


class ReplicaReadsMiddleware:
    """Marks a dashboard page's request: its reads may use the replica."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD") or not request.path.startswith(
            tuple(settings.DATABASE_REPLICA_PATHS)
        ):
            return self.get_response(request)
        token = _replica_reads.set(True)
        try:
            return self.get_response(request)
        finally:
            _replica_reads.reset(token)
