"""The permission matrix: every URL of the project × every role × own / other property.

Source of truth: the role table of docs/CONTRACT.md ("Tenancy and permissions"). Each role holds its
role on the "own" property only; "other" URLs name an object of the other property. A URL
that exists but is not in the tables below fails ``test_matrix__every_url__has_a_rule``:
adding a view means deciding here who may open it. Dashboard pages are covered by a name
rule (``dashboard:*``: holders of view_dashboards; the consent page: privacy officers).

Then the API keys: what only a secret key may do, revocation, constant-time comparison by
hash, and keys kept out of the logs.
"""

import hashlib
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from personalization.decisions import plans
from personalization.models import ApiKey
from personalization.permissions import ANALYSTS, MARKETING, PRIVACY_OFFICERS
from personalization.services.keys import KEY_CACHE_SECONDS, api_key_revoke
from tests.conftest import make_event
from tests.privacy import media_root
from tests.urlcatalog import (
    Route,
    World,
    api_world_build,
    example_urls,
    registered_labels,
    routes,
    takes_object,
    world_build,
)

ANON, NONE, M, A, P, S = "anonymous", "no role", "marketing", "analyst", "privacy", "superuser"
ROLES = [ANON, NONE, M, A, P, S]
GROUPS = {M: MARKETING, A: ANALYSTS, P: PRIVACY_OFFICERS}
STAFF = frozenset({NONE, M, A, P, S})
NOBODY: frozenset[str] = frozenset()
ONLY_S = frozenset({S})
MS, PS = frozenset({M, S}), frozenset({P, S})
MAS, MAPS = frozenset({M, A, S}), frozenset({M, A, P, S})


@dataclass(frozen=True)
class Caps:
    """Who may do what with one model in the admin (on the property they hold)."""

    view: frozenset[str]  # the object's page (read-only or not), its history
    add: frozenset[str]
    change: frozenset[str]  # POST to the object's page
    delete: frozenset[str]
    changelist: frozenset[str] | None = None  # when it differs from ``view``


CONFIG = Caps(view=MAS, add=MS, change=MS, delete=MS)
PRIVACY_READ_ONLY = Caps(view=PS, add=NOBODY, change=NOBODY, delete=NOBODY)
ADMIN_MODELS: dict[str, Caps] = {
    "auth.group": Caps(view=ONLY_S, add=ONLY_S, change=ONLY_S, delete=ONLY_S),
    "auth.user": Caps(view=ONLY_S, add=ONLY_S, change=ONLY_S, delete=ONLY_S),
    # Whoever creates a property gets Marketing on it; deleting one is for superusers.
    "personalization.property": Caps(view=MAPS, add=MS, change=MS, delete=ONLY_S),
    "personalization.apikey": Caps(view=MS, add=MS, change=NOBODY, delete=NOBODY),
    "personalization.eventtype": CONFIG,
    "personalization.quarantinedevent": Caps(view=MAS, add=NOBODY, change=NOBODY, delete=NOBODY),
    "personalization.visitor": Caps(view=MAS, add=NOBODY, change=NOBODY, delete=NOBODY),
    "personalization.slot": CONFIG,
    "personalization.segment": CONFIG,
    "personalization.rule": CONFIG,
    "personalization.goal": CONFIG,
    "personalization.experiment": CONFIG,
    "personalization.rollout": CONFIG,
    "personalization.survey": CONFIG,
    # Published policies are never edited; a new version is added.
    "consent.consentpolicy": Caps(view=PS, add=PS, change=NOBODY, delete=NOBODY),
    "consent.consentrecord": PRIVACY_READ_ONLY,
    "consent.gpcevidence": PRIVACY_READ_ONLY,
    "consent.suppression": PRIVACY_READ_ONLY,
    "consent.privacyrequest": Caps(view=PS, add=PS, change=PS, delete=NOBODY),
    # Officers read privacy entries (the example object), marketing configuration entries.
    "consent.auditentry": Caps(
        view=PS, add=NOBODY, change=NOBODY, delete=NOBODY, changelist=frozenset({M, P, S})
    ),
    "consent.retentionpolicy": Caps(view=PS, add=PS, change=PS, delete=NOBODY),
    "consent.retentionrun": PRIVACY_READ_ONLY,
    # Models are configuration: clusters come from runs (adopted as segments), guardrail
    # checks from the hourly task (their rules paused from there; the checks are the
    # evidence behind a pause, so nobody deletes them).
    "personalization.clusterrun": CONFIG,
    "personalization.cluster": Caps(view=MAS, add=NOBODY, change=MS, delete=MS),
    "personalization.propensitymodel": CONFIG,
    "personalization.guardrailcheck": Caps(view=MAS, add=NOBODY, change=MS, delete=NOBODY),
    "dashboard.attributionwindow": CONFIG,
}


