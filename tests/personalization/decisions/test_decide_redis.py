"""The engine's hot state in Redis: caps and budgets, the pending decision log and its
idempotent flush. Runs where REDIS_URL is set (CI); skipped locally without it. Caps under
concurrency: tests/personalization/decisions/test_decide.py (both paths); Redis stopping:
test_decide_redis_down.py."""

import pytest
from django.conf import settings

from personalization import hotstate
from personalization.decisions import DecideRequest, decide
from personalization.models import Adjustment, Decision, RuleCounter, SessionBudget
from tests.conftest import needs
from tests.targeting import rule, slot


@pytest.fixture
def redis_only() -> None:
    needs(bool(settings.DECIDE_REDIS_URL), "this test needs Redis (set REDIS_URL=redis://…)")


@pytest.fixture
def store(redis_only, shop, consent):
    shop.prop.holdout_pct = 0
    shop.prop.save()
    slot(shop.prop, "headline", {"short": {"text": "x"}})
    slot(shop.prop, "cta", {"b": {"label": "Buy"}})
    consent(shop.prop, "v-1")
    return shop


def test_hot_state__decision__pending_in_redis_until_flushed(store):
    # Given a rule that applies
    rule(store.prop, "r", "headline", "short", cap_per_session=1)
    # When the storefront asks
    result = decide(store.prop, DecideRequest("v-1", "s-1", ["headline", "cta"]))
    # Then it is acknowledged from Redis: pending there, not yet a row, no database counters
    assert result.logged and result.answers["headline"].variant == "short"
    assert hotstate.pending_count() == 1
    assert not Decision.objects.exists()
    assert not RuleCounter.objects.exists() and not SessionBudget.objects.exists()
    # When the log is flushed
    assert hotstate.decision_log_flush() == 1
    # Then the decision and each slot's answer are rows, and nothing is pending
    decision = Decision.objects.get(decision_id=result.decision_id)
    assert decision.personalized and decision.visitor_id == "v-1"
    assert sorted(
        Adjustment.objects.filter(decision=decision).values_list("slot_key", "is_default")
    ) == [("cta", True), ("headline", False)]
    assert hotstate.pending_count() == 0


def test_hot_state__entry_flushed_twice__stored_once(store):
    # Given a pending decision whose entry is queued twice (a flush that died between its
    # commit and its trim leaves the entry to be read again)
    decide(store.prop, DecideRequest("v-1", "s-1", ["headline"]))
    r = hotstate.client()
    assert r is not None
    log = hotstate.log_key(store.prop.pk, "v-1")
    (entry,) = r.lrange(log, 0, -1)
    hotstate.decision_log_flush()
    r.rpush(log, entry)
    # When it is flushed again
    assert hotstate.decision_log_flush() == 1
    # Then it is stored once
    assert Decision.objects.count() == 1 and Adjustment.objects.count() == 1


def test_hot_state__session_cap_and_budget__held_in_redis(store):
    # Given a rule capped once a session, and a session budget of one adjustment
    store.prop.max_adjustments_per_session = 1
    store.prop.save()
    rule(store.prop, "once", "headline", "short", cap_per_session=1)
    rule(store.prop, "cta", "cta", "b")
    # When the visitor sees two pages of one session, then a page of a new session
    first = decide(store.prop, DecideRequest("v-1", "s-1", ["headline", "cta"]))
    second = decide(store.prop, DecideRequest("v-1", "s-1", ["headline", "cta"]))
    third = decide(store.prop, DecideRequest("v-1", "s-2", ["headline"]))
    # Then the budget allowed one adjustment in s-1, which stays sticky, and the cap resets
    assert [a.is_default for a in first.answers.values()] == [False, True]
    assert {"slot": "cta", "candidate": "rule:cta", "reason": "session_budget"} in (
        first.suppressed
    )
    assert second.answers["headline"].variant == "short"  # sticky, not a new adjustment
    assert third.answers["headline"].variant == "short"
    hotstate.decision_log_flush()
    assert Adjustment.objects.filter(is_default=False).count() == 3


def test_hot_state__keys_of_one_visitor__one_hash_slot_with_their_log_shard():
    from redis.crc import key_slot

    from consent.hashing import visitor_key

    # Given a visitor's consent copy, counters, a session's budget, the signal copy and the
    # shard of the log their decisions go to
    keys = [
        hotstate._consent_key(7, visitor_key(7, "v-1"), 3),
        hotstate._counters_key(7, "v-1"),
        hotstate._budget_key(7, "v-1", "s-1"),
        hotstate._signals_key(7, "v-1"),
        hotstate.log_key(7, "v-1"),
    ]
    # Then they lie in one hash slot (a decision's script touches one slot of a cluster, its
    # first read one node)
    assert len({key_slot(k.encode()) for k in keys}) == 1
    # And visitors spread over every shard of the log
    shards = {hotstate.log_key(7, f"v-{i}") for i in range(2000)}
    assert len(shards) == hotstate.LOG_SHARDS
