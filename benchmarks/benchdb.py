"""A benchmark's own PostgreSQL database, migrated, with Django set up against it."""

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


@contextmanager
def django_database(
    pg: str,
    db: str,
    *,
    keep: bool,
    before_create: Callable[[str], None] | None = None,
    migrate_timeout: int = 600,
) -> Iterator[str]:
    """Create (or, with ``keep``, reuse) database ``db`` on server ``pg``, migrate it, set
    Django up against it (tasks in process, no Redis) and yield its URL; drop it after
    unless ``keep``. ``before_create(admin_url)`` runs before a new database is made."""
    if not db.startswith("bench"):
        raise SystemExit("the database name must start with 'bench' (it is dropped)")
    admin = f"{pg}/postgres"
    url = f"{pg}/{db}"
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db]).fetchone()
        if exists and not keep:
            conn.execute(f'DROP DATABASE "{db}" WITH (FORCE)')
            exists = None
        if not exists:
            if before_create:
                before_create(admin)
            conn.execute(f'CREATE DATABASE "{db}"')
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "personalization.settings",
        "DATABASE_URL": url,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench",
        "VISITOR_HASH_KEY": "bench",
        "TASKS_IN_PROCESS": "1",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    try:
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=BASE_DIR,
            env=env,
            check=True,
            timeout=migrate_timeout,
        )
        os.environ.update(env)
        sys.path.insert(0, str(BASE_DIR))
        import django

        django.setup()
        yield url
    finally:
        if "django" in sys.modules:
            from django.db import connections

            connections.close_all()
        if not keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            log(f"dropped {db}")
