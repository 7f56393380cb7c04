"""Erasure reaches every registered store, leaves no raw id anywhere, and can be resumed."""

from collections import Counter

import pytest
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from consent import registry
from consent.hashing import visitor_key
from consent.models import (
    AuditEntry,
    ConsentRecord,
    ErasureStep,
    PrivacyRequest,
    Suppression,
)
from consent.selectors import consent_effective, training_excluded_keys
from consent.services import erasure as erasure_services
from consent.tasks import erasure_task
from personalization.decisions import DecideRequest, decide
from personalization.models import Decision, Event, Visitor
from personalization.permissions import PRIVACY_OFFICERS
from personalization.services.ingest import events_ingest
from tests.conftest import make_event, needs
from tests.privacy import (
    media_root,
    raw_id,
    request_made,
    run_work,
    scan_db,
    scan_files,
    scan_redis,
    visitor_everywhere,
)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    """No test here writes archives to the real MEDIA_ROOT."""
    return media_root(settings, tmp_path)


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def delete_mode_counts(shop, vid) -> Counter:
    """Rows per model the delete-mode stores hold about the visitor."""
    counts: Counter = Counter()
    for store in registry.stores():
        if store.erase_mode == registry.DELETE:
            counts[store.model._meta.label] = max(
                counts[store.model._meta.label],
                store.queryset_for(shop.prop.pk, vid).count(),
            )
    return +counts


def removed_by_model(receipt) -> Counter:
    total: Counter = Counter()
    for step in receipt["stores"]:
        total.update(step["removed"])
    return total


