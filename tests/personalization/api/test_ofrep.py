"""OpenFeature's Remote Evaluation Protocol (OFREP): slots as flags.

The behaviour is proved with the official clients: OpenFeature's Python SDK with its OFREP
provider (pinned dev dependencies) against a live server, here; the web SDK with the OFREP
web provider in Chromium in tests/personalization/api/test_ofrep_browser.py. Refusals,
ETags, CORS and the routes' bookkeeping are checked in-process, each failure in OFREP's
shape (not the API's).
"""

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from rest_framework.test import APIClient

from consent.models import ConsentRecord, GpcEvidence
from personalization.api.ofrep import MAX_CONTEXT_BYTES, MAX_CONTEXT_FIELDS
from personalization.hotstate import decision_log_flush
from personalization.models import (
    Adjustment,
    Decision,
    Event,
    Property,
    Rollout,
    Rule,
    RuleStatus,
    Slot,
)
from personalization.openfeature_hook import DecisionOutcomes
from personalization.permissions import MARKETING
from personalization.redis_client import connect
from personalization.services.rules import rule_save
from tests.conftest import Shop, hot_state_use
from tests.personalization.admin.test_targeting_admin import login
from tests.personalization.test_security import limits  # noqa: F401 (the rate-limit fixture)
from tests.targeting import rule, slot

FLAG = "/ofrep/v1/evaluate/flags/headline"
BULK = "/ofrep/v1/evaluate/flags"
ORIGIN = "https://shop.example"


def storefront_build(shop: Shop, consent: Callable[..., None]) -> Shop:
    """Slots answered by a rule, a rollout and their default, typed slots, no holdout, and a
    visitor v-1 who granted everything (v-2 granted nothing)."""
    Property.objects.filter(pk=shop.prop.pk).update(holdout_pct=0)
    prop = shop.prop
    slot(prop, "headline", {"short": {"text": "Quick picks"}})
    rule(prop, "everyone", "headline", "short")
    slot(prop, "banner", {"sale": {"text": "Sale", "percent": 20}})
    Rollout.objects.create(
        property=prop, key="sale", slot=Slot.objects.get(key="banner"), variant="sale", percent=100
    )
    slot(prop, "popup")
    # Typed: a string, an integer and a boolean out of the content, and a variant without it.
    slot(prop, "title", {"short": {"text": "Hello", "size": 2}})
    rule(prop, "pro-title", "title", "short", {"plan": "pro"})
    slot(prop, "stock", {"low": {"count": 3}, "none": {}})
    rule(prop, "low-stock", "stock", "low", {"plan": "pro"})
    rule(prop, "no-stock", "stock", "none", {"plan": "free"})
    slot(prop, "promo", {"on": {"show": True}})
    rule(prop, "promo-on", "promo", "on")
    Slot.objects.filter(key="title").update(flag_value_field="text")
    Slot.objects.filter(key="stock").update(flag_value_field="count")
    Slot.objects.filter(key="promo").update(flag_value_field="show")
    consent(prop, "v-1")
    return shop


def ctx(visitor: str = "v-1", **attributes: Any) -> EvaluationContext:
    return EvaluationContext(targeting_key=visitor, attributes={"session_id": "s-1", **attributes})


def logged(decision_id: str) -> Decision:
    decision_log_flush()  # with Redis, acknowledged decisions wait there for the flush
    return Decision.objects.get(decision_id=decision_id)


# ---- the official Python SDK and OFREP provider against a live server -----------------------


# The SDK tests talk to a live server: their data is committed.
live = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sdk(live_server: Any) -> Iterator[Callable[..., Any]]:
    """An OpenFeature client of its own (a domain per call) on the OFREP provider, given the
    app's base URL; the key as a bearer token, unless the headers given carry it."""
    made: list[OFREPProvider] = []

    def client(key: str, **headers: str) -> Any:
        sent = headers if "X-API-Key" in headers else {"Authorization": f"Bearer {key}", **headers}
        provider = OFREPProvider(live_server.url, headers_factory=lambda: dict(sent))
        made.append(provider)
        domain = f"test-{uuid.uuid4()}"
        api.set_provider(provider, domain)
        return api.get_client(domain)

    client.providers = made  # type: ignore[attr-defined]
    yield client
    api.clear_providers()


@pytest.fixture
def store(make_shop: Callable[..., Shop], consent: Any) -> Shop:
    return storefront_build(make_shop("OpenFeature shop"), consent)


