"""The demo storefront page, the tracker's static files, CORS on the API, and GPC relayed by a
script (method "gpc")."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import Client

from benchmarks.tracker_size import measure
from consent.models import ConsentRecord, GpcEvidence
from consent.selectors import consent_history
from personalization.demo import DEMO_KEY_NAME
from personalization.models import ApiKey, Property
from personalization.services.keys import api_key_authenticate, api_key_revoke
from personalization.simulation import demo_targeting
from tests.conftest import make_event

ROOT = Path(__file__).resolve().parents[3]
STATIC = ROOT / "personalization" / "static" / "personalization"
TRACKER_FILES = [
    "tracker.js",
    "tracker-banner.js",
    "tracker-items.js",
    "tracker-survey.js",
    "tracker-live.js",
]


@pytest.fixture
def demo_on(settings):
    """The demo storefront switched on, as `make run` does (it is off by default)."""
    settings.DEMO_ENABLED = True


@pytest.fixture
def demo_prop(make_shop, demo_on):
    shop = make_shop(name="Demo shop", origins=["http://testserver"])
    Property.objects.filter(pk=shop.prop.pk).update(slug="demo-shop")
    shop.prop.refresh_from_db()
    demo_targeting(shop.prop)
    return shop.prop


def _script_key(html: str) -> str:
    match = re.search(r'data-key="(pk_[^"]+)"', html)
    assert match, "the page embeds no publishable key"
    return match.group(1)


# ---- the demo page ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_demo_page__no_demo_property__tells_to_run_make_run(demo_on):
    # Given no property with the slug demo-shop
    # When a newcomer opens /demo/
    response = Client().get("/demo/")
    # Then the page says how to create it, and embeds no script
    html = response.content.decode()
    assert response.status_code == 200
    assert "make run" in html and "load_demo" in html
    assert "<script" not in html
    assert not ApiKey.objects.exists()


def test_demo_page__demo_property__embeds_tracker_with_working_key(demo_prop):
    # When /demo/ is opened
    response = Client().get("/demo/")
    html = response.content.decode()
    assert response.status_code == 200
    # Then the tracker is loaded without blocking rendering, configured by data- attributes
    tag = re.search(r"<script[^>]*tracker\.js[^>]*>", html, re.S)
    assert tag and " async" in tag.group(0)
    assert 'data-api="http://testserver/api/v1/"' in tag.group(0)
    # And its key is a publishable key of the demo property named "demo page"
    key = api_key_authenticate(_script_key(html))
    assert key is not None and not key.is_secret
    assert key.property_id == demo_prop.pk and key.name == DEMO_KEY_NAME
    # And the slots and sections the tracker works on are there, with the slots' defaults
    for slot in ("headline", "cta", "recommendations", "newsletter_popup", "layout"):
        assert f'data-slot="{slot}"' in html
    for section in ("hero", "reviews", "details", "recommendations", "checkout"):
        assert f'data-section="{section}"' in html
    assert "New season, new shoes" in html and "Add to cart" in html
    assert 'data-delay-ms="10000"' in html and "<template>" in html
    assert '<form id="checkout"' in html


def test_demo_page__no_inline_script__ready_for_a_strict_csp(demo_prop):
    html = Client().get("/demo/").content.decode()
    for tag in re.findall(r"<script\b[^>]*>", html):
        # Every script is either a file or JSON data, never inline code.
        assert "src=" in tag or 'type="application/json"' in tag, tag
    assert not re.search(r"\son[a-z]+=", html), "no inline event handler attributes"
    assert "style=" not in html


def test_demo_page__second_visit__reuses_cached_key(demo_prop):
    # Given the page was opened once
    first = _script_key(Client().get("/demo/").content.decode())
    # When it is opened again
    second = _script_key(Client().get("/demo/").content.decode())
    # Then the same key serves, and only one demo key was issued
    assert first == second
    assert ApiKey.objects.filter(property=demo_prop, name=DEMO_KEY_NAME).count() == 1


def test_demo_page__cache_lost_or_key_revoked__issues_a_new_key(demo_prop):
    first = _script_key(Client().get("/demo/").content.decode())
    # When the cache forgets the key (a restart with the per-process cache)
    cache.clear()
    second = _script_key(Client().get("/demo/").content.decode())
    # And when staff revoke the key in use
    api_key_revoke(key=api_key_authenticate(second))
    third = _script_key(Client().get("/demo/").content.decode())
    # Then each time a usable key is issued
    assert len({first, second, third}) == 3
    assert api_key_authenticate(third) is not None


def test_demo_page__origin_not_allowed__says_so(make_shop, demo_on):
    shop = make_shop(name="Demo shop", origins=["http://127.0.0.1:8000"])
    Property.objects.filter(pk=shop.prop.pk).update(slug="demo-shop")
    html = Client().get("/demo/").content.decode()
    assert "not among the demo property" in html and "http://testserver" in html


def test_demo_page__form_posted__redirects_and_stores_nothing(demo_prop):
    response = Client().post("/demo/", {"name": "Ana", "email": "ana@example.org"})
    assert response.status_code == 302 and response["Location"] == "/demo/?sent=1"
    assert "order was received" in Client().get("/demo/?sent=1").content.decode()


def test_demo_page__not_switched_on__404_and_no_key_issued(make_shop, settings):
    # Given a demo property on a server where nobody switched the demo on (production)
    settings.DEMO_ENABLED = False
    shop = make_shop(name="Demo shop", origins=["http://testserver"])
    Property.objects.filter(pk=shop.prop.pk).update(slug="demo-shop")
    keys_before = ApiKey.objects.count()
    # When anyone opens /demo/, or posts to it
    opened, posted = Client().get("/demo/"), Client().post("/demo/", {"name": "Ana"})
    # Then there is no such page, and no publishable key was handed out
    assert opened.status_code == posted.status_code == 404
    assert "data-key" not in opened.content.decode()
    assert ApiKey.objects.count() == keys_before
    assert not ApiKey.objects.filter(name=DEMO_KEY_NAME).exists()


def test_settings__demo_enabled__off_unless_set():
    # Given the settings read from an environment without DEMO_ENABLED, then with it set
    script = "from django.conf import settings; print(settings.DEMO_ENABLED)"
    env = {k: v for k, v in os.environ.items() if k != "DEMO_ENABLED"}
    env["DJANGO_SETTINGS_MODULE"] = "personalization.settings"

    def read(**extra: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", "import django; django.setup(); " + script],
            env={**env, **extra},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    # Then the demo is off by default, on when asked for (as `make run` asks)
    assert read() == "False"
    assert read(DEMO_ENABLED="1") == "True"


def test_tracker_files__served_as_static__core_and_parts():
    # The snippet's script and the parts it loads on demand live beside each other.
    for name in [*TRACKER_FILES, "tracker.css"]:
        assert (STATIC / name).is_file(), name
    core = (STATIC / "tracker.js").read_text()
    # No third-party host, no eval, no document.write.
    assert not re.search(r"https?://", core.replace("https:", ""))
    for banned in ("eval(", "new Function", "document.write", "innerHTML"):
        assert banned not in core


def test_tracker_script__size__within_budget():
    # The budget is "at most 16 KB minified" (terser; benchmarks/tracker_size.py --terser
    # measures it, benchmarks/RESULTS.md records it; issue 17 raised it from 15 KB for the hook
    # that loads the live part). The guard here needs no JavaScript toolchain: the core script
    # without comments and indentation, gzipped, under 8,500 bytes, which is about where its
    # minified size would pass 16 KB (the ratio of the two has stayed near 0.533).
    rows = {row["file"]: row for row in measure()}
    assert rows["tracker.js"]["stripped_gzip"] < 8_500
    # The parts load only when needed, and stay small; the live part (the condition language,
    # the page-signal watchers, and reporting firings with putting a refused slot back) loads
    # only for a plan with entries.
    parts = [name for name in TRACKER_FILES[1:] if name != "tracker-live.js"]
    assert all(rows[name]["stripped"] < 4 * 1024 for name in parts)
    assert rows["tracker-live.js"]["stripped_gzip"] < 4.5 * 1024


# ---- CORS --------------------------------------------------------------------------------------


def test_cors_preflight__api_path__allowed_for_the_origin(db):
    # Given a storefront on another origin about to POST events with a key and GPC
    response = Client().options(
        "/api/v1/events",
        HTTP_ORIGIN="https://shop.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type, sec-gpc",
    )
    # Then the preflight succeeds without a key, echoing the origin
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "https://shop.example"
    allowed = {h.strip().lower() for h in response["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "sec-gpc"} <= allowed
    assert {m.strip() for m in response["Access-Control-Allow-Methods"].split(",")} == {
        "GET",
        "POST",
        "OPTIONS",
    }
    assert int(response["Access-Control-Max-Age"]) > 0
    assert "Origin" in response["Vary"]
    assert "Access-Control-Allow-Credentials" not in response


def test_cors_actual_request__allowed_origin__origin_echoed_with_vary(shop):
    response = shop.client(HTTP_ORIGIN="https://shop.example").post(
        "/api/v1/events", {"events": [make_event()]}, format="json"
    )
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "Origin" in response["Vary"]
    assert "Retry-After" in response["Access-Control-Expose-Headers"]


def test_cors_actual_request__foreign_origin__refused_but_readable(shop):
    # The preflight cannot see the key; the actual request is where a foreign origin is refused,
    # and the refusal stays readable so that the tracker can say why.
    response = shop.client(HTTP_ORIGIN="https://evil.example").post(
        "/api/v1/events", {"events": [make_event()]}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "origin_not_allowed"
    assert response["Access-Control-Allow-Origin"] == "https://evil.example"


def test_cors__no_origin_header__no_allow_origin_but_vary(shop):
    response = shop.client().get("/api/v1/consent-policy")
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response
    assert "Origin" in response["Vary"]


@pytest.mark.django_db
def test_cors__outside_the_api__untouched():
    for path in ("/demo/", "/admin/login/"):
        response = Client().options(
            path, HTTP_ORIGIN="https://shop.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
        )
        assert "Access-Control-Allow-Origin" not in response, path


def test_cors_preflight__not_a_preflight__goes_to_the_view(shop):
    # An OPTIONS without Access-Control-Request-Method is not a preflight: the API answers it.
    response = Client().options("/api/v1/events", HTTP_ORIGIN="https://shop.example")
    assert response.status_code != 204


SECRET_ONLY = [
    ("post", "/api/v1/privacy-requests"),
    ("get", "/api/v1/privacy-requests/00000000-0000-0000-0000-000000000000"),
    ("get", "/api/v1/privacy-exports/anything"),
    ("get", "/api/v1/experiments/cta-test/results"),
]


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/api/v1/consent-policy"), ("post", "/api/v1/events")] + SECRET_ONLY,
)
def test_secret_key__sent_from_a_browser__403_and_no_cors(shop, method, path):
    # Given a page that (wrongly) embeds the secret key: its requests carry an Origin, even
    # from an origin the property allows
    client = shop.client(shop.sk, HTTP_ORIGIN="https://shop.example")
    # When it calls the API, a storefront endpoint or a secret-only one
    response = getattr(client, method)(path, {}, format="json")
    # Then the key is refused with a code that says why, whether or not the key would do
    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert error["code"] == "secret_key_in_browser" and "browser" in error["message"]
    # And CORS does not answer: the page cannot even read the refusal
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]
    assert not ConsentRecord.objects.exists()


def test_secret_key__unknown_sk_from_a_browser__403_too(shop):
    # A key shaped like a secret one is refused from a browser before it is looked up.
    response = shop.client("sk_not-a-key", HTTP_ORIGIN="https://shop.example").get(
        "/api/v1/consent-policy"
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "secret_key_in_browser"
    assert "Access-Control-Allow-Origin" not in response


@pytest.mark.parametrize(("method", "path"), SECRET_ONLY)
def test_cors_preflight__secret_only_endpoint__not_answered(shop, method, path):
    # Given a browser about to call an endpoint only a secret key may call
    response = Client().options(
        path,
        HTTP_ORIGIN="https://shop.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD=method.upper(),
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )
    # Then the preflight gets no CORS headers (the browser will not send the request)
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]


def test_secret_key__server_side_without_origin__served(shop):
    # The same secret key from a server (no Origin header) is served as before.
    response = shop.client(shop.sk).post(
        "/api/v1/privacy-requests",
        {"kind": "opt_out", "visitor_id": "v-1", "regulation": "gdpr"},
        format="json",
    )
    assert response.status_code == 202, response.content
    assert "Access-Control-Allow-Origin" not in response


# ---- GPC relayed by a script ----------------------------------------------------------------


def test_consent_method_gpc__script_relays_gpc__opt_out_recorded_as_gpc(shop):
    # Given a script whose browser says navigator.globalPrivacyControl (it cannot set Sec-GPC)
    body = {
        "visitor_id": "v-gpc",
        "policy_version": 1,
        "purposes": {"analytics": True, "personalization": True, "granular_tracking": True},
        "method": "gpc",
    }
    # When it records consent with method "gpc"
    response = shop.client().post("/api/v1/consent", body, format="json")
    # Then the GPC opt-out is recorded exactly as with the header
    assert response.status_code == 201
    assert response.json()["purposes"] == {
        "analytics": True,
        "personalization": False,
        "granular_tracking": False,
    }
    (rec,) = consent_history(shop.prop.pk, "v-gpc")
    assert rec.method == "gpc" and rec.refused == ["granular_tracking", "personalization"]
    assert GpcEvidence.objects.filter(property=shop.prop).exists()
    assert ConsentRecord.objects.count() == 1