def test_erasure__visitor_in_every_store__raw_id_in_no_column_and_no_file(shop, staff, media):
    # Given a visitor present in every store, an access export of them on disk,
    # and an erasure request an officer entered in the admin from an e-mail
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    vid = raw_id()
    visitor_everywhere(shop, vid)
    run_work(request_made(shop, vid, "access", officer))
    client = login(officer)
    response = client.post(
        "/admin/consent/privacyrequest/add/",
        {
            "property": shop.prop.pk,
            "kind": "erasure",
            "regulation": "gdpr",
            "visitor_id": vid,
            "contact": f"{vid}@mail.example",
            "received_on": timezone.now().date().isoformat(),
            "note": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    req = PrivacyRequest.objects.get(kind="erasure")
    for action in ("verify", "start"):
        client.post(
            f"/admin/consent/privacyrequest/{req.pk}/change/",
            {"action": action, "reason": "", "assign_to": ""},
        )
    req.refresh_from_db()
    assert req.status == "in_progress"
    assert scan_db(vid), "the scan must find the id before the erasure (sanity)"
    assert scan_files(media, vid), "the export archive holds the id before the erasure"
    expected = delete_mode_counts(shop, vid)

    # When the erasure runs
    req = run_work(req)

    # Then the id is in no text or JSON column of any model, and in no file the app wrote
    assert req.status == "completed"
    assert scan_db(vid) == []
    assert scan_files(media, vid) == []
    # and the receipt lists every registered store and what was removed from it
    receipt = req.receipt
    labels = [s["store"] for s in receipt["stores"]]
    assert {s.label for s in registry.stores()} <= set(labels)
    for label, n in expected.items():
        assert removed_by_model(receipt)[label] == n, label
    exports = next(s for s in receipt["stores"] if s["store"] == "consent.access_exports")
    assert exports["caches_and_files"] == 1 and exports["action"] == "erased"
    records = next(s for s in receipt["stores"] if s["store"] == "consent.records")
    assert records["action"] == "kept (keyed hash only)" and records["kept"] >= 2
    assert receipt["nothing_held"] is False and receipt["excluded_from_training"] is True
    # and what outlives it keeps only the keyed hash
    key = visitor_key(shop.prop.pk, vid)
    assert Suppression.objects.filter(property=shop.prop, visitor_key=key).exists()
    assert ConsentRecord.objects.filter(visitor_key=key).exists()
    assert req.visitor_id == "" and req.contact == "" and req.visitor_key == key
    assert AuditEntry.objects.filter(action="erasure.completed", property=shop.prop).exists()
    assert LogEntry.objects.filter(object_repr=str(req)).exists()


def test_erasure__later_events__dropped_and_decide_answers_defaults(shop, staff, consent):
    # Given an erased visitor who had granted everything
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    vid = raw_id()
    consent(shop.prop, vid)
    events_ingest(prop=shop.prop, events=[make_event(visitor_id=vid)])
    run_work(request_made(shop, vid, "erasure", officer))
    # When their events and a decision request arrive later
    result = events_ingest(
        prop=shop.prop, events=[make_event(visitor_id=vid), make_event(visitor_id=vid)]
    )
    answer = decide(shop.prop, DecideRequest(vid, "s-9", []))
    # Then the events are dropped, nothing is granted and nothing personalised
    assert result.dropped_no_consent == 2 and result.accepted == 0
    assert not Event.objects.filter(visitor_id=vid).exists()
    assert not Visitor.objects.filter(visitor_id=vid).exists()
    effective = consent_effective(shop.prop.pk, vid)
    assert effective.suppressed and not any(effective.purposes.values())
    assert answer.personalized is False
    # and the visitor is excluded from any later model training
    assert visitor_key(shop.prop.pk, vid) in training_excluded_keys(shop.prop.pk)


def test_erasure__visitor_with_no_data__completed_with_receipt_saying_so(shop, staff):
    # Given an erasure request for an id the shop never saw
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    # When it runs
    req = run_work(request_made(shop, raw_id("stranger"), "erasure", officer))
    # Then it completes with an empty receipt that says so, and the id is suppressed
    assert req.status == "completed"
    assert req.receipt["nothing_held"] is True
    assert "No data was held" in req.receipt["summary"]
    assert all(s["removed_total"] == 0 for s in req.receipt["stores"])
    assert Suppression.objects.filter(visitor_key=req.visitor_key).count() == 1


class Killed(BaseException):
    """What a worker killed mid-batch looks like to the code it was running."""


def test_erasure__killed_half_way__rerun_finishes_with_complete_receipt(
    shop, staff, consent, settings, monkeypatch
):
    # Given a visitor with several events, deleted one per batch
    settings.PRIVACY_ERASE_BATCH = 1
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    vid = raw_id()
    consent(shop.prop, vid)
    events_ingest(
        prop=shop.prop, events=[make_event(visitor_id=vid, session_id=f"s{i}") for i in range(4)]
    )
    expected = delete_mode_counts(shop, vid)
    req = request_made(shop, vid, "erasure", officer)
    # When the work stops after two steps, then is killed inside the events step
    erasure_services.erasure_run(request_id=req.pk, stop_after=2)
    real = erasure_services._add_counts
    calls = {"n": 0}

    def dying(step, counts, **kwargs):
        if step.store == "personalization.events":
            calls["n"] += 1
            if calls["n"] == 3:
                raise Killed()
        return real(step, counts, **kwargs)

    monkeypatch.setattr(erasure_services, "_add_counts", dying)
    with pytest.raises(Killed):
        erasure_services.erasure_run(request_id=req.pk)
    assert Event.objects.filter(visitor_id=vid).count() == 2  # two batches committed
    steps = ErasureStep.objects.filter(request=req)
    assert steps.filter(status="done").count() >= 2 and steps.filter(status="pending").exists()
    monkeypatch.setattr(erasure_services, "_add_counts", real)
    # and the task is run again
    erasure_task.apply(args=(req.pk,)).get()
    # Then it finishes, and the receipt counts every row exactly once
    req.refresh_from_db()
    assert req.status == "completed"
    assert not Event.objects.filter(visitor_id=vid).exists()
    removed = removed_by_model(req.receipt)
    for label, n in expected.items():
        assert removed[label] == n, label
    # and running it once more changes nothing
    receipt = req.receipt
    erasure_task.apply(args=(req.pk,)).get()
    req.refresh_from_db()
    assert req.receipt == receipt


def test_erasure__store_declaring_cache_keys__keys_deleted(shop, staff, consent):
    # Given a store that keeps a visitor's data in the cache (as signal caches do)
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    vid = raw_id()
    consent(shop.prop, vid)

    def keys(property_id: int, visitor_id: str) -> list[str]:
        return [f"tests:signals:{property_id}:{visitor_key(property_id, visitor_id)}"]

    registry.register(
        registry.VisitorStore(
            label="tests.cached_signals",
            model=Visitor,
            visitor_field="visitor_id",
            cache_keys=keys,
            description="Cached signals (test store).",
        )
    )
    try:
        cache.set(keys(shop.prop.pk, vid)[0], {"visitor": vid, "clicks": 3})
        # When the visitor is erased
        req = run_work(request_made(shop, vid, "erasure", officer))
    finally:
        registry.unregister("tests.cached_signals")
    # Then the key is gone and the receipt counts it
    assert cache.get(keys(shop.prop.pk, vid)[0]) is None
    step = next(s for s in req.receipt["stores"] if s["store"] == "tests.cached_signals")
    assert step["caches_and_files"] == 1


def test_erasure__under_redis__no_key_or_value_holds_the_raw_id(shop, staff, media):
    needs(bool(settings.REDIS_URL), "needs REDIS_URL (the cache on Redis)")
    # Given a visitor everywhere, with cached data under a registered store's key
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    vid = raw_id()
    visitor_everywhere(shop, vid)

    def keys(property_id: int, visitor_id: str) -> list[str]:
        return [f"tests:decision:{property_id}:{visitor_key(property_id, visitor_id)}"]

    registry.register(
        registry.VisitorStore(
            label="tests.cached_decisions",
            model=Decision,
            visitor_field="visitor_id",
            cache_keys=keys,
        )
    )
    try:
        cache.set(keys(shop.prop.pk, vid)[0], {"visitor_id": vid, "slots": {"headline": "x"}})
        urls = [settings.REDIS_URL]
        if settings.CELERY_BROKER_URL.startswith("redis"):
            urls.append(settings.CELERY_BROKER_URL)
        assert any(scan_redis(url, vid) for url in urls), "the scan finds the id (sanity)"
        # When the visitor is erased
        run_work(request_made(shop, vid, "erasure", officer))
    finally:
        registry.unregister("tests.cached_decisions")
    # Then no key or value in the cache or broker database holds the raw id
    for url in urls:
        assert scan_redis(url, vid) == [], url


def test_erasure__anonymising_store__replaces_the_id_with_an_unlinkable_pseudonym(
    shop, staff, consent
):
    # Given a store that keeps its rows (aggregates need them) but anonymises the visitor
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    vid = raw_id()
    consent(shop.prop, vid)
    events_ingest(prop=shop.prop, events=[make_event(visitor_id=vid) for _ in range(2)])
    import uuid

    registry.register(
        registry.VisitorStore(
            label="tests.anonymised_events",
            model=Event,
            visitor_field="visitor_id",
            erase="anonymise",
            anonymise={"visitor_id": lambda: f"erased-{uuid.uuid4().hex}", "context": {}},
        )
    )
    try:
        # When it is erased (the anonymising store runs after the deleting one, so here
        # its rows are already gone; run it alone to see what it does)
        step = ErasureStep(store="tests.anonymised_events")
        req = request_made(shop, vid, "erasure", officer)
        step.request, step.position = req, 999
        step.save()
        erasure_services._store_step(req, step, vid)
    finally:
        registry.unregister("tests.anonymised_events")
    # Then both rows carry the same pseudonym, not derived from the id
    ids = set(Event.objects.values_list("visitor_id", flat=True))
    assert len(ids) == 1 and vid not in next(iter(ids))
    assert ErasureStep.objects.get(pk=step.pk).removed == {"personalization.Event": 2}


def test_registry__store_erase_and_retention__checked_at_registration():
    # Given stores that erasure or retention could not honour
    bad = [
        registry.VisitorStore("t.a", Event, "visitor_id", retention="forever", time_field="x"),
        registry.VisitorStore("t.b", Event, "visitor_id", retention="raw_events"),
        registry.VisitorStore("t.c", Event, "visitor_id", erase="keep"),
        registry.VisitorStore("t.d", Event, "visitor_id", erase="anonymise"),
    ]
    # When they register, Then each is refused with the reason
    for store in bad:
        with pytest.raises(ValueError):
            registry.register(store)
    assert not {s.label for s in registry.stores()} & {"t.a", "t.b", "t.c", "t.d"}


def test_erasure__later_invalid_event_and_decision__store_no_raw_id(shop, staff, consent):
    # Given an erased visitor
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    vid = raw_id()
    consent(shop.prop, vid)
    run_work(request_made(shop, vid, "erasure", officer))
    # When an invalid event and a decision request arrive for them later
    events_ingest(prop=shop.prop, events=[make_event("click", visitor_id=vid, properties={})])
    decide(shop.prop, DecideRequest(vid, "s-1", ["headline"]))
    # Then nothing holding their id is stored
    assert scan_db(vid) == []
