"""POST /api/v1/events: every event meets exactly one fate, bad input gets a 4xx."""

import json
import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from personalization.models import ApiKey, Event, EventType, IngestStat, QuarantinedEvent
from personalization.services.keys import api_key_revoke
from tests.conftest import make_event

URL = "/api/v1/events"


def post(client, events):
    return client.post(URL, {"events": events}, format="json")


def test_events__one_of_each_fate__counted_and_stored_once(shop, consent):
    # Given a visitor who granted everything and one who refused everything
    consent(shop.prop, "v-yes")
    consent(
        shop.prop,
        "v-no",
        {"analytics": False, "personalization": False, "granular_tracking": False},
    )
    stored = make_event(visitor_id="v-yes")
    duplicate = dict(stored)
    bad = make_event("scroll", visitor_id="v-yes", properties={"depth_pct": 150})
    dropped = make_event(visitor_id="v-no")
    # When the storefront sends them in one batch
    response = post(shop.client(), [stored, duplicate, bad, dropped])
    # Then each has exactly one fate
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "accepted": 1,
        "duplicates": 1,
        "quarantined": 1,
        "dropped_no_consent": 1,
        "errors": [
            {
                "index": 2,
                "event_id": bad["event_id"],
                "path": "properties.depth_pct",
                "message": "must be <= 100",
            }
        ],
    }
    assert list(Event.objects.values_list("event_id", flat=True)) == [uuid.UUID(stored["event_id"])]
    quarantined = QuarantinedEvent.objects.get()
    assert quarantined.payload == bad and quarantined.errors[0]["path"] == "properties.depth_pct"
    assert not Event.objects.filter(visitor_id="v-no").exists()


def test_events__retried_batch__stores_nothing_twice(shop, consent):
    consent(shop.prop, "v-1")
    batch = [make_event(), make_event("click", properties={"element_id": "cta"})]
    first = post(shop.client(), batch).json()
    second = post(shop.client(), batch).json()
    assert (first["accepted"], first["duplicates"]) == (2, 0)
    assert (second["accepted"], second["duplicates"]) == (0, 2)
    assert Event.objects.count() == 2


def test_events__retried_quarantined_event__kept_once(shop, consent):
    consent(shop.prop, "v-1")
    bad = make_event("click", properties={})
    assert post(shop.client(), [bad]).json()["quarantined"] == 1
    again = post(shop.client(), [bad]).json()
    assert (again["quarantined"], again["duplicates"]) == (0, 1)
    assert again["errors"][0]["path"] == "properties"
    assert QuarantinedEvent.objects.count() == 1


def test_events__bad_event__never_rejects_neighbours(shop, consent):
    consent(shop.prop, "v-1")
    events = [
        make_event(),
        "not an object",
        {"type": "page_view"},
        make_event(),
        make_event("nope_type"),
    ]
    body = post(shop.client(), events).json()
    assert body["accepted"] == 2 and body["quarantined"] == 3
    assert [e["index"] for e in body["errors"]] == [1, 2, 4]
    assert body["errors"][2]["path"] == "type"
    assert "unknown event type" in body["errors"][2]["message"]


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        (timedelta(minutes=6), "more than 5 minutes in the future"),
        (-timedelta(days=31), "older than the property's retention (30 days)"),
    ],
)
def test_events__timestamp_out_of_bounds__quarantined(make_shop, consent, offset, message):
    shop = make_shop(retention_days=30)
    consent(shop.prop, "v-1")
    event = make_event(at=timezone.now() + offset)
    body = post(shop.client(), [event]).json()
    assert body["quarantined"] == 1 and message in body["errors"][0]["message"]
    assert body["errors"][0]["path"] == "timestamp"
    assert not Event.objects.exists()


def test_events__timestamp_slightly_ahead__accepted(shop, consent):
    consent(shop.prop, "v-1")
    body = post(shop.client(), [make_event(at=timezone.now() + timedelta(minutes=4))]).json()
    assert body["accepted"] == 1


