"""Global Privacy Control on every storefront endpoint: the opt-out, and evidence of each use."""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, get_resolver
from django.utils import timezone

from consent.models import ConsentRecord, GpcEvidence
from consent.selectors import consent_effective
from personalization.api.views import StorefrontView
from personalization.decisions import plans
from personalization.services.ingest import events_ingest
from tests.conftest import make_event
from tests.targeting import rule, slot

GPC = {"HTTP_SEC_GPC": "1"}


def _events(shop, vid, **headers):
    return shop.client(**headers).post(
        "/api/v1/events", {"events": [make_event(visitor_id=vid)]}, format="json"
    )


def _consent_post(shop, vid, **headers):
    body = {
        "visitor_id": vid,
        "policy_version": 1,
        "purposes": {"analytics": True, "personalization": True, "granular_tracking": True},
        "method": "banner",
    }
    return shop.client(**headers).post("/api/v1/consent", body, format="json")


def _consent_get(shop, vid, **headers):
    return shop.client(**headers).get(f"/api/v1/consent/{vid}")


def _decide(shop, vid, **headers):
    body = {"visitor_id": vid, "session_id": "s-1", "slots": ["headline"]}
    return shop.client(**headers).post("/api/v1/decide", body, format="json")


def _privacy_request(shop, vid, **headers):
    body = {"kind": "opt_out", "visitor_id": vid, "regulation": "ccpa"}
    return shop.client(shop.sk, **headers).post("/api/v1/privacy-requests", body, format="json")


def _survey_response(shop, vid, **headers):
    from personalization.models import Survey
    from personalization.services.surveys import survey_create

    if not Survey.objects.filter(property=shop.prop, key="nps").exists():
        survey_create(
            prop=shop.prop,
            key="nps",
            title="One question",
            questions=[{"key": "recommend", "type": "nps", "text": "Recommend us?"}],
        )
    body = {"visitor_id": vid, "session_id": "s-1", "answers": {"recommend": 9}}
    return shop.client(**headers).post("/api/v1/surveys/nps/responses", body, format="json")


def _ofrep_flag(shop, vid, **headers):
    body = {"context": {"targetingKey": vid, "session_id": "s-1"}}
    return shop.client(**headers).post("/ofrep/v1/evaluate/flags/headline", body, format="json")


def _ofrep_flags(shop, vid, **headers):
    body = {"context": {"targetingKey": vid, "session_id": "s-1"}}
    return shop.client(**headers).post("/ofrep/v1/evaluate/flags", body, format="json")


def _adjustment(shop, vid, **headers):
    # A genuine token for an entry no rule offers now: answered (not applied), GPC recorded.
    decision_id = str(uuid.uuid4())
    claims = plans.Claims(shop.prop.pk, decision_id, vid, "s-1", "headline", "rule", "gone", 1,
                          "short", plans.expiry(timezone.now()))  # fmt: skip
    body = {"decision_id": decision_id, "slot": "headline", "variant": "short",
            "token": claims.token()}  # fmt: skip
    return shop.client(**headers).post("/api/v1/adjustments", body, format="json")


# Every storefront route that names a visitor, with how to call it.
GPC_CASES = {
    "api-adjustments": (_adjustment, "POST /api/v1/adjustments"),
    "api-events": (_events, "POST /api/v1/events"),
    "api-consent": (_consent_post, "POST /api/v1/consent"),
    "api-consent-detail": (_consent_get, "GET /api/v1/consent/<str:visitor_id>"),
    "api-decide": (_decide, "POST /api/v1/decide"),
    "api-privacy-requests": (_privacy_request, "POST /api/v1/privacy-requests"),
    "api-survey-responses": (_survey_response, "POST /api/v1/surveys/<slug:key>/responses"),
    "ofrep-flag": (_ofrep_flag, "POST /ofrep/v1/evaluate/flags/<str:key>"),
    "ofrep-flags": (_ofrep_flags, "POST /ofrep/v1/evaluate/flags"),
}
# Storefront routes that name no visitor: there is nobody to record an opt-out for.
# (The export download names a stored archive, not a visitor.)
NO_VISITOR = {
    "api-consent-policy",
    "api-privacy-request-detail",
    "api-survey",
    "api-privacy-export",
    "ofrep-configuration",
}
# Where storefront views are routed: the API's URLs and OpenFeature's OFREP endpoints.
STOREFRONT_URLCONFS = ("personalization.api.urls", "personalization.api.ofrep_urls")


