"""Hostile input through the event schemas: staff-written patterns that backtrack
catastrophically (bounded at ingest, refused by the admin) and ``type`` values that are no
event type name (quarantined under "(invalid)", shown escaped to staff)."""

import json
import time

from django.test import Client

from personalization.models import Event, EventType, IngestStat, QuarantinedEvent
from personalization.permissions import MARKETING
from tests.conftest import make_event

URL = "/api/v1/events"
BATCH = 500  # the API's largest batch


def post(client, events):
    return client.post(URL, {"events": events}, format="json")


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def custom_type(prop, pattern: str) -> EventType:
    """A custom type whose one property must match ``pattern`` (written straight to the
    database, as before the admin refused such patterns)."""
    return EventType.objects.create(
        property=prop,
        name="coupon",
        schema={
            "type": "object",
            "properties": {"code": {"type": "string", "pattern": pattern}},
        },
    )


def coupons(values: list[str]) -> list[dict]:
    return [make_event("coupon", properties={"code": value}) for value in values]


# ------------------------------------------------------------------------ patterns at ingest


def test_events__nested_quantifier_pattern__500_hostile_events_answered_within_2_s(shop, consent):
    # Given a custom type whose pattern is the classic catastrophic one (Python's re spends
    # about 40 ms on each 20-character value below, seconds on 28)
    consent(shop.prop, "v-1")
    custom_type(shop.prop, "^(a+)+$")
    client = shop.client()
    # When a storefront key sends a full batch of values built to make it backtrack
    started = time.perf_counter()
    response = post(client, coupons(["a" * 19 + "!"] * BATCH))
    elapsed = time.perf_counter() - started
    # Then the batch is answered in under 2 s, every event quarantined for its pattern
    assert response.status_code == 200, response.content[:300]
    assert elapsed < 2.0, elapsed
    body = response.json()
    assert (body["accepted"], body["quarantined"]) == (0, BATCH)
    assert {e["path"] for e in body["errors"]} == {"properties.code"}
    assert not Event.objects.exists()


def test_events__pattern_past_its_time_limit__quarantined_with_clear_error_in_bounded_time(
    shop, consent
):
    # Given a custom type whose pattern backtracks for seconds on the regex engine too
    consent(shop.prop, "v-1")
    custom_type(shop.prop, "^(a|aa)+$")
    client = shop.client()
    good = coupons(["aaaa"])
    hostile = coupons(["a" * 27 + "!"] * (BATCH - 1))
    # When a batch holds one good value, then 499 built to backtrack
    started = time.perf_counter()
    response = post(client, good + hostile)
    elapsed = time.perf_counter() - started
    # Then the answer comes in under 2 s: the good event stored, every hostile one
    # quarantined with an error that says its pattern could not be checked in time
    assert response.status_code == 200, response.content[:300]
    assert elapsed < 2.0, elapsed
    body = response.json()
    assert (body["accepted"], body["quarantined"]) == (1, BATCH - 1)
    messages = [e["message"] for e in body["errors"]]
    assert all(m.startswith("could not be checked") for m in messages), set(messages)
    assert "ran past its 50 ms time limit" in messages[0], messages[0]
    assert "^(a|aa)+$" in messages[0]
    assert any("used up its 0.5 s" in m for m in messages)
    stored = QuarantinedEvent.objects.get(event_id=hostile[0]["event_id"])
    assert stored.errors[0]["message"] == messages[0]
    # And the type still works: the next batch's good value is stored
    again = post(client, coupons(["aa"])).json()
    assert (again["accepted"], again["quarantined"]) == (1, 0)


# -------------------------------------------------------------------- patterns in the admin


def add_type(client, prop, schema: dict, name: str = "coupon"):
    return client.post(
        "/admin/personalization/eventtype/add/",
        {"property": prop.pk, "name": name, "purpose": "analytics", "schema": json.dumps(schema)},
    )