@live
def test_ofrep_python_sdk__object_flags__content_variant_reason_and_metadata(store, sdk):
    # Given a consenting visitor and slots answered by a rule, a rollout and a default
    client = sdk(store.pk)
    # When the official SDK evaluates each slot as an object flag
    details = {
        key: client.get_object_details(key, {"fallback": True}, ctx(plan="pro"))
        for key in ("headline", "banner", "popup")
    }
    # Then each value is the variant's content, with its variant and OpenFeature reason
    headline, banner, popup = details["headline"], details["banner"], details["popup"]
    assert (headline.value, headline.variant) == ({"text": "Quick picks"}, "short")
    assert (banner.value, banner.variant) == ({"text": "Sale", "percent": 20}, "sale")
    assert (popup.value, popup.variant) == ({"text": "popup default"}, "default")
    assert [d.reason for d in (headline, banner, popup)] == [
        Reason.TARGETING_MATCH,
        Reason.SPLIT,
        Reason.DEFAULT,
    ]
    assert all(d.error_code is None for d in details.values())
    # And the metadata names the decision and the source, and the decision is logged
    assert headline.flag_metadata["source_kind"] == "rule"
    assert headline.flag_metadata["source_key"] == "everyone"
    assert headline.flag_metadata["source_version"] == 1
    assert banner.flag_metadata["source_kind"] == "rollout"
    assert popup.flag_metadata["source_kind"] == "default"
    decision = logged(headline.flag_metadata["decision_id"])
    assert (decision.visitor_id, decision.session_id) == ("v-1", "s-1")
    assert decision.context == {"attributes": {"plan": "pro"}}
    answer = Adjustment.objects.get(decision=decision)
    assert (answer.slot_key, answer.variant_key, answer.source_key) == (
        "headline",
        "short",
        "everyone",
    )
    # each evaluation its own decision
    assert len({d.flag_metadata["decision_id"] for d in details.values()}) == 3


@live
def test_ofrep_python_sdk__context_fields__read_by_conditions_as_attributes(store, sdk):
    client = sdk(store.pk)
    # Given a rule for context.attributes.plan == "pro"
    # When the same visitor is evaluated as a pro, then as a free customer
    # (two sessions: stickiness keeps a slot's adjustment for the rest of a session)
    pro = client.get_string_details("title", "", ctx(plan="pro"))
    free = client.get_string_details("title", "", ctx(plan="free", session_id="s-2"))
    # Then only the pro context matches the rule
    assert (pro.value, pro.variant, pro.reason) == ("Hello", "short", Reason.TARGETING_MATCH)
    assert (free.value, free.variant, free.reason) == ("title default", "default", "DEFAULT")


@live
def test_ofrep_python_sdk__unknown_flag__callers_default_with_flag_not_found(store, sdk):
    # Given a flag the property has no slot for
    client = sdk(store.pk)
    # When the SDK evaluates it
    details = client.get_object_details("no-such-slot", {"mine": 1}, ctx())
    # Then the caller's default comes back with FLAG_NOT_FOUND, and nothing was decided
    assert details.value == {"mine": 1}
    assert details.error_code == ErrorCode.FLAG_NOT_FOUND
    assert "no-such-slot" in details.error_message
    decision_log_flush()
    assert not Decision.objects.exists()


@live
def test_ofrep_python_sdk__no_targeting_key__targeting_key_missing(store, sdk):
    client = sdk(store.pk)
    # When a context without targetingKey is evaluated
    details = client.get_object_details("headline", {"d": 1}, EvaluationContext())
    # Then TARGETING_KEY_MISSING, the default, and no decision
    assert (details.value, details.error_code) == ({"d": 1}, ErrorCode.TARGETING_KEY_MISSING)
    decision_log_flush()
    assert not Decision.objects.exists()


@live
def test_ofrep_python_sdk__wrong_key__default_with_general_unauthorized(store, sdk):
    # Given a key that is not the property's
    client = sdk("pk_" + "x" * 43)
    # When the SDK evaluates with it
    details = client.get_object_details("headline", {"d": 1}, ctx())
    # Then the default, with the provider's error for a 401
    assert details.value == {"d": 1}
    assert (details.error_code, details.error_message) == (ErrorCode.GENERAL, "unauthorized")