@pytest.fixture
def store(shop, consent):
    """A shop with a rule that personalises everyone, and a visitor who granted everything."""
    shop.prop.holdout_pct = 0
    shop.prop.save()
    slot(shop.prop, "headline", {"short": {"text": "Quick"}})
    rule(shop.prop, "everyone", "headline", "short")
    consent(shop.prop, "v-1")
    return shop


def test_gpc__every_storefront_route__is_covered_here():
    # Given the API's routes  When those served by storefront views are listed
    routes = {
        p.name
        for urlconf in STOREFRONT_URLCONFS
        for p in get_resolver(urlconf).url_patterns
        if isinstance(p, URLPattern)
        and issubclass(getattr(p.callback, "view_class", object), StorefrontView)
    }
    # Then each is tested for GPC below, or names no visitor
    assert routes - set(GPC_CASES) - NO_VISITOR == set(), "add the route to GPC_CASES"


@pytest.mark.parametrize("route", sorted(GPC_CASES))
def test_gpc__any_storefront_endpoint__opt_out_recorded_with_evidence(store, route):
    call, endpoint = GPC_CASES[route]
    # Given a visitor who granted everything
    assert consent_effective(store.prop.pk, "v-1").allows("personalization")
    # When a request for them carries Sec-GPC: 1
    response = call(store, "v-1", **GPC)
    # Then it succeeds, personalization and granular tracking are refused (method gpc)
    assert response.status_code < 300, response.content
    effective = consent_effective(store.prop.pk, "v-1")
    assert not effective.allows("personalization") and not effective.allows("granular_tracking")
    assert effective.allows("analytics")
    assert ConsentRecord.objects.filter(method="gpc").count() == 1
    # and the evidence names the endpoint (its route, never a path holding the id)
    evidence = GpcEvidence.objects.get()
    assert evidence.endpoint == endpoint and "v-1" not in evidence.endpoint


def test_gpc__repeated__one_opt_out_per_version_and_evidence_of_each(store):
    # Given a visitor  When three requests carry the signal
    for call in (_consent_get, _events, _decide):
        call(store, "v-1", **GPC)
    # Then one opt-out record, and three pieces of evidence
    assert ConsentRecord.objects.filter(method="gpc").count() == 1
    assert GpcEvidence.objects.count() == 3


def test_gpc__events_batch_of_many_visitors__one_evidence_insert(store, consent):
    # Given a batch for five visitors with the signal
    events = [make_event(visitor_id=f"v-{i}") for i in range(5)]
    # When it is ingested
    with CaptureQueriesContext(connection) as queries:
        events_ingest(prop=store.prop, events=events, gpc=True)
    # Then the evidence of all five is written in one insert
    table = GpcEvidence._meta.db_table
    inserts = [q for q in queries.captured_queries if q["sql"].startswith(f'INSERT INTO "{table}"')]
    assert len(inserts) == 1
    assert GpcEvidence.objects.count() == 5


def test_gpc__decide__returns_defaults_for_that_visitor_from_then_on(store):
    # Given the rule personalises the visitor without GPC
    assert _decide(store, "v-1").json()["slots"]["headline"]["variant"] == "short"
    # When the request carries GPC, and on later requests without it
    with_gpc = _decide(store, "v-1", **GPC).json()
    later = _decide(store, "v-1").json()
    # Then decide answers the default, suppressed for consent
    for body in (with_gpc, later):
        assert body["personalized"] is False
        assert body["slots"]["headline"]["source"] == {"kind": "default"}
        assert {"slot": "headline", "candidate": "rule:everyone", "reason": "consent"} in body[
            "suppressed"
        ]


def test_gpc__granular_events__dropped_from_then_on(store):
    # Given the visitor sent GPC once
    _consent_get(store, "v-1", **GPC)
    # When granular and ordinary events arrive without the header
    body = (
        store.client()
        .post(
            "/api/v1/events",
            {
                "events": [
                    make_event("scroll", properties={"depth_pct": 40}),
                    make_event("hover", properties={"element_id": "cta"}),
                    make_event(),
                ]
            },
            format="json",
        )
        .json()
    )
    # Then the granular ones are dropped, the others stored
    assert body["dropped_no_consent"] == 2 and body["accepted"] == 1