def test_events__granular_event_without_granular_consent__dropped(shop, consent):
    consent(
        shop.prop, "v-1", {"analytics": True, "personalization": False, "granular_tracking": False}
    )
    events = [
        make_event("scroll", properties={"depth_pct": 50}),
        make_event("hover", properties={"element_id": "cta"}),
        make_event(),
    ]
    body = post(shop.client(), events).json()
    assert (body["accepted"], body["dropped_no_consent"]) == (1, 2)
    assert list(Event.objects.values_list("type", flat=True)) == ["page_view"]


def test_events__visitor_without_any_consent_record__dropped(shop):
    body = post(shop.client(), [make_event(visitor_id="stranger")]).json()
    assert body["dropped_no_consent"] == 1 and not Event.objects.exists()


def test_events__gpc_header__records_opt_out_and_drops_granular(shop, consent):
    from consent.selectors import consent_effective, consent_history

    consent(shop.prop, "v-1")
    client = shop.client(HTTP_SEC_GPC="1")
    body = post(client, [make_event(), make_event("scroll", properties={"depth_pct": 10})]).json()
    assert (body["accepted"], body["dropped_no_consent"]) == (1, 1)
    effective = consent_effective(shop.prop.pk, "v-1")
    assert effective.purposes == {
        "analytics": True,
        "personalization": False,
        "granular_tracking": False,
    }
    post(client, [make_event()])
    assert [r.method for r in consent_history(shop.prop.pk, "v-1")] == ["banner", "gpc"]


def test_events__gpc_header__recorded_for_a_visitor_whose_events_are_all_invalid(shop, consent):
    from consent.selectors import consent_effective, consent_history

    # Given a consenting visitor whose only event in the batch breaks its schema, and one
    # event whose visitor id is no id at all
    consent(shop.prop, "v-1")
    bad = make_event("scroll", properties={"depth_pct": 101})
    nameless = make_event(visitor_id="")
    # When the batch comes with Sec-GPC: 1
    body = post(shop.client(HTTP_SEC_GPC="1"), [bad, nameless]).json()
    # Then both events are quarantined, and the named visitor's opt-out is recorded anyway
    assert body["quarantined"] == 2 and body["accepted"] == 0
    assert [r.method for r in consent_history(shop.prop.pk, "v-1")] == ["banner", "gpc"]
    assert consent_effective(shop.prop.pk, "v-1").purposes["personalization"] is False
    assert consent_history(shop.prop.pk, "") == []


def test_events__design_example_properties__accepted_on_click_and_scroll(shop, consent):
    # docs/CONTRACT.md's example event carries {"element_id", "depth_pct", "..."}: a built-in type
    # checks what it reads and keeps the rest
    consent(shop.prop, "v-1")
    props = {"element_id": "cta", "depth_pct": 75, "label": "Buy now"}
    body = post(
        shop.client(),
        [make_event("click", properties=props), make_event("scroll", properties=props)],
    ).json()
    assert (body["accepted"], body["quarantined"]) == (2, 0), body
    assert Event.objects.get(type="click").properties == props
    # while what it reads is still checked
    bad = post(shop.client(), [make_event("scroll", properties={"depth_pct": "75"})]).json()
    assert bad["quarantined"] == 1 and bad["errors"][0]["path"] == "properties.depth_pct"


def test_events__revenue_on_any_built_in_type__must_be_a_number(shop, consent):
    # A revenue goal may count any event type: a built-in type keeps extra properties,
    # but a revenue it carries is a bounded number
    consent(shop.prop, "v-1")
    good = make_event("conversion", properties={"goal": "signup", "revenue": 12.5})
    bad = make_event("conversion", properties={"goal": "signup", "revenue": "n/a"})
    body = post(shop.client(), [good, bad]).json()
    assert (body["accepted"], body["quarantined"]) == (1, 1)
    assert body["errors"][0]["path"] == "properties.revenue"


