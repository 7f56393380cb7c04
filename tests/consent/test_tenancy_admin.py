"""Staff see and change only the properties they hold, following docs/CONTRACT.md's role table."""

import hashlib
import re

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from consent.models import ConsentPolicy
from personalization.models import ApiKey, Event, EventType, Property, QuarantinedEvent
from personalization.permissions import ANALYSTS, MARKETING, PRIVACY_OFFICERS
from personalization.services.ingest import events_ingest
from tests.conftest import make_event

LISTS = {
    "property": "/admin/personalization/property/",
    "apikey": "/admin/personalization/apikey/",
    "eventtype": "/admin/personalization/eventtype/",
    "quarantine": "/admin/personalization/quarantinedevent/",
    "visitor": "/admin/personalization/visitor/",
    "policy": "/admin/consent/consentpolicy/",
    "record": "/admin/consent/consentrecord/",
    "quality": "/dashboard/data-quality/",
}

# (role, list) -> may open. From the role table in docs/CONTRACT.md.
MATRIX = {
    MARKETING: {"property", "apikey", "eventtype", "quarantine", "visitor", "quality"},
    ANALYSTS: {"property", "eventtype", "quarantine", "visitor", "quality"},
    PRIVACY_OFFICERS: {"property", "policy", "record"},
}


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def two_shops(make_shop, consent):
    a, b = make_shop("Alpha shop"), make_shop("Bravo shop")
    for shop in (a, b):
        consent(shop.prop, "v-1")
        events_ingest(prop=shop.prop, events=[make_event(), make_event("click", properties={})])
        EventType.objects.create(
            property=shop.prop, name=f"custom_{shop.prop.slug[:5]}", schema={"type": "object"}
        )
    return a, b


def test_roles__groups_created_by_migration(db):
    assert set(Group.objects.values_list("name", flat=True)) >= {
        MARKETING,
        ANALYSTS,
        PRIVACY_OFFICERS,
    }


@pytest.mark.parametrize("role", [MARKETING, ANALYSTS, PRIVACY_OFFICERS])
@pytest.mark.parametrize("page", list(LISTS))
def test_admin_lists__role_on_one_property__sees_only_it(two_shops, staff, role, page):
    a, b = two_shops
    client = login(staff(role, a.prop))
    response = client.get(LISTS[page])
    if page in MATRIX[role]:
        assert response.status_code == 200
        content = response.content.decode()
        assert "Bravo" not in content and b.prop.slug not in content
    else:
        assert response.status_code in (302, 403)


def test_admin__staff_without_any_role__sees_nothing(two_shops, staff):
    client = login(staff())
    for url in LISTS.values():
        response = client.get(url)
        assert response.status_code in (302, 403) or "Alpha" not in response.content.decode()


def test_admin__other_propertys_object__not_reachable(two_shops, staff):
    a, b = two_shops
    client = login(staff(MARKETING, a.prop))
    theirs = QuarantinedEvent.objects.get(property=b.prop)
    response = client.get(f"/admin/personalization/quarantinedevent/{theirs.pk}/change/")
    assert response.status_code in (302, 403, 404)
    their_type = EventType.objects.get(property=b.prop)
    post = client.post(
        f"/admin/personalization/eventtype/{their_type.pk}/change/",
        {"property": b.prop.pk, "name": "hacked", "purpose": "analytics", "schema": "{}"},
    )
    assert post.status_code in (302, 403, 404)
    their_type.refresh_from_db()
    assert their_type.name != "hacked"


def test_admin__analyst__cannot_change_event_types(two_shops, staff):
    a, _ = two_shops
    client = login(staff(ANALYSTS, a.prop))
    mine = EventType.objects.get(property=a.prop)
    client.post(
        f"/admin/personalization/eventtype/{mine.pk}/change/",
        {
            "property": a.prop.pk,
            "name": "renamed",
            "purpose": "analytics",
            "schema": '{"type": "object"}',
        },
    )
    mine.refresh_from_db()
    assert mine.name != "renamed"


def test_admin__marketing_creates_property__gets_policy_and_role(db, staff):
    user = staff(MARKETING)
    client = login(user)
    response = client.post(
        "/admin/personalization/property/add/",
        {
            "name": "New shop",
            "slug": "new-shop",
            "allowed_origins": "https://new.example",
            "timezone": "Europe/Paris",
            "retention_days": 90,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    prop = Property.objects.get(slug="new-shop")
    assert ConsentPolicy.objects.filter(property=prop, version=1).exists()
    assert user.has_perm("personalization.change_configuration", prop)
    assert client.get("/admin/personalization/property/").content.decode().count("New shop") >= 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("allowed_origins", "shop.example", "Line 1: “shop.example” is not an origin"),
        ("timezone", "Mars/Olympus", "Unknown time zone"),
        ("retention_days", "0", "between 1 and 3650"),
    ],
)
def test_admin__property_form__refuses_bad_values(db, staff, field, value, message):
    client = login(staff(MARKETING))
    data = {
        "name": "X",
        "slug": "x",
        "allowed_origins": "",
        "timezone": "UTC",
        "retention_days": 30,
        field: value,
    }
    response = client.post("/admin/personalization/property/add/", data)
    assert response.status_code == 200 and message in response.content.decode()
    assert not Property.objects.filter(slug="x").exists()