def test_event_type_admin__patterns__catastrophic_refused_with_where_and_why_ordinary_saved(
    shop, staff
):
    client = login(staff(MARKETING, shop.prop))
    # When marketing saves a schema with a nested quantifier in a property's pattern
    nested = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^(a+)+$"}}}
    response = add_type(client, shop.prop, nested)
    # Then the form is shown again, saying which pattern, where, and why
    assert response.status_code == 200
    page = response.content.decode()
    assert "properties/code/pattern" in page and "nested quantifiers" in page
    # When a patternProperties key repeats overlapping alternatives (no nesting to see)
    overlapping = {"type": "object", "patternProperties": {"^(a|aa)+$": {"type": "number"}}}
    page = add_type(client, shop.prop, overlapping).content.decode()
    # Then it is refused too: it ran past the time limit on a text built to backtrack
    assert "patternProperties" in page and "takes longer than the 50 ms limit" in page
    assert not EventType.objects.exists()
    # When the patterns are of the kinds schemas use (a repeated group with its separator)
    ordinary = {
        "type": "object",
        "properties": {
            "host": {"type": "string", "pattern": r"^[a-z0-9]+(\.[a-z0-9]+)*$"},
            "ip": {"type": "string", "pattern": r"^\d{1,3}(\.\d{1,3}){3}$"},
            "sku": {"type": "string", "pattern": r"^sku-\d+$"},
            "email": {"type": "string", "pattern": r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$"},
        },
        "patternProperties": {"^x_[a-z_]+$": {"type": "string"}},
    }
    response = add_type(client, shop.prop, ordinary)
    # Then the type is saved
    assert response.status_code == 302, response.content.decode()[:2000]
    assert EventType.objects.get().schema == ordinary


def test_event_type_admin__name_no_event_can_carry__refused(shop, staff):
    # Given names the admin's slug field takes but the event envelope refuses
    client = login(staff(MARKETING, shop.prop))
    for name in ("Video-Play", "video-play", "9lives", "_hidden"):
        # When marketing saves a type under that name
        response = add_type(client, shop.prop, {"type": "object"}, name=name)
        # Then it is refused, saying what a name is
        assert response.status_code == 200, name
        assert "lowercase letter, then up to 63 lowercase letters" in response.content.decode()
    assert not EventType.objects.exists()


# ------------------------------------------------------------------------- type names at ingest

HOSTILE_TYPES = [
    "<script>alert(1)</script>",
    '=HYPERLINK("https://evil.example","x")',
    "Page_View",
    "page-view",
    "page_view\n",
    "x" * 65,
]


def test_events__type_not_a_type_name__quarantined_as_invalid_and_escaped_for_staff(
    shop, consent, staff
):
    # Given events whose type is markup, a formula, or otherwise no event type name
    consent(shop.prop, "v-1")
    events = [make_event(kind) for kind in HOSTILE_TYPES]
    # When a storefront sends them
    body = post(shop.client(), events).json()
    # Then each is quarantined for its type, none stored as an event
    assert (body["accepted"], body["quarantined"]) == (0, len(HOSTILE_TYPES))
    assert {e["path"] for e in body["errors"]} == {"type"}
    assert not Event.objects.exists()
    # and filed and counted as "(invalid)", never under what the sender wrote
    assert set(QuarantinedEvent.objects.values_list("event_type", flat=True)) == {"(invalid)"}
    assert set(IngestStat.objects.values_list("event_type", flat=True)) == {"(invalid)"}
    # And staff see the payload escaped in the quarantine admin
    client = login(staff(None, superuser=True))
    listing = client.get("/admin/personalization/quarantinedevent/").content.decode()
    assert "<script>alert(1)</script>" not in listing
    scripted = QuarantinedEvent.objects.get(event_id=events[0]["event_id"])
    page = client.get(f"/admin/personalization/quarantinedevent/{scripted.pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