@dataclass(frozen=True)
class Rule:
    allowed: frozenset[str] = NOBODY
    method: str = "GET"
    public: bool = False  # anyone; only "no server error" is asserted
    by_url: dict[str, frozenset[str]] = field(default_factory=dict)


PUBLIC = Rule(public=True)
# Keyed by URL name, or by pattern for unnamed ones.
ROUTES: dict[str, Rule] = {
    "": PUBLIC,  # "/" redirects to the admin
    "demo": PUBLIC,  # the demo storefront is a public page, like any storefront's
    "favicon": PUBLIC,  # /favicon.ico: a redirect to the static icon
    "admin:login": PUBLIC,
    "admin:index": Rule(STAFF),
    "admin:logout": Rule(STAFF, method="POST"),
    "admin:password_change": Rule(STAFF),
    "admin:password_change_done": Rule(STAFF),
    "admin:jsi18n": Rule(STAFF),
    # No admin declares autocomplete fields; no model has a page on the site.
    "admin:autocomplete": Rule(NOBODY),
    "admin:view_on_site": Rule(NOBODY),
    "admin/(?P<url>.*)$": Rule(NOBODY),
    "admin:auth_user_password_change": Rule(ONLY_S),
    "admin:app_list": Rule(
        by_url={
            "/admin/auth/": ONLY_S,
            "/admin/consent/": frozenset({M, P, S}),  # marketing: the configuration audit
            "/admin/dashboard/": MAS,  # attribution windows
            "/admin/personalization/": MAPS,
        }
    ),
    "admin:personalization_rule_restore": Rule(MS, method="POST"),
    "admin:personalization_rule_preview": Rule(MAS),
    "admin:personalization_rule_replay": Rule(MAS),
    "admin:personalization_experiment_power": Rule(MAS),
    "consent:consent-history": Rule(PS),
    "consent:export-download": Rule(PS),
    # The storefront API authenticates keys only: a staff session opens none of it…
    "api-events": Rule(NOBODY, method="POST"),
    "api-decide": Rule(NOBODY, method="POST"),
    "api-adjustments": Rule(NOBODY, method="POST"),
    "api-consent-policy": Rule(NOBODY),
    "api-consent": Rule(NOBODY, method="POST"),
    "api-consent-detail": Rule(NOBODY),
    "api-survey": Rule(NOBODY),
    "api-survey-responses": Rule(NOBODY, method="POST"),
    "api-privacy-requests": Rule(NOBODY, method="POST"),
    "api-privacy-request-detail": Rule(NOBODY),
    "api-privacy-export": Rule(NOBODY),
    # …but experiment results, which staff who read dashboards may open.
    "api-experiment-results": Rule(MAS),
    # OpenFeature's OFREP endpoints take the storefront's keys only
    # (tests/personalization/api/test_ofrep.py).
    "ofrep-flag": Rule(NOBODY, method="POST"),
    "ofrep-flags": Rule(NOBODY, method="POST"),
    "ofrep-configuration": Rule(NOBODY),
    "api-schema": PUBLIC,
    "api-docs": PUBLIC,
}


