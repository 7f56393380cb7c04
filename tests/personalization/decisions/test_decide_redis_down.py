"""Redis stops while the storefront asks for decisions (issue 9, faults).

A throwaway ``redis-server`` on its own loopback port (with an append-only file, as
production runs it) holds the engine's hot state; stopping it does not touch the suite's
own Redis. While it is away, ``decide`` answers from the database path (counters, budgets
and the log in PostgreSQL/SQLite, written in the request's transaction) — the fallback,
not defaults. When it returns, decisions go back to Redis without a restart, and the
decisions it held pending are flushed then. The two paths keep separate counters, so a
cap may be exceeded by at most one cap per window per switch of path (documented in
``personalization/hotstate/``).
"""

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

from personalization import hotstate
from personalization.decisions import DecideRequest, decide
from personalization.models import Adjustment, Decision
from tests.conftest import needs
from tests.targeting import rule, slot

PORT = 56393


class ThrowawayRedis:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(PORT),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", PORT), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the throwaway redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: Redis syncs its append-only file and exits
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    needs(shutil.which("redis-server") is not None, "this test needs redis-server")
    server = ThrowawayRedis(tmp_path)
    server.start()
    try:
        with override_settings(DECIDE_REDIS_URL=f"redis://127.0.0.1:{PORT}/0"):
            yield server
    finally:
        server.stop()
        hotstate._down_until = 0.0


def test_decide__redis_stops_and_returns__answers_throughout_then_resumes(
    throwaway_redis, shop, consent
):
    # Given a rule capped once a session (no stickiness, so each page counts), from Redis
    shop.prop.holdout_pct = 0
    shop.prop.session_stickiness = False
    shop.prop.save()
    slot(shop.prop, "headline", {"short": {"text": "x"}})
    rule(shop.prop, "once", "headline", "short", cap_per_session=1)
    consent(shop.prop, "v-1")

    def ask(visitor: str = "v-1") -> object:
        return decide(shop.prop, DecideRequest(visitor, "s-1", ["headline"]))

    first = ask()
    assert first.answers["headline"].variant == "short"
    assert hotstate.pending_count() == 1 and not Decision.objects.exists()

    # When Redis stops
    throwaway_redis.stop()
    down = [ask(), ask()]
    # Then decide keeps answering, from the database path: logged at once, and the
    # database counter holds the cap for the rest of the outage (one extra application,
    # the documented bound: one cap per switch of path)
    assert [d.answers["headline"].variant for d in down] == ["short", "default"]
    assert all(d.logged for d in down)
    assert Decision.objects.count() == 2
    assert hotstate.pending_count() == 0  # nothing to read while it is away

    # When Redis returns (same append-only file), without restarting anything
    throwaway_redis.start()
    time.sleep(hotstate.DOWN_FOR + 0.1)
    back = ask()
    # Then decisions use Redis again: its counter still holds the cap, the entry is pending
    assert back.answers["headline"].variant == "default"
    assert {"slot": "headline", "candidate": "rule:once", "reason": "frequency_cap"} in (
        back.suppressed
    )
    assert hotstate.pending_count() == 2  # the one from before the outage survived
    # And a flush stores every acknowledged decision exactly once
    assert hotstate.decision_log_flush() == 2
    ids = {first.decision_id, back.decision_id, *(d.decision_id for d in down)}
    assert set(Decision.objects.values_list("decision_id", flat=True)) == ids
    assert Adjustment.objects.filter(is_default=False).count() == 2  # cap 1 + bound 1
