"""Start-up refusal in production mode: a server process does not serve an outdated schema.

Called from ``personalization/wsgi.py``, which both ``gunicorn personalization.wsgi`` and
``manage.py runserver`` (through ``WSGI_APPLICATION``) import before serving. Missing required
settings are refused earlier, by settings.py itself (``ImproperlyConfigured`` naming the
setting).
"""

import logging

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor

logger = logging.getLogger(__name__)


def pending_migrations(alias: str = DEFAULT_DB_ALIAS) -> list[str]:
    connection = connections[alias]
    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    finally:
        connection.close()
    return [f"{migration.app_label}.{migration.name}" for migration, _ in plan]


def pending_migrations_refuse() -> None:
    """In production mode, raise ``ImproperlyConfigured`` naming the unapplied migrations.

    A database that cannot be reached is not a reason to refuse (a worker restarted during a
    short outage must come back and answer 503s): that is logged and the start goes on.
    """
    if settings.DEBUG:
        return
    try:
        pending = pending_migrations()
    except DatabaseError as exc:
        logger.warning("could not check for unapplied migrations: %s", exc)
        return
    if pending:
        shown = ", ".join(pending[:5]) + (", …" if len(pending) > 5 else "")
        raise ImproperlyConfigured(
            f"{len(pending)} database migration(s) are not applied ({shown}). Run "
            "'python manage.py migrate' before starting the server: in production mode "
            "(DJANGO_DEBUG unset) it refuses to serve a database whose schema is behind the code."
        )