def test_events__custom_type__validated_by_its_schema(shop, consent):
    consent(shop.prop, "v-1")
    EventType.objects.create(
        property=shop.prop,
        name="video_play",
        schema={
            "type": "object",
            "required": ["video"],
            "properties": {"video": {"type": "string"}, "at_s": {"type": "number"}},
        },
    )
    good = make_event("video_play", properties={"video": "intro", "at_s": 3})
    bad = make_event("video_play", properties={"at_s": "x"})
    body = post(shop.client(), [good, bad]).json()
    assert (body["accepted"], body["quarantined"]) == (1, 1)
    assert body["errors"][0]["path"].startswith("properties")


def test_events__custom_type_of_other_property__unknown(make_shop, consent):
    mine, other = make_shop("Mine"), make_shop("Other")
    EventType.objects.create(property=other.prop, name="video_play", schema={"type": "object"})
    consent(mine.prop, "v-1")
    body = post(mine.client(), [make_event("video_play")]).json()
    assert body["quarantined"] == 1


def test_events__fates__counted_for_data_quality(shop, consent):
    consent(shop.prop, "v-1")
    event = make_event()
    post(shop.client(), [event, event, make_event("click", properties={})])
    counts = {(s.event_type, s.fate): s.count for s in IngestStat.objects.all()}
    assert counts == {
        ("page_view", "accepted"): 1,
        ("page_view", "duplicate"): 1,
        ("click", "quarantined"): 1,
    }


