"""Retention: each property's periods enforced daily over the registry, in batches, recorded."""

from datetime import timedelta

from django.conf import settings
from django.test import Client
from django.utils import timezone

from consent.hashing import visitor_key
from consent.models import AuditEntry, GpcEvidence, RetentionRun
from consent.selectors import retention_periods
from consent.services.retention import retention_policy_set, retention_purge
from consent.tasks import retention_purge_task
from personalization.decisions import DecideRequest, decide
from personalization.hotstate import decision_log_flush
from personalization.models import Decision, Event, QuarantinedEvent, Visitor
from personalization.permissions import MARKETING, PRIVACY_OFFICERS
from personalization.services.ingest import events_ingest
from tests.conftest import make_event


def traffic(shop, days_ago: int, visitor: str) -> None:
    """A visit (stored events, a quarantined one, a decision, GPC evidence) days ago."""
    then = timezone.now() - timedelta(days=days_ago)
    events_ingest(
        prop=shop.prop,
        events=[
            make_event(visitor_id=visitor, at=then - timedelta(seconds=5)),
            make_event(visitor_id=visitor, at=then - timedelta(seconds=4)),
            make_event("click", visitor_id=visitor, at=then, properties={}),  # quarantined
        ],
        now=then,
        gpc=True,
    )
    decide(shop.prop, DecideRequest(visitor, "s-1", []), now=then)
    decision_log_flush()  # with Redis, acknowledged decisions wait there for the flush
    # Evidence is stamped with the real clock; move this visit's to its day.
    GpcEvidence.objects.filter(visitor_key=visitor_key(shop.prop.pk, visitor)).update(at=then)


def test_retention_purge__old_rows_of_each_kind__deleted_recent_kept_and_recorded(
    shop, staff, consent
):
    # Given periods of 30 days for raw events, 7 for quarantine, 60 for the adjustment log
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    retention_policy_set(
        property_id=shop.prop.pk,
        periods={"raw_events": 30, "quarantine": 7, "adjustment_log": 60},
        user=officer,
    )
    for vid in ("old", "middle", "new"):
        consent(shop.prop, vid)
    traffic(shop, 45, "old")
    traffic(shop, 10, "middle")
    traffic(shop, 1, "new")
    # When the daily purge runs
    run = retention_purge(property_id=shop.prop.pk)
    # Then raw events older than 30 days are gone, quarantine older than 7, decisions 60
    assert set(Event.objects.values_list("visitor_id", flat=True)) == {"middle", "new"}
    assert set(Visitor.objects.values_list("visitor_id", flat=True)) == {"middle", "new"}
    assert set(QuarantinedEvent.objects.values_list("visitor_id", flat=True)) == {"new"}
    assert set(Decision.objects.values_list("visitor_id", flat=True)) == {"old", "middle", "new"}
    assert GpcEvidence.objects.count() == 2
    # and the run records what it removed, per store and model
    assert run.removed["personalization.events"] == {"personalization.Event": 2}
    assert run.removed["personalization.quarantine"] == {"personalization.QuarantinedEvent": 2}
    assert run.removed["consent.gpc_evidence"] == {"consent.GpcEvidence": 1}
    assert run.total == sum(n for per in run.removed.values() for n in per.values())
    assert run.cutoffs["raw_events"] < run.cutoffs["quarantine"]
    # When it runs again  Then nothing more is removed
    assert retention_purge(property_id=shop.prop.pk).total == 0


def test_retention_purge__small_batches__everything_old_removed(shop, consent, settings):
    # Given more old rows than one batch holds
    settings.RETENTION_PURGE_BATCH = 2
    consent(shop.prop, "old")
    then = timezone.now() - timedelta(days=500)
    events_ingest(
        prop=shop.prop,
        events=[make_event(visitor_id="old", at=then, session_id=f"s{i}") for i in range(5)],
        now=then,
    )
    # When the purge runs  Then all of them go, batch by batch
    run = retention_purge(property_id=shop.prop.pk)
    assert not Event.objects.exists()
    assert run.removed["personalization.events"] == {"personalization.Event": 5}


def test_retention_periods__no_policy__raw_events_follow_the_property(make_shop):
    shop = make_shop(retention_days=90)
    assert retention_periods(shop.prop.pk) == {
        "raw_events": 90,
        "quarantine": 30,
        "adjustment_log": 395,
        "survey_answers": 730,
    }


def test_retention_task__beat_schedule__daily_over_every_property(make_shop, consent):
    # Given the beat schedule and two properties with old events
    entry = settings.CELERY_BEAT_SCHEDULE["consent-retention-purge"]
    assert entry["task"] == retention_purge_task.name
    shops = [make_shop("A"), make_shop("B")]
    then = timezone.now() - timedelta(days=400)
    for shop in shops:
        consent(shop.prop, "v")
        events_ingest(prop=shop.prop, events=[make_event(visitor_id="v", at=then)], now=then)
    # When the task runs  Then each property is purged and recorded
    result = retention_purge_task.apply().get()
    assert {int(k): v for k, v in result.items()}[shops[0].prop.pk] >= 1
    assert RetentionRun.objects.count() == 2 and not Event.objects.exists()


def test_retention_policy__admin__officer_sets_periods_and_it_is_audited(shop, staff):
    # Given an officer of the shop
    client = Client()
    client.force_login(staff(PRIVACY_OFFICERS, shop.prop))
    # When they set the periods in the admin
    response = client.post(
        "/admin/consent/retentionpolicy/add/",
        {
            "property": shop.prop.pk,
            "raw_events_days": 180,
            "quarantine_days": 14,
            "adjustment_log_days": 365,
            "survey_answers_days": 365,
        },
    )
    # Then they are in force, and the change is audited with before and after
    assert response.status_code == 302, response.content.decode()[:2000]
    assert retention_periods(shop.prop.pk)["quarantine"] == 14
    entry = AuditEntry.objects.get(action="retention.changed")
    assert entry.details["quarantine"] == {"from": 30, "to": 14}
    # and marketing cannot open the page
    marketing = Client()
    marketing.force_login(staff(MARKETING, shop.prop))
    assert marketing.get("/admin/consent/retentionpolicy/").status_code == 403