def rule_for(route: Route) -> Rule | None:
    if route.name.startswith("dashboard:"):
        return Rule(PS if "consent" in route.name else MAS)
    model = route.admin_model
    if model is not None:
        app, model_name, kind = model
        caps = ADMIN_MODELS.get(f"{app}.{model_name}")
        if caps is None:
            return None
        if kind == "changelist":
            return Rule(caps.changelist or caps.view)
        return Rule(
            {
                "add": caps.add,
                "change": caps.view,
                "history": caps.view,
                # ``<id>/`` redirects any staff to ``<id>/change/``, which decides
                "redirect": STAFF,
                "delete": caps.delete,
            }[kind]
        )
    return ROUTES.get(route.name or route.pattern)


def extra_checks(route: Route) -> list[Rule]:
    """POSTs that prove the change right where GET only shows a read-only page."""
    model = route.admin_model
    if model is None or model[2] != "change":
        return []
    caps = ADMIN_MODELS[f"{model[0]}.{model[1]}"]
    return [Rule(caps.change, method="POST")]


def _needs_post(role: str, route: Route, rule: Rule) -> bool:
    """The POST check only where GET alone cannot tell: the role may see the page."""
    model = route.admin_model
    if rule.method != "POST" or model is None:
        return True
    return role in ADMIN_MODELS[f"{model[0]}.{model[1]}"].view


def test_matrix__every_url__has_a_rule():
    # Given every URL pattern of the project (the admin's generated ones too)
    missing = [f"{r.pattern} ({r.name or 'unnamed'})" for r in routes() if rule_for(r) is None]
    # Then each has a row in the matrix
    assert not missing, "URLs missing from tests/test_permission_matrix.py:\n" + "\n".join(missing)


def test_matrix__admin_models__every_registered_model_has_caps():
    assert registered_labels() == set(ADMIN_MODELS)


@pytest.fixture
def world(make_shop, staff, settings, tmp_path) -> World:
    media_root(settings, tmp_path)
    return world_build(make_shop, staff)


def _client(role: str, world: World, staff: Any) -> Client:
    client = Client(raise_request_exception=False)  # a 500 is a cell of the table too
    if role == ANON:
        return client
    if role == S:
        user = staff(superuser=True)
    elif role == NONE:
        user = staff()
    else:
        user = staff(GROUPS[role], world.own.shop.prop)
    client.force_login(user)
    return client


def outcome(client: Client, method: str, url: str, follow_once: bool = False) -> str:
    """``allow``, ``deny`` or ``error``, with the status (and where a redirect went)."""
    response = client.post(url) if method == "POST" else client.get(url)
    if getattr(response, "streaming", False):
        b"".join(response.streaming_content)  # type: ignore[attr-defined]
    status = response.status_code
    if status >= 500:
        return f"error ({status})"
    if status in (301, 302):
        location = response["Location"]
        if "/login/" in location or location in ("/admin/", "/"):
            # to the login, or the admin's "no such object" redirect to its index
            return f"deny ({status} to {location.split('?')[0]})"
        return outcome(client, "GET", location) if follow_once else f"allow ({status})"
    if status in (200, 201, 202):
        return "allow (200)" if status == 200 else f"allow ({status})"
    if status in (400, 401, 403, 404, 405):
        return f"deny ({status})"
    return f"unexpected ({status})"


def _cases(world: World, role: str) -> Iterator[tuple[Route, Rule, str, str]]:
    for route in routes():
        rule = rule_for(route)
        assert rule is not None, route
        # A superuser holds every property: "other" is the same as "own" for them.
        sides = ["own", "other"] if takes_object(route) and role != S else ["own"]
        for side in sides:
            for url in example_urls(route, world, side):
                for check in [rule, *extra_checks(route)]:
                    if _needs_post(role, route, check):
                        yield route, check, side, url


def _differences(role: str, world: World, staff: Any) -> list[str]:
    client = _client(role, world, staff)
    wrong = []
    for route, rule, side, url in _cases(world, role):
        if route.name == "admin:logout":  # a client of its own: it ends the session
            got = outcome(_client(role, world, staff), rule.method, url)
        else:
            got = outcome(client, rule.method, url)
        allowed = rule.by_url.get(url, rule.allowed)
        if rule.public:
            expected = "no error"
            ok = not got.startswith(("error", "unexpected"))
        elif side == "other" and not route.pattern.startswith("admin/auth/"):
            expected = "deny"  # another property's object: never, whatever the role
            ok = got.startswith(expected)
        else:
            expected = "allow" if role in allowed else "deny"
            ok = got.startswith(expected)
        if not ok:
            wrong.append(f"{role:10} {rule.method:4} {url:66} {side:5} {expected} ≠ {got}")
    return wrong


