"""A short run of the load harness (benchmarks/load/run.py) as a test: no errors, and every
event the API acknowledged is in the database exactly once. Latency is reported, not asserted
(speed is compared in benchmarks/, never timed in tests)."""

import json
import subprocess
import sys

import pytest

from benchmarks.load import processes as procs
from tests.conftest import is_postgres, needs
from tests.servers import suite_database_url

DURATION = 20


@pytest.mark.django_db(transaction=True)
def test_load_smoke__mixed_storefront_load__no_errors_and_events_reconciled_exactly(tmp_path):
    needs(is_postgres(), "the load harness runs on PostgreSQL")
    needs(procs.have_redis_server(), "the load harness starts its own redis-server")
    # Given gunicorn, a Celery worker and beat on PostgreSQL and a Redis of their own
    report_path = tmp_path / "load.json"
    args = ["--duration", str(DURATION), "--clients", "3", "--database-url"]
    args += [suite_database_url(), "--out", str(report_path), "--logs", str(tmp_path / "logs")]
    # When a mixed storefront load runs against them
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.load.run", *args],
        cwd=procs.ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report_path.exists(), done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    # Then every endpoint was exercised without a single error
    assert set(report["endpoints"]) >= {"consent", "decide", "events", "survey_answer"}
    assert report["error_count"] == 0, report["errors"]
    # and every acknowledged event is stored exactly once
    reconciliation = report["reconciliation"]
    assert reconciliation["acknowledged"] > 0
    assert reconciliation["exact"], reconciliation
    # and the worker's queue was drained at the end
    assert report["queue_depth"]["last"] == 0, report["queue_depth"]
    assert done.returncode == 0, done.stdout[-2000:]