@live
def test_ofrep_python_sdk__x_api_key_header__served_like_bearer(store, sdk):
    # Given a provider sending the key as OFREP's X-API-Key (no Authorization header)
    client = sdk(store.pk, **{"X-API-Key": store.pk})
    # When it evaluates
    details = client.get_object_details("headline", {}, ctx())
    # Then it is served
    assert (details.value, details.error_code) == ({"text": "Quick picks"}, None)


@live
def test_ofrep_python_sdk__no_consent__defaults_with_disabled(store, sdk):
    client = sdk(store.pk)
    # Given a visitor v-2 who never granted personalization
    # When the SDK evaluates slots a rule and a rollout would adjust
    details = [client.get_object_details(k, {}, ctx("v-2")) for k in ("headline", "banner")]
    # Then both are their defaults, reason DISABLED, and the decision is logged with the
    # candidates suppressed for consent
    assert [(d.variant, d.reason) for d in details] == [
        ("default", Reason.DISABLED),
        ("default", Reason.DISABLED),
    ]
    assert details[0].value == {"text": "headline default"}
    decision = logged(details[0].flag_metadata["decision_id"])
    assert decision.suppressed == [
        {"slot": "headline", "candidate": "rule:everyone", "reason": "consent"}
    ]


@live
def test_ofrep_python_sdk__sec_gpc__opt_out_recorded_and_disabled(store, sdk):
    # Given a consenting visitor whose request carries Global Privacy Control
    client = sdk(store.pk, **{"Sec-GPC": "1"})
    # When the SDK evaluates
    details = client.get_object_details("headline", {}, ctx())
    # Then the opt-out is recorded (with evidence naming OFREP's route) and the answer is
    # the default, DISABLED
    assert (details.variant, details.reason) == ("default", Reason.DISABLED)
    assert ConsentRecord.objects.filter(method="gpc").count() == 1
    assert GpcEvidence.objects.get().endpoint == "POST /ofrep/v1/evaluate/flags/<str:key>"


@live
def test_ofrep_python_sdk__typed_slots__typed_values_and_type_mismatch(store, sdk):
    client = sdk(store.pk)
    pro = ctx(plan="pro")
    # Given slots serving a content key as their value: string, integer, boolean
    # When the SDK asks for those types
    title = client.get_string_details("title", "fallback", pro)
    stock = client.get_integer_details("stock", -1, pro)
    promo = client.get_boolean_details("promo", False, pro)
    # Then it gets the typed values with their variants and reasons
    assert (title.value, title.variant, title.reason) == ("Hello", "short", "TARGETING_MATCH")
    assert (stock.value, stock.variant, stock.error_code) == (3, "low", None)
    assert (promo.value, promo.error_code) == (True, None)
    # And asking a typed slot for an object, or an untyped slot for a string, is a
    # TYPE_MISMATCH with the caller's default (OpenFeature checks types client-side)
    as_object = client.get_object_details("title", {"d": 1}, pro)
    untyped = client.get_string_details("headline", "fallback", pro)
    assert (as_object.value, as_object.error_code) == ({"d": 1}, ErrorCode.TYPE_MISMATCH)
    assert (untyped.value, untyped.error_code) == ("fallback", ErrorCode.TYPE_MISMATCH)
    # And a variant without the key answers the caller's default (OFREP's code default)
    none = client.get_integer_details("stock", -1, ctx(plan="free", session_id="s-2"))
    assert (none.value, none.variant, none.error_code) == (-1, "none", None)


@live
def test_ofrep_python_sdk__rate_limited__retry_after_honoured(store, sdk, limits):  # noqa: F811
    # Given a limit of 2 requests a key per 3-second window
    limits.RATELIMIT_WINDOW_SECONDS = 3
    limits.RATELIMIT_PER_KEY = 2
    client = sdk(store.pk)
    provider = sdk.providers[-1]
    # When the SDK evaluates until the server refuses (a window may roll over meanwhile)
    for _ in range(12):
        refused = client.get_object_details("headline", {"d": 1}, ctx())
        if refused.error_code is not None:
            break
    # Then it gets its default, and the provider keeps Retry-After's pause
    assert refused.value == {"d": 1} and refused.error_code == ErrorCode.GENERAL
    assert "Rate limited" in refused.error_message
    assert provider.retry_after is not None
    counters = connect(django_settings.REDIS_URL)

    def counted() -> int:
        return sum(int(counters.get(n) or 0) for n in counters.scan_iter("rl:key:*"))

    before = counted()
    paused = client.get_object_details("headline", {"d": 1}, ctx())
    assert "paused" in paused.error_message and counted() == before  # no request was sent
    # And once the pause is over, it is served again
    time.sleep(max(0.0, (provider.retry_after.timestamp() - time.time())) + 0.1)
    served = client.get_object_details("headline", {"d": 1}, ctx())
    assert (served.value, served.error_code) == ({"text": "Quick picks"}, None)