def test_admin__issue_key__shown_once_stored_hashed(two_shops, staff):
    a, _ = two_shops
    client = login(staff(MARKETING, a.prop))
    response = client.post(
        "/admin/personalization/apikey/add/",
        {"property": a.prop.pk, "kind": "secret", "name": "server"},
        follow=True,
    )
    raw = re.search(r"(sk_[A-Za-z0-9_\-]{20,})", response.content.decode()).group(1)
    key = ApiKey.objects.get(name="server")
    assert key.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert not ApiKey.objects.filter(key_hash=raw).exists() and raw not in key.prefix * 2
    again = client.get(f"/admin/personalization/apikey/{key.pk}/change/").content.decode()
    assert raw not in again


def test_admin__issue_key_for_other_property__refused(two_shops, staff):
    a, b = two_shops
    client = login(staff(MARKETING, a.prop))
    before = ApiKey.objects.filter(property=b.prop).count()
    client.post(
        "/admin/personalization/apikey/add/",
        {"property": b.prop.pk, "kind": "secret", "name": "sneaky"},
    )
    assert ApiKey.objects.filter(property=b.prop).count() == before


def test_admin__revoke_key__refused_by_api_after(two_shops, staff):
    a, _ = two_shops
    client = login(staff(MARKETING, a.prop))
    key = ApiKey.objects.get(property=a.prop, kind="publishable")
    client.post(
        "/admin/personalization/apikey/", {"action": "revoke_keys", "_selected_action": [key.pk]}
    )
    key.refresh_from_db()
    assert key.revoked_at is not None
    response = a.client().post("/api/v1/events", {"events": [make_event()]}, format="json")
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ('{"type": "strnig"}', "Not a valid JSON Schema"),
        ('{"type": "array"}', "properties are an object"),
        ("[1, 2]", "must be a JSON object"),
        ('{"properties": {"a": {"minimum": "ten"}}}', "Not a valid JSON Schema"),
    ],
)
def test_admin__event_type_with_invalid_schema__refused(two_shops, staff, schema, message):
    a, _ = two_shops
    client = login(staff(MARKETING, a.prop))
    response = client.post(
        "/admin/personalization/eventtype/add/",
        {"property": a.prop.pk, "name": "bad_type", "purpose": "analytics", "schema": schema},
    )
    assert response.status_code == 200 and message in response.content.decode()
    assert not EventType.objects.filter(name="bad_type").exists()


def test_admin__fix_schema_then_replay__quarantined_events_stored(shop, consent, staff):
    # Given events of a custom type whose schema was too strict
    consent(shop.prop, "v-1")
    etype = EventType.objects.create(
        property=shop.prop,
        name="video_play",
        schema={"type": "object", "properties": {"at_s": {"type": "integer"}}},
    )
    good_later = make_event("video_play", properties={"at_s": 2.5})
    hopeless = make_event("video_play", properties={"at_s": "soon"})
    events_ingest(prop=shop.prop, events=[good_later, hopeless])
    assert QuarantinedEvent.objects.count() == 2
    client = login(staff(MARKETING, shop.prop))
    # When staff widen the schema in the admin and replay both
    response = client.post(
        f"/admin/personalization/eventtype/{etype.pk}/change/",
        {
            "property": shop.prop.pk,
            "name": "video_play",
            "purpose": "analytics",
            "schema": '{"type": "object", "properties": {"at_s": {"type": "number"}}}',
        },
    )
    assert response.status_code == 302
    etype.refresh_from_db()
    assert etype.version == 2
    ids = list(QuarantinedEvent.objects.values_list("pk", flat=True))
    response = client.post(
        "/admin/personalization/quarantinedevent/",
        {"action": "replay", "_selected_action": ids},
        follow=True,
    )
    # Then one is stored, the other stays quarantined with its new error
    assert "1 stored" in response.content.decode()
    assert Event.objects.filter(type="video_play").count() == 1
    left = QuarantinedEvent.objects.get(status="quarantined")
    assert left.event_id is not None and str(left.event_id) == hopeless["event_id"]
    assert left.errors[0]["path"] == "properties.at_s" and left.replay_attempts == 1


def test_admin__analyst__cannot_replay(shop, consent, staff):
    consent(shop.prop, "v-1")
    events_ingest(prop=shop.prop, events=[make_event("click", properties={})])
    client = login(staff(ANALYSTS, shop.prop))
    ids = list(QuarantinedEvent.objects.values_list("pk", flat=True))
    client.post(
        "/admin/personalization/quarantinedevent/", {"action": "replay", "_selected_action": ids}
    )
    assert QuarantinedEvent.objects.get().replay_attempts == 0


def test_data_quality__counts_per_type_and_fate__own_property_only(two_shops, staff):
    a, _ = two_shops
    content = login(staff(ANALYSTS, a.prop)).get("/dashboard/data-quality/").content.decode()
    assert "Alpha shop" in content and "Bravo shop" not in content
    assert re.search(r'<code>click</code>.*?data-fate="quarantined">1<', content, re.S)
    assert re.search(
        r'<code>page_view</code>\s*</td>\s*<td class="num" data-fate="accepted">1<', content
    )


def test_data_quality__anonymous__redirected_to_login(db):
    response = Client().get("/dashboard/data-quality/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_admin_index__links_dashboards(two_shops, staff):
    a, _ = two_shops
    content = login(staff(MARKETING, a.prop)).get("/admin/").content.decode()
    assert 'href="/dashboard/data-quality/"' in content
