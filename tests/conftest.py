"""Shared fixtures. Data is built through the same services users trigger."""

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from personalization.cache import reset_all
from personalization.models import Property
from personalization.permissions import role_grant
from tests.factories import ALL_PURPOSES, ConsentFactory, PropertyFactory

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def needs(condition: bool, reason: str) -> None:
    """Skip when a service is missing on a laptop; under REQUIRE_SERVICES=1 it is a failure."""
    if condition:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


def hot_state_use(settings: Any, hot_state: str) -> None:
    """The engine's hot state in the database ("database") or in Redis ("redis", which a
    laptop without Redis skips)."""
    if hot_state == "database":
        settings.DECIDE_REDIS_URL = ""
    else:
        needs(bool(settings.DECIDE_REDIS_URL), "this test needs Redis (set REDIS_URL=redis://…)")


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


@pytest.fixture
def postgres_only() -> None:
    needs(is_postgres(), "this test needs PostgreSQL (set DATABASE_URL=postgres://…)")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if REQUIRE_SERVICES and skipped:
        reporter.write_line(f"REQUIRE_SERVICES=1: {len(skipped)} test(s) skipped; failing the run.")
        session.exitstatus = 1


@pytest.fixture(scope="session")
def _redis_cluster_answers() -> bool:
    """With REDIS_URL=redis+cluster://… (CI's second run of the Redis tests), whether the
    cluster answers."""
    from django.conf import settings

    from personalization.redis_client import connect, is_cluster

    if not is_cluster(settings.REDIS_URL):
        return True
    try:
        return bool(connect(settings.REDIS_URL, socket_connect_timeout=1).ping())
    except Exception:
        return False


@pytest.fixture(autouse=True)
def _redis_cluster(_redis_cluster_answers: bool) -> None:
    needs(
        _redis_cluster_answers,
        "REDIS_URL names a Redis Cluster that does not answer (start it: see .ci/run)",
    )


@pytest.fixture(autouse=True)
def _fresh_caches(_redis_cluster: None) -> None:
    """Row ids are reused between tests: caches keyed by id must not leak across them."""
    reset_all()  # with Redis, FLUSHDB: also the engine's hot state and pending decision log


@dataclass
class Shop:
    prop: Property
    pk: str
    sk: str

    def client(self, key: str | None = None, **headers: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key or self.pk}", **headers)
        return client


@pytest.fixture
def make_shop(db: Any) -> Callable[..., Shop]:
    def make(name: str = "Shop", origins: list[str] | None = None, **kwargs: Any) -> Shop:
        prop = PropertyFactory(
            name=name,
            origins=origins if origins is not None else ["https://shop.example"],
            **kwargs,
        )
        return Shop(prop=prop, pk=prop.raw_keys["publishable"], sk=prop.raw_keys["secret"])

    return make


@pytest.fixture
def shop(make_shop: Callable[..., Shop]) -> Shop:
    return make_shop()


@pytest.fixture
def consent(db: Any) -> Callable[..., None]:
    def grant(prop: Property, visitor_id: str, purposes: dict[str, bool] | None = None) -> None:
        ConsentFactory(
            property_id=prop.pk,
            visitor_id=visitor_id,
            purposes=ALL_PURPOSES if purposes is None else purposes,
        )

    return grant


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def make_event(
    type: str = "page_view",
    visitor_id: str = "v-1",
    session_id: str = "s-1",
    at: datetime | None = None,
    properties: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "type": type,
        "visitor_id": visitor_id,
        "session_id": session_id,
        "timestamp": iso(at or timezone.now() - timedelta(seconds=1)),
        "properties": properties if properties is not None else {},
        **extra,
    }


@pytest.fixture
def staff(db: Any) -> Callable[..., Any]:
    """A staff user holding ``role`` on the given properties (or none)."""
    counter = {"n": 0}

    def make(role: str | None = None, *props: Property, superuser: bool = False) -> Any:
        counter["n"] += 1
        user = get_user_model().objects.create_user(
            username=f"user{counter['n']}",
            password="pw-Long-enough-123",
            is_staff=True,
            is_superuser=superuser,
        )
        if role is not None:
            # (a transactional test's flush removes the migration-made groups)
            user.groups.add(Group.objects.get_or_create(name=role)[0])
        for prop in props:
            assert role is not None
            role_grant(user, prop, role)
        return user

    return make


from tests.browser import page  # noqa: E402, F401  (the headless-Chromium fixture)