@live
def test_openfeature_hook__outcome__event_names_the_evaluations_decision(store, sdk, live_server):
    # Given the hook on a client, and a visitor who saw an adjusted headline
    outcomes = DecisionOutcomes(live_server.url, store.pk)
    client = sdk(store.pk)
    client.add_hooks([outcomes])
    details = client.get_object_details("headline", {}, ctx())
    decision_id = details.flag_metadata["decision_id"]
    assert outcomes.decision("headline", "v-1") == decision_id
    # When the storefront reports the visitor's click on it
    answer = outcomes.outcome("headline", "v-1", "click", {"element_id": "headline"})
    # Then the events endpoint stored the click with the decision's id and the session
    assert answer["accepted"] == 1
    click = Event.objects.get(type="click")
    assert (str(click.decision_id), click.session_id) == (decision_id, "s-1")


@live
def test_openfeature_hook__no_session__refused_before_sending(store, sdk, live_server):
    # Given an evaluation without a session id
    outcomes = DecisionOutcomes(live_server.url, store.pk)
    client = sdk(store.pk)
    client.add_hooks([outcomes])
    client.get_object_details("headline", {}, EvaluationContext("v-1"))
    # When an outcome is reported without one, then it is refused before any request
    with pytest.raises(ValueError, match="session"):
        outcomes.outcome("headline", "v-1")
    assert not Event.objects.exists()


# ---- in process: bulk evaluation and ETags -----------------------------------------------------


@pytest.fixture
def shop_of(shop: Shop, consent: Any) -> Shop:
    return storefront_build(shop, consent)


def _bulk(shop: Shop, context: dict | None = None, **headers: str) -> Any:
    body = {"context": context or {"targetingKey": "v-1", "session_id": "s-1"}}
    return shop.client(**headers).post(BULK, body, format="json")


def test_ofrep_bulk__every_slot__one_decision_with_an_etag(shop_of):
    # When the bulk endpoint is asked for a visitor
    response = _bulk(shop_of)
    # Then every slot of the property is answered, all from one logged decision
    assert response.status_code == 200 and response["ETag"].startswith('"')
    body = response.json()
    flags = {f["key"]: f for f in body["flags"]}
    assert set(flags) == {"headline", "banner", "popup", "title", "stock", "promo"}
    ids = {f["metadata"]["decision_id"] for f in body["flags"]}
    assert ids == {body["metadata"]["decision_id"]}
    decision = logged(ids.pop())
    assert Adjustment.objects.filter(decision=decision).count() == 6
    assert flags["banner"]["reason"] == "SPLIT" and flags["title"]["value"] == "title default"
    assert "cacheable" not in flags["headline"]  # a bulk answer is the client's cache


