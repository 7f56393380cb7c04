"""Dashboard reads on a PostgreSQL read replica (personalization/db_router.py).

The second alias, ``replica``, is another connection to the suite's own test database (what
``DATABASE_REPLICA_URL`` with ``TEST: {"MIRROR": "default"}`` gives), opened read-only as a
hot standby is: a write routed there would fail. The tests commit (transactional), so the
second connection sees the rows the first wrote, as a replica would.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import DatabaseError, connections
from django.test.utils import CaptureQueriesContext

from dashboard.models import AdjustmentHourly
from personalization.db_router import REPLICA, ReplicaReadsMiddleware
from personalization.permissions import ANALYSTS
from tests.conftest import is_postgres, needs
from tests.dashboard.test_dashboard_pages import hourly, login, read_csv, url

WRITES = ("INSERT", "UPDATE", "DELETE")


@pytest.fixture
def replica(transactional_db: Any) -> Iterator[Any]:
    needs(is_postgres(), "the replica alias needs PostgreSQL (set DATABASE_URL=postgres://…)")
    conf = dict(connections["default"].settings_dict)
    conf["OPTIONS"] = {**conf.get("OPTIONS", {}), "options": "-c default_transaction_read_only=on"}
    conf["TEST"] = {"MIRROR": "default"}
    connections.settings[REPLICA] = conf
    # (connected here: the test case's guard refuses aliases it was not declared with)
    connections[REPLICA].connect()
    try:
        yield connections[REPLICA]
    finally:
        connections[REPLICA].close()
        del connections[REPLICA]
        del connections.settings[REPLICA]


def test_replica__dashboard_page__reads_the_replica_not_the_primary(replica, make_shop, staff):
    # Given a property with a rollup row, and an analyst
    shop = make_shop("Alpha shop")
    hourly(shop.prop, exposures=120, clicks=30, sessions=100, session_seconds=5000)
    viewer = login(staff(ANALYSTS, shop.prop))
    # When the analyst downloads the overview's engagement data
    with (
        CaptureQueriesContext(replica) as on_replica,
        CaptureQueriesContext(connections["default"]) as on_primary,
    ):
        rows = read_csv(viewer.get(url("overview", format="csv", chart="engagement")))
    # Then the figures are the row's, read on the replica, with nothing written there
    assert {r["group"]: r["exposures"] for r in rows}["Personalized"] == "120"
    replica_sql = [q["sql"] for q in on_replica.captured_queries]
    assert any("dashboard_adjustmenthourly" in sql for sql in replica_sql)
    assert not any(sql.lstrip().upper().startswith(WRITES) for sql in replica_sql)
    # and the primary served only the session, the user and their permissions
    primary_sql = " ".join(q["sql"] for q in on_primary.captured_queries)
    assert "dashboard_adjustmenthourly" not in primary_sql
    assert "django_session" in primary_sql


def test_replica__write_during_a_dashboard_request__goes_to_the_primary(replica, make_shop):
    # Given a request the middleware marks as a dashboard read
    shop = make_shop()
    seen: dict[str, Any] = {}

    def view(request: Any) -> Any:
        # When something writes during it (the replica refuses writes: read-only)
        row = hourly(shop.prop, exposures=7)
        seen["read"] = AdjustmentHourly.objects.get(pk=row.pk).exposures
        return "ok"

    request = type("Request", (), {"method": "GET", "path": "/dashboard/"})()
    with CaptureQueriesContext(replica) as on_replica:
        assert ReplicaReadsMiddleware(view)(request) == "ok"  # type: ignore[arg-type]
    # Then the write went to the primary, and the read to the replica (which has the row)
    assert seen["read"] == 7
    sql = [q["sql"].lstrip().upper() for q in on_replica.captured_queries]
    assert sql and all(s.startswith("SELECT") for s in sql)
    # (and the replica does refuse a write)
    with pytest.raises(DatabaseError, match="read-only"):
        AdjustmentHourly.objects.using(REPLICA).update(exposures=8)


def test_replica__staff_form_post_and_api__never_read_the_replica(replica, make_shop, staff):
    # Given an analyst on a property
    shop = make_shop()
    viewer = login(staff(ANALYSTS, shop.prop))
    # When they post to a dashboard URL and a storefront calls the API
    with CaptureQueriesContext(replica) as on_replica:
        viewer.post(url("overview"))
        shop.client().get("/api/v1/consent-policy")
    # Then the replica was not asked (read-after-write and decisions need the primary)
    assert on_replica.captured_queries == []