BAD_BODIES = [
    ("not json", "application/json", 400, "malformed_json"),
    ("[1, 2]", "application/json", 400, "invalid_envelope"),
    ('{"events": "x"}', "application/json", 400, "invalid_envelope"),
    ('{"events": []}', "application/json", 400, "invalid_envelope"),
    ('{"events": null}', "application/json", 400, "invalid_envelope"),
    ("{}", "application/json", 400, "invalid_envelope"),
    ('"events"', "application/json", 400, "invalid_envelope"),
    ('{"events": [{}], "extra": 1}', "application/json", 400, "invalid_envelope"),
    ('{"events": [{}]', "application/json", 400, "malformed_json"),
    ("", "application/json", 400, "invalid_envelope"),
    ('{"events": []}', "text/plain", 415, "unsupported_media_type"),
    ("events=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    (b'{"events": ["\xff\xfe"]}', "application/json", 400, "malformed_json"),
    ('{"events": [' + "[" * 5000 + "]" * 5000 + "]}", "application/json", 400, None),
    ('{"events": [NaN]}', "application/json", 400, None),
]


@pytest.mark.parametrize(("body", "content_type", "status", "code"), BAD_BODIES)
def test_events__malformed_body__4xx_in_error_shape_and_nothing_stored(
    shop, consent, body, content_type, status, code
):
    consent(shop.prop, "v-1")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {shop.pk}")
    response = client.post(URL, data=body, content_type=content_type)
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["message"]
    if code:
        assert error["code"] == code
    assert not Event.objects.exists()


def test_events__batch_over_500__refused_whole(shop, consent):
    consent(shop.prop, "v-1")
    response = post(shop.client(), [make_event() for _ in range(501)])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "batch_too_large"
    assert response.json()["error"]["details"] == {"max": 500, "received": 501}
    assert not Event.objects.exists() and not QuarantinedEvent.objects.exists()


def test_events__body_too_large__413(shop, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = post(shop.client(), [make_event(properties={"path": "x" * 2000})])
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_api_key"),
        ("Bearer sk_nope", "invalid_api_key"),
        ("Token abc", "invalid_api_key"),
        ("Bearer", "invalid_api_key"),
    ],
)
def test_events__missing_or_wrong_key__401(shop, header, code):
    client = Client(**({"HTTP_AUTHORIZATION": header} if header else {}))
    response = client.post(URL, {"events": [make_event()]}, content_type="application/json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert not Event.objects.exists()


def test_events__revoked_key__401(shop, consent):
    consent(shop.prop, "v-1")
    api_key_revoke(key=ApiKey.objects.get(property=shop.prop, kind="publishable"))
    response = post(shop.client(), [make_event()])
    assert response.status_code == 401 and not Event.objects.exists()


def test_events__publishable_key_from_foreign_origin__403(shop, consent):
    consent(shop.prop, "v-1")
    response = post(shop.client(HTTP_ORIGIN="https://evil.example"), [make_event()])
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "origin_not_allowed"
    ok = post(shop.client(HTTP_ORIGIN="https://shop.example"), [make_event()])
    assert ok.status_code == 200 and Event.objects.count() == 1


def test_events__key_of_other_property__writes_only_its_own(make_shop, consent):
    a, b = make_shop("A"), make_shop("B")
    consent(a.prop, "v-1")
    consent(b.prop, "v-1")
    post(a.client(), [make_event()])
    assert Event.objects.get().property_id == a.prop.pk
    assert not Event.objects.filter(property=b.prop).exists()


def test_events__get__405_in_error_shape(shop):
    response = shop.client().get(URL)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_api__unknown_path__json_404(shop):
    response = shop.client().get("/api/v1/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db(transaction=True)
def test_events__concurrent_retries__each_event_stored_once(postgres_only, make_shop, consent):
    # Given one batch, sent by four racing retries
    shop = make_shop()
    consent(shop.prop, "v-1")
    batch = [make_event(properties={"path": f"/p{i}"}) for i in range(50)]
    payload = json.dumps({"events": batch})
    results: list[dict] = []
    barrier = threading.Barrier(4)

    def send() -> None:
        client = Client(HTTP_AUTHORIZATION=f"Bearer {shop.pk}")
        barrier.wait()
        response = client.post(URL, data=payload, content_type="application/json")
        results.append(response.json())
        connection.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then every event is stored exactly once and the answers add up
    assert Event.objects.count() == 50
    assert sum(r["accepted"] for r in results) == 50
    assert sum(r["duplicates"] for r in results) == 150
    from personalization.models import Visitor

    assert Visitor.objects.get().state["page_views"] == 50


@pytest.mark.parametrize(
    "body",
    [
        '{"events": [{"event_id": "x\\u0000"}]}',
        '{"events": [{"type": "\\ud800"}]}',
        '{"events": [{"\\u0000": 1}]}',
        '{"events": [{"properties": {"value": 1e400}}]}',
        '{"events": [{"properties": {"value": -1e999}}]}',
    ],
)
def test_events__unstorable_values__400_and_nothing_stored(shop, consent, body):
    consent(shop.prop, "v-1")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {shop.pk}")
    response = client.post(URL, data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"
    assert not QuarantinedEvent.objects.exists() and not Event.objects.exists()


def test_events__huge_revenue__quarantined_not_crashing(shop, consent):
    consent(shop.prop, "v-1")
    event = make_event("purchase", properties={"revenue": 10**400})
    body = post(shop.client(), [event]).json()
    assert body["quarantined"] == 1 and body["errors"][0]["path"] == "properties.revenue"


@pytest.mark.django_db(transaction=True)
def test_events__concurrent_batches_sharing_visitors__all_stored_no_error(
    postgres_only, make_shop, consent
):
    # Given eight visitors, and six batches that each touch all of them in a different order
    import random

    shop = make_shop()
    visitors = [f"v-{n}" for n in range(8)]
    for v in visitors:
        consent(shop.prop, v)
    batches = []
    for seed in range(6):
        order = visitors[:]
        random.Random(seed).shuffle(order)
        batches.append([make_event(visitor_id=v, session_id=f"s-{v}") for v in order * 3])
    statuses: list[int] = []
    barrier = threading.Barrier(len(batches))

    def send(batch: list[dict]) -> None:
        client = Client(HTTP_AUTHORIZATION=f"Bearer {shop.pk}")
        barrier.wait()
        statuses.append(
            client.post(
                URL, data=json.dumps({"events": batch}), content_type="application/json"
            ).status_code
        )
        connection.close()

    threads = [threading.Thread(target=send, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then no request failed and every event is stored and counted in the signals
    assert statuses == [200] * 6
    assert Event.objects.count() == 6 * 24
    from personalization.models import Visitor

    assert sorted(v.state["page_views"] for v in Visitor.objects.all()) == [18] * 8