def test_ofrep_bulk__if_none_match__304_while_answers_hold_200_when_they_change(shop_of):
    # Given a first bulk answer and its ETag
    first = _bulk(shop_of)
    etag = first["ETag"]
    # When the client revalidates with If-None-Match and nothing changed
    again = _bulk(shop_of, HTTP_IF_NONE_MATCH=etag)
    # Then 304, no body, the same ETag (the revalidation is a decision too, logged)
    assert (again.status_code, again.content, again["ETag"]) == (304, b"", etag)
    assert "Content-Type" not in again
    decision_log_flush()
    assert Decision.objects.count() == 2
    # And when the answers change (a rule paused), or the visitor does, a new 200 and ETag
    paused = Rule.objects.get(property=shop_of.prop, key="everyone")
    paused.status = RuleStatus.PAUSED
    rule_save(rule=paused)
    changed = _bulk(shop_of, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag
    other = _bulk(shop_of, {"targetingKey": "v-2"}, HTTP_IF_NONE_MATCH=changed["ETag"])
    assert other.status_code == 200 and other["ETag"] != changed["ETag"]


def test_ofrep_single_flag__answer__not_cacheable_for_server_providers(shop_of):
    # When one flag is evaluated
    response = shop_of.client().post(
        FLAG, {"context": {"targetingKey": "v-1"}}, format="json", HTTP_IF_NONE_MATCH="*"
    )
    # Then it is a fresh decision each time (no ETag), marked not cacheable
    assert response.status_code == 200 and "ETag" not in response
    assert response.json()["cacheable"] is False


def test_ofrep_configuration__capabilities__with_etag_and_304(shop):
    # When a provider reads the configuration, then again with its ETag
    first = shop.client().get("/ofrep/v1/configuration")
    again = shop.client().get("/ofrep/v1/configuration", HTTP_IF_NONE_MATCH=first["ETag"])
    # Then it learns the polling floor, the types served and that evaluations are not cached
    body = first.json()
    assert body["capabilities"]["caching"] == {"enabled": False}
    assert body["capabilities"]["cacheInvalidation"]["polling"]["enabled"] is True
    assert set(body["capabilities"]["flagEvaluation"]["supportedTypes"]) == {
        "object",
        "string",
        "int",
        "float",
        "boolean",
    }
    assert again.status_code == 304


@pytest.mark.parametrize("hot_state", ["database", "redis"])
def test_ofrep_hot_path__queries__no_more_than_the_same_decide(shop_of, settings, hot_state):
    # Given the engine's hot state in the database or in Redis, and warm caches
    hot_state_use(settings, hot_state)
    client = shop_of.client()
    context = {"targetingKey": "v-1", "session_id": "s-1", "plan": "pro"}
    everything = list(Slot.objects.filter(property=shop_of.prop).values_list("key", flat=True))
    decide = {"visitor_id": "v-1", "session_id": "s-1", "context": {"attributes": {"plan": "pro"}}}
    calls = {
        "decide one": lambda: client.post(
            "/api/v1/decide", {**decide, "slots": ["headline"]}, format="json"
        ),
        "ofrep one": lambda: client.post(FLAG, {"context": context}, format="json"),
        "decide all": lambda: client.post(
            "/api/v1/decide", {**decide, "slots": everything}, format="json"
        ),
        "ofrep all": lambda: client.post(BULK, {"context": context}, format="json"),
    }

    def queries(call: Callable[[], Any]) -> int:
        counts = []
        for _ in range(3):  # the fewest of three: a key's lookup cache may expire in between
            with CaptureQueriesContext(connection) as captured:
                assert call().status_code == 200
            counts.append(len(captured.captured_queries))
        return min(counts)

    for call in calls.values():
        call()
    # When each OFREP evaluation and the decide asking for the same slots run
    counted = {name: queries(call) for name, call in calls.items()}
    # Then OFREP asks the database nothing more than decide does
    assert counted["ofrep one"] <= counted["decide one"], counted
    assert counted["ofrep all"] <= counted["decide all"], counted


# ---- in process: every failure in OFREP's shape ------------------------------------------------

DEEP = {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}
MALFORMED = [
    ({"context": {"targetingKey": 42}}, "INVALID_CONTEXT"),
    ({"context": {"targetingKey": "v" * 129}}, "INVALID_CONTEXT"),
    ({"context": {"targetingKey": "v-1", "session_id": 7}}, "INVALID_CONTEXT"),
    ({"context": {"targetingKey": "v-1", "session_id": ""}}, "INVALID_CONTEXT"),
    ({"context": {"targetingKey": "v-1", **DEEP}}, "INVALID_CONTEXT"),
    (
        {"context": {"targetingKey": "v-1", "blob": "x" * (MAX_CONTEXT_BYTES + 1)}},
        "INVALID_CONTEXT",
    ),
    (
        {"context": {"targetingKey": "v-1", **{f"f{i}": i for i in range(MAX_CONTEXT_FIELDS + 1)}}},
        "INVALID_CONTEXT",
    ),
    ({"context": "v-1"}, "INVALID_CONTEXT"),
    ({}, "INVALID_CONTEXT"),
    ({"context": {}}, "TARGETING_KEY_MISSING"),
    ({"context": {"targetingKey": ""}}, "TARGETING_KEY_MISSING"),
    ([{"context": {"targetingKey": "v-1"}}], "PARSE_ERROR"),
]


@pytest.mark.parametrize(("body", "code"), MALFORMED)
@pytest.mark.parametrize("path", [FLAG, BULK])
def test_ofrep_errors__malformed_request__400_in_ofrep_shape(shop_of, path, body, code):
    # When a request with a malformed evaluation context is sent
    response = shop_of.client().post(path, body, format="json")
    # Then 400 in OFREP's shape (the flag's key on the one-flag endpoint), nothing decided
    assert response.status_code == 400
    expected = {"errorCode", "errorDetails"} | ({"key"} if path == FLAG else set())
    assert set(response.json()) == expected and response.json()["errorCode"] == code
    if path == FLAG:
        assert response.json()["key"] == "headline"
    decision_log_flush()
    assert not Decision.objects.exists()


@pytest.mark.parametrize("path", [FLAG, BULK])
@pytest.mark.parametrize(
    "raw", [b"{not json", b'{"context": {"targetingKey": "v\\u0000"}}', b"[" * 40 + b"]" * 40]
)
def test_ofrep_errors__unreadable_json__400_parse_error(shop, path, raw):
    # When the body is no storable JSON (broken, a NUL, nested past the parser's limit)
    response = shop.client().post(path, raw, content_type="application/json")
    # Then PARSE_ERROR in OFREP's shape
    assert response.status_code == 400
    body = response.json()
    assert body["errorCode"] == "PARSE_ERROR" and body["errorDetails"]
    assert body.get("key") == ("headline" if path == FLAG else None)


def test_ofrep_errors__unknown_flag__404_flag_not_found(shop_of):
    response = shop_of.client().post(
        "/ofrep/v1/evaluate/flags/nope", {"context": {"targetingKey": "v-1"}}, format="json"
    )
    assert response.status_code == 404
    assert response.json() == {
        "key": "nope",
        "errorCode": "FLAG_NOT_FOUND",
        "errorDetails": "No slot 'nope' in this property.",
    }


def _keyless(**headers: str) -> APIClient:
    client = APIClient()
    client.credentials(**headers)
    return client


@pytest.mark.parametrize(
    ("client", "status"),
    [
        (lambda s: _keyless(), 401),
        (lambda s: s.client("pk_" + "z" * 43), 401),
        (lambda s: s.client(s.pk.replace("pk_", "Basic ")), 401),
        (lambda s: _keyless(HTTP_X_API_KEY="sk_" + "z" * 43), 401),
        (lambda s: s.client(HTTP_ORIGIN="https://evil.example"), 403),
        (lambda s: _keyless(HTTP_X_API_KEY=s.pk, HTTP_ORIGIN="https://evil.example"), 403),
        (lambda s: s.client(s.sk, HTTP_ORIGIN=ORIGIN), 403),
        (lambda s: _keyless(HTTP_X_API_KEY=s.sk, HTTP_ORIGIN=ORIGIN), 403),
    ],
    ids=[
        "no key",
        "unknown key",
        "not a bearer",
        "unknown x-api-key",
        "foreign origin",
        "foreign origin x-api-key",
        "secret key in a browser",
        "secret x-api-key in a browser",
    ],
)
@pytest.mark.parametrize("path", [FLAG, BULK, "/ofrep/v1/configuration"])
def test_ofrep_errors__refused_keys__401_403_in_ofrep_shape(shop_of, client, status, path):
    # When a request is refused for its key or its origin
    caller = client(shop_of)
    body = {"context": {"targetingKey": "v-1"}}
    response = caller.get(path) if "configuration" in path else caller.post(path, body, "json")
    # Then OFREP's status, in OFREP's general shape, and nothing decided
    assert response.status_code == status
    assert set(response.json()) == {"errorDetails"} and response.json()["errorDetails"]
    if status == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")
    decision_log_flush()
    assert not Decision.objects.exists()


def test_ofrep_errors__secret_key_from_a_browser__no_cors_headers(shop):
    # Given a secret key sent as X-API-Key from a page the property allows
    response = _keyless(HTTP_X_API_KEY=shop.sk, HTTP_ORIGIN=ORIGIN).post(
        BULK, {"context": {"targetingKey": "v-1"}}, format="json"
    )
    # Then it is refused and the page cannot even read why
    assert response.status_code == 403
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]