def test_matrix__every_role__opens_exactly_what_the_role_table_allows(world, staff):
    # Given users holding each role on the own property (and none on the other)
    # When each opens every URL of the project, for objects of either property
    wrong = []
    for role in ROLES:
        started = time.perf_counter()
        wrong.extend(_differences(role, world, staff))
        print(f"{role}: {time.perf_counter() - started:.1f} s")
    # Then each gets what the table says (one world for all roles: building it is slow)
    assert not wrong, f"{len(wrong)} cell(s) differ from the matrix:\n" + "\n".join(wrong)


# API keys -------------------------------------------------------------------------------


@pytest.fixture
def api_world(make_shop, settings, tmp_path) -> World:
    media_root(settings, tmp_path)
    return api_world_build(make_shop)


# What each API endpoint needs. A new endpoint missing here fails the coverage test.
API_KEYS: dict[str, str] = {
    "api-events": "publishable",
    "api-decide": "publishable",
    "api-adjustments": "publishable",
    "api-consent-policy": "publishable",
    "api-consent": "publishable",
    "api-consent-detail": "publishable",
    "api-survey": "publishable",
    "api-survey-responses": "publishable",
    "api-privacy-requests": "secret",
    "api-privacy-request-detail": "secret",
    "api-privacy-export": "secret",
    "api-experiment-results": "secret",
    "api-schema": "none",
    "api-docs": "none",
}


def test_api_keys__every_api_url__declares_the_key_it_needs():
    api = {r.name for r in routes() if r.pattern.startswith("api/")}
    assert api == set(API_KEYS)


def _api_requests(api_world: World) -> list[tuple[str, str, str, dict | None]]:
    """(name, method, url, body) for every endpoint that takes a key, with a valid body."""
    vid = "v-keys"
    bodies: dict[str, dict] = {
        "api-events": {"events": [make_event(visitor_id=vid)]},
        "api-decide": {"visitor_id": vid, "session_id": "s-1", "slots": ["headline"]},
        "api-adjustments": _adjustment_report(api_world.own.shop.prop.pk, vid),
        "api-consent": {
            "visitor_id": vid,
            "policy_version": 1,
            "purposes": {"analytics": True},
            "method": "api",
        },
        "api-survey-responses": {
            "visitor_id": vid,
            "session_id": "s-1",
            "answers": {"recommend": 9},
        },
        "api-privacy-requests": {
            "kind": "opt_out",
            "visitor_id": vid,
            "regulation": "gdpr",
            "contact": "a@mail.example",
        },
    }
    found = []
    for route in routes():
        if API_KEYS.get(route.name, "none") == "none":
            continue
        (url,) = example_urls(route, api_world, "own")
        method = "POST" if route.name in bodies else "GET"
        found.append((route.name, method, url, bodies.get(route.name)))
    return found


def _adjustment_report(property_id: int, vid: str) -> dict:
    """A report whose token is genuine, for an entry no rule offers now (answered "rule
    changed": a 200, not applied)."""
    decision_id = str(uuid.uuid4())
    claims = plans.Claims(property_id, decision_id, vid, "s-1", "headline", "rule", "gone", 1,
                          "default", plans.expiry(timezone.now()))  # fmt: skip
    return {"decision_id": decision_id, "slot": "headline", "variant": "default",
            "token": claims.token()}  # fmt: skip


def _call(api_world: World, key: str, method: str, url: str, body: dict | None) -> Any:
    client = api_world.own.shop.client(key)
    if method == "POST":
        return client.post(url, body, format="json")
    return client.get(url)


