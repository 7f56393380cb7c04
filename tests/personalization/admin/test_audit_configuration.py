"""The configuration audit (docs/CONTRACT.md's role table: marketing reads its own property's
configuration entries): every change staff make in the admin is an entry — who, what,
when, on which property — written in the same transaction; privacy admins write privacy
entries through their services, not configuration ones."""

from django.test import Client

from consent.models import AuditEntry
from personalization.models import ApiKey, EventType, QuarantinedEvent
from personalization.permissions import MARKETING, PRIVACY_OFFICERS
from personalization.services.ingest import events_ingest
from tests.conftest import make_event


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def config_entries(prop):
    return list(AuditEntry.objects.filter(kind="configuration", property=prop).order_by("at", "id"))


def test_config_audit__add_change_delete_in_the_admin__each_an_entry(shop, staff):
    user = staff(MARKETING, shop.prop)
    client = login(user)
    form = {"property": shop.prop.pk, "name": "video_play", "purpose": "analytics"}
    # When marketing adds an event type, widens its schema, then deletes it
    assert (
        client.post(
            "/admin/personalization/eventtype/add/", {**form, "schema": '{"type": "object"}'}
        ).status_code
        == 302
    )
    etype = EventType.objects.get(name="video_play")
    response = client.post(
        f"/admin/personalization/eventtype/{etype.pk}/change/",
        {**form, "schema": '{"type": "object", "properties": {"at_s": {"type": "number"}}}'},
    )
    assert response.status_code == 302
    response = client.post(f"/admin/personalization/eventtype/{etype.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not EventType.objects.exists()
    # Then each is a configuration entry naming who, what and the property
    entries = config_entries(shop.prop)
    assert [e.action for e in entries] == [
        "eventtype.added",
        "eventtype.changed",
        "eventtype.deleted",
    ]
    assert {e.target for e in entries} == {f"personalization.eventtype:{etype.pk}"}
    assert all(e.actor == user and e.actor_label == user.username for e in entries)
    assert entries[1].details["changes"] == [{"changed": {"fields": ["Schema"]}}]
    assert entries[0].details["object"] == str(etype)


def test_config_audit__actions__revoke_and_replay_entered(shop, staff, consent):
    user = staff(MARKETING, shop.prop)
    client = login(user)
    key = ApiKey.objects.filter(property=shop.prop).first()
    consent(shop.prop, "v-1")
    events_ingest(prop=shop.prop, events=[make_event("click", properties={})])
    ids = list(QuarantinedEvent.objects.values_list("pk", flat=True))
    client.post(
        "/admin/personalization/apikey/",
        {"action": "revoke_keys", "_selected_action": [key.pk]},
    )
    client.post(
        "/admin/personalization/quarantinedevent/",
        {"action": "replay", "_selected_action": ids},
    )
    actions = {e.action: e for e in config_entries(shop.prop)}
    assert actions["apikey.revoked"].target == f"personalization.apikey:{key.pk}"
    assert key.prefix in actions["apikey.revoked"].details["object"]
    assert actions["quarantinedevent.replay"].details["events"] == len(ids) == 1


def test_config_audit__marketing_reads_it__privacy_officer_does_not(shop, staff):
    marketing = login(staff(MARKETING, shop.prop))
    marketing.post(
        "/admin/personalization/eventtype/add/",
        {
            "property": shop.prop.pk,
            "name": "video_play",
            "purpose": "analytics",
            "schema": '{"type": "object"}',
        },
    )
    entry = config_entries(shop.prop)[0]
    page = marketing.get("/admin/consent/auditentry/").content.decode()
    assert "eventtype.added" in page
    officer = login(staff(PRIVACY_OFFICERS, shop.prop))
    assert "eventtype.added" not in officer.get("/admin/consent/auditentry/").content.decode()
    response = officer.get(f"/admin/consent/auditentry/{entry.pk}/change/")
    assert response.status_code == 404  # not among the entries an officer reads


def test_config_audit__privacy_admin_changes__a_privacy_entry_not_a_configuration_one(shop, staff):
    # When an officer sets the property's retention in the admin
    officer = login(staff(PRIVACY_OFFICERS, shop.prop))
    response = officer.post(
        "/admin/consent/retentionpolicy/add/",
        {
            "property": shop.prop.pk,
            "raw_events_days": 90,
            "quarantine_days": 30,
            "adjustment_log_days": 365,
            "survey_answers_days": 365,
        },
    )
    # Then the service's privacy entry records it, and no configuration entry repeats it
    assert response.status_code == 302, response.content.decode()[:2000]
    assert AuditEntry.objects.filter(
        kind="privacy", property=shop.prop, action="retention.changed"
    ).exists()
    assert not config_entries(shop.prop)


def test_config_audit__delete_selected__entries_and_rows_go_together(shop, staff):
    client = login(staff(MARKETING, shop.prop))
    types = [
        EventType.objects.create(property=shop.prop, name=f"t_{n}", schema={"type": "object"})
        for n in range(2)
    ]
    response = client.post(
        "/admin/personalization/eventtype/",
        {"action": "delete_selected", "_selected_action": [t.pk for t in types], "post": "yes"},
    )
    assert response.status_code == 302 and not EventType.objects.exists()
    assert sorted(e.target for e in config_entries(shop.prop)) == sorted(
        f"personalization.eventtype:{t.pk}" for t in types
    )
    assert {e.action for e in config_entries(shop.prop)} == {"eventtype.deleted"}