def test_ofrep_errors__rate_limited__429_ofrep_shape_with_retry_after(shop_of, limits):  # noqa: F811
    # Given a limit of 2 requests a minute per key, counted for X-API-Key too
    limits.RATELIMIT_PER_KEY = 2
    x_api = _keyless(HTTP_X_API_KEY=shop_of.pk)
    body = {"context": {"targetingKey": "v-1"}}
    statuses = [x_api.post(FLAG, body, format="json").status_code for _ in range(2)]
    # When one more request comes, with the key in the other header
    response = shop_of.client(HTTP_ORIGIN=ORIGIN).post(FLAG, body, format="json")
    # Then 429 in OFREP's shape, with Retry-After readable from a page
    assert statuses == [200, 200] and response.status_code == 429
    assert (
        set(response.json()) == {"errorDetails"} and "Too many" in response.json()["errorDetails"]
    )
    assert 1 <= int(response["Retry-After"]) <= 60
    assert "Retry-After" in response["Access-Control-Expose-Headers"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", BULK, 405),
        ("get", FLAG, 405),
        ("post", "/ofrep/v1/configuration", 405),
        ("get", "/ofrep/v1/no-such-endpoint", 404),
        ("post", "/ofrep/v2/evaluate/flags", 404),
    ],
)
def test_ofrep_errors__unknown_path_or_method__ofrep_general_shape(shop, method, path, status):
    response = getattr(shop.client(), method)(path)
    assert response.status_code == status
    assert set(response.json()) == {"errorDetails"}