def test_api_keys__publishable_key__refused_wherever_a_secret_key_is_needed(api_world):
    # Given the property's publishable and secret keys
    shop = api_world.own.shop
    for name, method, url, body in _api_requests(api_world):
        if API_KEYS[name] != "secret":
            continue
        # When a secret-only endpoint is called with the publishable key
        refused = _call(api_world, shop.pk, method, url, body)
        # Then it is refused in the error shape, and the secret key is served
        assert refused.status_code == 403, (url, refused.status_code)
        assert refused.json()["error"]["code"] == "permission_denied"
        served = _call(api_world, shop.sk, method, url, body)
        assert served.status_code in (200, 201, 202), (url, served.status_code, served.content)


def test_api_keys__publishable_key__served_on_storefront_endpoints(api_world):
    for name, method, url, body in _api_requests(api_world):
        if API_KEYS[name] == "publishable":
            response = _call(api_world, api_world.own.shop.pk, method, url, body)
            assert response.status_code in (200, 201), (url, response.status_code)


def test_api_keys__key_cache__at_most_a_second():
    assert KEY_CACHE_SECONDS <= 1


@pytest.mark.parametrize("how", ["revoked in the admin", "revoked by another process"])
def test_api_keys__revoked_key__refused_everywhere_within_a_second(api_world, how):
    # Given a key in use (so its lookup is cached)
    shop = api_world.own.shop
    requests = _api_requests(api_world)
    for _, method, url, body in requests:
        _call(api_world, shop.sk, method, url, body)
    # When it is revoked: through the service here, or by a process whose cache is not ours
    key = ApiKey.objects.get(key_hash=hashlib.sha256(shop.sk.encode()).hexdigest())
    if how == "revoked in the admin":
        api_key_revoke(key=key)
    else:
        ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
        time.sleep(KEY_CACHE_SECONDS + 0.05)
    # Then every endpoint refuses it
    for name, method, url, body in requests:
        response = _call(api_world, shop.sk, method, url, body)
        assert response.status_code == 401, (name, response.status_code)
        assert response.json()["error"]["code"] == "invalid_api_key"


def test_api_keys__lookup__by_sha256_never_the_raw_key(shop):
    # Given a key; when it authenticates a request
    digest = hashlib.sha256(shop.pk.encode()).hexdigest()
    with CaptureQueriesContext(connection) as queries:
        assert shop.client().get("/api/v1/consent-policy").status_code == 200
    sql = "\n".join(q["sql"] for q in queries.captured_queries)
    # Then the database is asked for its hash (an index lookup: no comparison of the raw
    # key whose timing could leak it) and never sees the key itself
    assert digest in sql and shop.pk not in sql and shop.pk[3:] not in sql
    assert not ApiKey.objects.filter(key_hash=shop.pk).exists()


def test_api_keys__one_character_changed__refused(shop):
    last = "A" if shop.pk[-1] != "A" else "B"
    forged = shop.pk[:-1] + last
    assert shop.client(forged).get("/api/v1/consent-policy").status_code == 401


def test_api_keys__compared_in_constant_time_after_the_lookup():
    # The cached path compares digests with hmac.compare_digest, never ==
    import inspect

    from personalization.services import keys

    source = inspect.getsource(keys.api_key_authenticate)
    assert "hmac.compare_digest(" in source and "key_hash ==" not in source


def test_api_keys__never_logged(api_world, caplog, settings):
    # Given every logger at DEBUG, SQL included
    settings.DEBUG = True
    shop = api_world.own.shop
    revoked = api_world.other.shop
    api_key_revoke(key=ApiKey.objects.get(property=revoked.prop, kind="secret"))
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, "django.db.backends"):
        # When keys are used on every endpoint: valid, wrong kind, revoked, malformed, unknown
        for _, method, url, body in _api_requests(api_world):
            for key in (shop.pk, shop.sk, revoked.sk, shop.pk + "x", "sk_" + "z" * 43):
                _call(api_world, key, method, url, body)
        shop.client().post("/api/v1/events", "not json", content_type="application/json")
        shop.client().get("/api/v1/no-such-endpoint")
    # Then no log line holds a raw key
    logged = "\n".join(
        f"{r.getMessage()} {r.args!r} {getattr(r, 'request', '')!r}" for r in caplog.records
    )
    assert "SELECT" in logged  # the capture did see the queries
    for raw in (shop.pk, shop.sk, revoked.sk):
        assert raw not in logged and raw[3:] not in logged
