"""Real server processes for tests, in production mode, on this test session's database."""

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.db import connection

from benchmarks.load import processes as procs


def suite_database_url() -> str:
    """The test database (transactional tests commit, so other processes see their rows)."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "postgres") + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def production_env(**variables: str) -> dict[str, str]:
    """A child process's settings in production mode: DEBUG off, the suite's own secrets (so
    keyed hashes agree across processes), nothing else inherited that was not asked for."""
    return {
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "VISITOR_HASH_KEY": settings.VISITOR_HASH_KEY,
        **variables,
    }


@contextlib.contextmanager
def gunicorn(env: dict[str, str], log: Path, workers: int = 2) -> Iterator[int]:
    """gunicorn serving this checkout with ``env``; yields its port."""
    port = procs.free_port(range(18200, 18300))
    server = procs.start_gunicorn(env, port, workers=workers, log=log)
    try:
        yield port
    finally:
        procs.stop(server)


def post_json(port: int, path: str, body: dict, key: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