def test_ofrep_errors__server_error__500_ofrep_general_shape(shop, monkeypatch):
    # Given a bug behind the view
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("personalization.api.ofrep.flags_evaluate", broken)
    # When a bulk evaluation meets it
    client = shop.client()
    client.raise_request_exception = False
    response = client.post(BULK, {"context": {"targetingKey": "v-1"}}, format="json")
    # Then 500 in OFREP's general error shape
    assert response.status_code == 500
    assert set(response.json()) == {"errorDetails"}


# ---- the slot's typed value in the admin -------------------------------------------------------


def test_slot_admin__flag_value_field__saved_checked_and_served(shop, staff):
    client = login(staff(MARKETING, shop.prop))
    form = {
        "property": shop.prop.pk,
        "key": "banner",
        "name": "",
        "description": "",
        "default_variant": "default",
        "content_schema": "",
        "flag_value_field": "text",
        "variants-TOTAL_FORMS": 1,
        "variants-INITIAL_FORMS": 0,
        "variants-0-key": "default",
        "variants-0-content": '{"text": "Free shipping"}',
        "variants-0-strategy": "",
        "variants-0-strategy_limit": 4,
    }
    # When a marketer saves a slot naming a content key as its OpenFeature value
    saved = client.post("/admin/personalization/slot/add/", form)
    # Then it is saved, shown on the slot's page, and OFREP serves that key's value
    assert saved.status_code == 302, saved.content.decode()[:2000]
    banner = Slot.objects.get(property=shop.prop, key="banner")
    assert banner.flag_value_field == "text"
    page = client.get(f"/admin/personalization/slot/{banner.pk}/change/").content.decode()
    assert 'name="flag_value_field"' in page and 'value="text"' in page
    served = shop.client().post(
        "/ofrep/v1/evaluate/flags/banner", {"context": {"targetingKey": "v-1"}}, format="json"
    )
    assert served.json()["value"] == "Free shipping"
    # And a path or anything else that is not a top-level key is refused, saying so
    refused = client.post(
        "/admin/personalization/slot/add/", {**form, "key": "other", "flag_value_field": "a.b"}
    )
    assert refused.status_code == 200 and "top-level key" in refused.content.decode()


# ---- in process: CORS for web providers, the schema ---------------------------------------------


def test_ofrep_cors__preflight__allows_the_web_providers_headers(db):
    # Given the OFREP web provider about to POST with its key header and If-None-Match
    response = Client().options(
        BULK,
        HTTP_ORIGIN=ORIGIN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type, if-none-match, x-api-key",
    )
    # Then the preflight lets them through
    assert response.status_code == 204
    allowed = {h.strip().lower() for h in response["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "if-none-match", "x-api-key"} <= allowed


def test_ofrep_cors__allowed_origin__etag_readable_by_the_page(shop_of):
    response = _bulk(shop_of, HTTP_ORIGIN=ORIGIN)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == ORIGIN
    assert "ETag" in response["Access-Control-Expose-Headers"]


def test_ofrep_schema__not_in_the_apis_openapi_document(db):
    # OFREP's contract is OFREP's own OpenAPI document; ours documents the API's shape only
    paths = Client().get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    assert "/api/v1/decide" in paths
    assert not [p for p in paths if p.startswith("/ofrep/")]
