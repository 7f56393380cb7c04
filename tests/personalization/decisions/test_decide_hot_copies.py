"""The engine's copies in Redis of each visitor's consent and live signals
(personalization/hotstate/): read in the decision's one round trip, written through by
the consent services and event ingest after their commit, filled in by a decision that
missed, never overwritten by an older value, removed by erasure and retention."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from consent import selectors as consent_selectors
from consent.hashing import visitor_key
from consent.services import consent_record
from consent.services.retention import retention_purge
from personalization import hotstate
from personalization.decisions import DecideRequest, decide
from personalization.models import Visitor
from personalization.services.ingest import events_ingest
from tests.conftest import ALL_PURPOSES, make_event
from tests.privacy import request_made, run_work
from tests.targeting import rule, slot

pytestmark = pytest.mark.usefixtures("redis_only")

WITHDRAWN = {**ALL_PURPOSES, "personalization": False}


@pytest.fixture
def redis_only() -> None:
    from tests.conftest import needs

    needs(bool(settings.DECIDE_REDIS_URL), "this test needs Redis (set REDIS_URL=redis://…)")


@pytest.fixture
def store(shop, consent):
    shop.prop.holdout_pct = 0
    shop.prop.save()
    slot(shop.prop, "headline", {"short": {"text": "x"}})
    # Applies once the session has three page views.
    rule(shop.prop, "engaged", "headline", "short", {"session.page_views": {"$gte": 3}})
    consent(shop.prop, "v-1")
    return shop


def _redis():
    r = hotstate.client()
    assert r is not None
    return r


def _copy_of_signals(prop, vid: str) -> dict[bytes, bytes]:
    return _redis().hgetall(hotstate._signals_key(prop.pk, vid))  # type: ignore[return-value]


def _consent_copy(prop, vid: str, epoch: int = 0):
    raw = _redis().get(hotstate._consent_key(prop.pk, visitor_key(prop.pk, vid), epoch))
    return None if raw is None else hotstate._consent_row(raw)


def _personalized_with_copies(prop) -> None:
    """v-1's three page views, then a personalized decision that copied their consent into
    Redis."""
    _page_views(prop, "v-1", 3)
    assert decide(prop, DecideRequest("v-1", "s-1", ["headline"])).personalized
    assert _consent_copy(prop, "v-1") is not None


def _page_views(prop, vid: str, n: int, session: str = "s-1") -> None:
    now = timezone.now()
    events = [
        make_event(visitor_id=vid, session_id=session, at=now - timedelta(seconds=10 - i))
        for i in range(n)
    ]
    assert events_ingest(prop=prop, events=events).accepted == n


def test_hot_copies__decision_misses__fills_both_then_reads_them_in_one_round_trip(
    store, django_assert_num_queries
):
    # Given a visitor with a session of two page views, nothing copied yet
    _page_views(store.prop, "v-1", 2)
    decide(store.prop, DecideRequest("v-1", "s-1", ["headline"]))  # warms rule set and policy
    assert _consent_copy(store.prop, "v-1") is not None
    assert _copy_of_signals(store.prop, "v-1")[b"rev"] == b"1"
    # When the storefront asks again
    with django_assert_num_queries(0):
        result = decide(store.prop, DecideRequest("v-1", "s-1", ["headline"]))
    # Then consent and signals came from Redis, and they are what the database says
    assert result.answers["headline"].variant == "default"  # 2 page views: no rule applies
    assert result.logged


def test_hot_copies__events_ingested__next_decision_sees_new_signals(
    store, django_capture_on_commit_callbacks
):
    # Given a decision that copied the visitor's signals (two page views)
    _page_views(store.prop, "v-1", 2)
    first = decide(store.prop, DecideRequest("v-1", "s-1", ["headline"]))
    assert first.answers["headline"].variant == "default"
    # When a third page view is ingested and committed
    with django_capture_on_commit_callbacks(execute=True):
        _page_views(store.prop, "v-1", 1)
    # Then the copy was written through at the new revision, and the next decision applies
    # the rule without reading the database's signals
    copy = _copy_of_signals(store.prop, "v-1")
    assert copy[b"rev"] == b"2"
    assert b"s:s-1" in copy
    assert Visitor.objects.get(visitor_id="v-1").state["rev"] == 2
    second = decide(store.prop, DecideRequest("v-1", "s-1", ["headline"]))
    assert second.answers["headline"].variant == "short"


def test_hot_copies__ingest_not_yet_committed__copy_dropped_so_no_stale_read(store):
    # Given copied signals (two page views)
    _page_views(store.prop, "v-1", 2)
    decide(store.prop, DecideRequest("v-1", "s-1", ["headline"]))
    assert _copy_of_signals(store.prop, "v-1")
    # When a third page view is stored in a transaction whose after-commit write never runs
    # here (the test's transaction is never committed)
    _page_views(store.prop, "v-1", 1)
    # Then the copy was dropped inside the transaction and the decision reads the database
    assert _copy_of_signals(store.prop, "v-1") == {}
    result = decide(store.prop, DecideRequest("v-1", "s-1", ["headline"]))
    assert result.answers["headline"].variant == "short"


@pytest.mark.parametrize("committed", [True, False], ids=["committed", "in-transaction"])
def test_hot_copies__consent_withdrawn__very_next_decision_not_personalized(
    store, django_capture_on_commit_callbacks, committed
):
    # Given a personalized decision whose consent was copied into Redis
    _personalized_with_copies(store.prop)
    # When the visitor withdraws consent to personalization
    with django_capture_on_commit_callbacks(execute=committed):
        consent_record(
            property_id=store.prop.pk,
            visitor_id="v-1",
            policy_version=1,
            purposes=WITHDRAWN,
            method="banner",
        )
    # Then the very next decision serves defaults, with the withdrawal as the record in force
    result = decide(store.prop, DecideRequest("v-1", "s-1", ["headline"]))
    assert not result.personalized
    assert {"slot": "headline", "candidate": "rule:engaged", "reason": "consent"} in (
        result.suppressed
    )
    latest = consent_selectors.consent_effective(store.prop.pk, "v-1")
    assert not latest.allows("personalization")
    copy = _consent_copy(store.prop, "v-1")
    if committed:
        # written through after the commit: the withdrawal itself
        assert copy is not None and copy[0] == latest.record_id
        assert "personalization" not in copy[1]
    else:
        # dropped inside the transaction, then filled in by the decision from the database
        assert copy is not None and copy[0] == latest.record_id


def test_hot_copies__older_fill__never_overwrites_a_newer_write(store):
    # Given the consent copy written through at the latest record
    keyed = visitor_key(store.prop.pk, "v-1")
    old = consent_selectors.latest_rows(store.prop.pk, [keyed])[keyed]
    consent_record(
        property_id=store.prop.pk,
        visitor_id="v-1",
        policy_version=1,
        purposes=WITHDRAWN,
        method="banner",
    )
    hotstate.consent_refresh(store.prop.pk, [keyed])
    new = consent_selectors.latest_rows(store.prop.pk, [keyed])[keyed]
    assert old is not None and new is not None and new[0] > old[0]
    # And signals written through at revision 2
    hotstate.signals_write(store.prop.pk, {"v-1": (2, {"rev": 2}, {"s-1": {"page_views": 9}})})
    # When a decision that read the database before those writes fills in what it read
    hotstate.fill(
        store.prop.pk,
        "v-1",
        "s-1",
        keyed,
        0,
        consent=old,
        signals=(1, {"rev": 1}, {"page_views": 1}),
    )
    # Then the newer copies stay
    assert _consent_copy(store.prop, "v-1")[0] == new[0]
    copy = _copy_of_signals(store.prop, "v-1")
    assert copy[b"rev"] == b"2" and copy[b"s:s-1"] == b'{"page_views":9}'
    # And a fill at the same revision adds the session it read, keeping the rest
    hotstate.fill(store.prop.pk, "v-1", "s-2", keyed, 0, signals=(2, {"rev": 2}, {"page_views": 4}))
    copy = _copy_of_signals(store.prop, "v-1")
    assert copy[b"s:s-1"] == b'{"page_views":9}' and copy[b"s:s-2"] == b'{"page_views":4}'
    # And a newer revision replaces the whole copy (its other sessions may be stale)
    hotstate.signals_write(store.prop.pk, {"v-1": (3, {"rev": 3}, {"s-2": {"page_views": 5}})})
    copy = _copy_of_signals(store.prop, "v-1")
    assert copy[b"rev"] == b"3" and b"s:s-1" not in copy


def test_hot_copies__erasure__signal_copy_deleted_and_consent_copy_suppressed(
    store, staff, django_capture_on_commit_callbacks
):
    from personalization.permissions import PRIVACY_OFFICERS

    # Given both copies in Redis
    _page_views(store.prop, "v-1", 3)
    decide(store.prop, DecideRequest("v-1", "s-1", ["headline"]))
    assert _copy_of_signals(store.prop, "v-1") and _consent_copy(store.prop, "v-1")
    # When the visitor is erased
    officer = staff(PRIVACY_OFFICERS, store.prop)
    with django_capture_on_commit_callbacks(execute=True):
        run_work(request_made(store, "v-1", "erasure", officer))
    # Then the signal copy is gone, the consent copy says suppressed, and the next
    # decision serves defaults without copying anything that names the visitor
    assert _copy_of_signals(store.prop, "v-1") == {}
    assert _consent_copy(store.prop, "v-1")[4] is True
    result = decide(store.prop, DecideRequest("v-1", "s-1", ["headline"]))
    assert not result.personalized and not result.logged
    assert _copy_of_signals(store.prop, "v-1") == {}


def test_hot_copies__retention_purges_the_visitor__signal_copy_deleted(
    store, django_capture_on_commit_callbacks
):
    # Given a visitor last seen long ago, whose signals a decision copied
    long_ago = timezone.now() - timedelta(days=400)
    events_ingest(
        prop=store.prop,
        events=[make_event(visitor_id="v-1", at=long_ago)],
        now=long_ago + timedelta(seconds=1),
    )
    decide(store.prop, DecideRequest("v-1", "s-1", ["headline"]))
    assert _copy_of_signals(store.prop, "v-1")
    # When retention purges the visitor
    with django_capture_on_commit_callbacks(execute=True):
        retention_purge(property_id=store.prop.pk)
    # Then the copy went with the rows
    assert not Visitor.objects.filter(visitor_id="v-1").exists()
    assert _copy_of_signals(store.prop, "v-1") == {}


def test_hot_copies__withdrawal_while_this_process_skips_redis__copy_still_dropped(store):
    import time

    # Given a personalized decision whose consent was copied into Redis
    _personalized_with_copies(store.prop)
    # When consent is withdrawn in the second this process skips Redis after a failure
    hotstate._down_until = time.monotonic() + 60
    try:
        consent_record(
            property_id=store.prop.pk,
            visitor_id="v-1",
            policy_version=1,
            purposes=WITHDRAWN,
            method="banner",
        )
    finally:
        hotstate._down_until = 0.0
    # Then the copy was dropped all the same, and once Redis is read again the next
    # decision does not personalize
    assert _consent_copy(store.prop, "v-1") is None
    assert not decide(store.prop, DecideRequest("v-1", "s-1", ["headline"])).personalized


@pytest.mark.parametrize("committed", [False, True])
def test_hot_copies__redis_unreachable_at_withdrawal__stale_copy_never_read_again(
    store, settings, django_capture_on_commit_callbacks, committed
):
    # Given a personalized decision whose consent (granted) was copied into Redis
    _personalized_with_copies(store.prop)
    # When the visitor withdraws while the hot-state Redis cannot be reached (a real
    # refused connection: nothing listens on port 1)
    real = settings.DECIDE_REDIS_URL
    settings.DECIDE_REDIS_URL = "redis://127.0.0.1:1/0"
    try:
        with django_capture_on_commit_callbacks(execute=committed):
            consent_record(
                property_id=store.prop.pk,
                visitor_id="v-1",
                policy_version=1,
                purposes=WITHDRAWN,
                method="banner",
            )
    finally:
        settings.DECIDE_REDIS_URL = real
        hotstate._down_until = 0.0  # and Redis answers again
    # Then the withdrawal is recorded, the granting copy is still there under the old
    # epoch, and the property's epoch moved on
    assert not consent_selectors.consent_effective(store.prop.pk, "v-1").allows("personalization")
    stale = _consent_copy(store.prop, "v-1", epoch=0)
    assert stale is not None and "personalization" in stale[1]
    store.prop.refresh_from_db()  # as the API key's property is, at least every second
    # (bumped by the failed drop, and again by the failed write-through after a commit)
    assert store.prop.hot_epoch == (2 if committed else 1)
    # And the next decision does not read it: defaults, the withdrawal in force
    result = decide(store.prop, DecideRequest("v-1", "s-1", ["headline"]))
    assert not result.personalized
    fresh = _consent_copy(store.prop, "v-1", epoch=store.prop.hot_epoch)
    assert fresh is not None and "personalization" not in fresh[1]


def test_hot_copies__erasure_while_this_process_skips_redis__redis_data_erased_all_the_same(
    store, staff, django_capture_on_commit_callbacks
):
    import time

    from personalization.models import Decision
    from personalization.permissions import PRIVACY_OFFICERS

    # Given a personalized decision: counters, a session budget, the signal copy and the
    # pending log entry in Redis
    _page_views(store.prop, "v-1", 3)
    assert decide(store.prop, DecideRequest("v-1", "s-1", ["headline"])).personalized
    r = _redis()
    assert r.exists(hotstate._counters_key(store.prop.pk, "v-1"))
    assert hotstate.pending_count() == 1
    # When the visitor is erased in the second this process skips Redis after a failure
    officer = staff(PRIVACY_OFFICERS, store.prop)
    hotstate._down_until = time.monotonic() + 60
    try:
        with django_capture_on_commit_callbacks(execute=True):
            run_work(request_made(store, "v-1", "erasure", officer))
    finally:
        hotstate._down_until = 0.0
    # Then their data in Redis went all the same: the pending entry was flushed (and its
    # rows erased), counters, budget and signal copy deleted
    assert hotstate.pending_count() == 0
    assert not Decision.objects.filter(property=store.prop, visitor_id="v-1").exists()
    assert not r.exists(hotstate._counters_key(store.prop.pk, "v-1"))
    assert not r.exists(hotstate._budget_key(store.prop.pk, "v-1", "s-1"))
    assert _copy_of_signals(store.prop, "v-1") == {}


def test_hot_copies__erasure_step_with_redis_unreachable__fails_so_the_task_retries(
    store, settings
):
    # Given the hot-state Redis cannot be reached (nothing listens on port 1)
    settings.DECIDE_REDIS_URL = "redis://127.0.0.1:1/0"
    # When the erasure's Redis step runs, Then it fails with a ConnectionError (which the
    # erasure task retries) instead of reporting nothing to erase
    with pytest.raises(ConnectionError):
        hotstate.visitor_erase(store.prop.pk, "v-1")
    with pytest.raises(ConnectionError):
        list(hotstate.decisions_export(store.prop.pk, "v-1"))
