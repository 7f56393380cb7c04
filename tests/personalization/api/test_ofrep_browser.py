"""OpenFeature's official web SDK with the OFREP web provider, in Chromium, on a storefront page.

The page is on another origin than the app (127.0.0.1 rather than localhost: cross-origin,
both secure contexts), one the property allows, as a storefront's page would be; the SDK and
provider are the npm registry's packages pinned in tests/ofrep_web/ (package.json and
package-lock.json), bundled with esbuild into tests/ofrep_web/dist/ (ignored by git: a test
fixture, never served by the product). The bundle is built here when missing or stale
(``npm ci`` + esbuild); without node and npm the tests skip saying so (a failure under
REQUIRE_SERVICES=1, as in CI).
"""

import fcntl
import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from personalization.hotstate import decision_log_flush
from personalization.models import Decision, Property, Slot
from tests.conftest import needs
from tests.targeting import rule, slot

pytestmark = pytest.mark.django_db(transaction=True)

WEB = Path(__file__).resolve().parents[2] / "ofrep_web"
BUNDLE = WEB / "dist" / "ofrep-web.js"
INPUTS = ("package.json", "package-lock.json", "entry.js")


def _inputs_digest() -> str:
    digest = hashlib.sha256()
    for name in INPUTS:
        digest.update((WEB / name).read_bytes())
    return digest.hexdigest()


def _run(command: list[str]) -> None:
    done = subprocess.run(  # noqa: S603 (npm, with fixed arguments)
        command, cwd=WEB, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} failed in {WEB}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )


@pytest.fixture(scope="session")
def ofrep_web_bundle() -> Path:
    """The web SDK and OFREP web provider bundled (``window.OpenFeature``,
    ``window.OFREPWebProvider``), built from the pinned packages when missing or stale; one
    build at a time across concurrent test runs."""
    npm = shutil.which("npm")
    needs(
        npm is not None and shutil.which("node") is not None,
        "the OFREP web test bundles OpenFeature's web SDK with node and npm "
        "(apt-get install nodejs npm)",
    )
    assert npm is not None
    stamp = BUNDLE.with_suffix(".inputs")
    BUNDLE.parent.mkdir(exist_ok=True)
    with (BUNDLE.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        wanted = _inputs_digest()
        if not (BUNDLE.exists() and stamp.exists() and stamp.read_text() == wanted):
            # --ignore-scripts: nothing runs at install (esbuild's binary is a package of its own)
            _run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"])
            _run([npm, "run", "--silent", "build"])
            stamp.write_text(wanted)
    return BUNDLE


class Storefront:
    """A storefront page of an allowed origin with the bundle loaded, and the OFREP requests
    it made (method, path, status, If-None-Match sent, ETag received)."""

    def __init__(self, page: Any, app: str, prop: Property, key: str, bundle: Path) -> None:
        self.page, self.app, self.prop, self.key = page, app, prop, key
        self.origin = app.replace("localhost", "127.0.0.1")
        self.requests: list[dict[str, Any]] = []
        self.page_errors: list[str] = []
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on("response", self._on_response)
        html = (
            "<!doctype html><html><head><title>Shop</title>"
            f'<script src="{self.origin}/ofrep-web.js"></script></head>'
            "<body><h1>Shop</h1></body></html>"
        )
        page.context.grant_permissions(["local-network-access"])
        page.route(
            f"{self.origin}/shop/",
            lambda r: r.fulfill(status=200, content_type="text/html", body=html),
        )
        page.route(
            f"{self.origin}/ofrep-web.js",
            lambda r: r.fulfill(status=200, content_type="text/javascript", path=str(bundle)),
        )
        page.goto(f"{self.origin}/shop/")

    def _on_response(self, response: Any) -> None:
        request = response.request
        if "/ofrep/v1/" not in request.url or request.method == "OPTIONS":
            return
        self.requests.append(
            {
                "path": request.url.split(self.app, 1)[-1],
                "status": response.status,
                "if_none_match": request.headers.get("if-none-match"),
                "etag": response.headers.get("etag"),
            }
        )

    def start(self, context: dict[str, Any], poll_ms: int = 0) -> None:
        """OpenFeature's web SDK on the OFREP web provider, as a storefront sets it up."""
        self.page.evaluate(
            """async ([app, key, context, pollMs]) => {
                await OpenFeature.setContext(context);
                await OpenFeature.setProviderAndWait(new OFREPWebProvider({
                    baseUrl: app,
                    headers: [["Authorization", "Bearer " + key]],
                    pollInterval: pollMs,
                }));
            }""",
            [self.app, self.key, context, poll_ms],
        )

    def details(self, flag: str, kind: str = "Object", default: Any = None) -> dict[str, Any]:
        """``client.get<kind>Details(flag, default)``, as the page's code calls it."""
        return self.page.evaluate(
            f"([flag, dflt]) => OpenFeature.getClient().get{kind}Details(flag, dflt)",
            [flag, {} if default is None else default],
        )

    def wait_for(self, what: str, condition: Any, timeout_ms: int = 10_000) -> None:
        waited = 0
        while not condition():
            assert waited < timeout_ms, f"timed out waiting for {what}: {self.requests}"
            self.page.wait_for_timeout(50)
            waited += 50


@pytest.fixture
def storefront(
    page: Any, live_server: Any, make_shop: Any, consent: Any, ofrep_web_bundle: Path
) -> Iterator[Storefront]:
    """A property whose headline a rule adjusts for visitor v-1 only, a typed title, its
    page's origin allowed; visitors v-1 and v-2 granted everything."""
    origin = live_server.url.replace("localhost", "127.0.0.1")
    shop = make_shop("Web shop", origins=[origin])
    Property.objects.filter(pk=shop.prop.pk).update(holdout_pct=0)
    slot(shop.prop, "headline", {"short": {"text": "Quick picks"}})
    rule(shop.prop, "first-visitor", "headline", "short", {"id": "v-1"})
    slot(shop.prop, "title", {"short": {"text": "Hello"}})
    Slot.objects.filter(key="title").update(flag_value_field="text")
    for visitor in ("v-1", "v-2"):
        consent(shop.prop, visitor)
    yield Storefront(page, live_server.url, shop.prop, shop.pk, ofrep_web_bundle)
    page.unroute_all(behavior="ignoreErrors")


def test_ofrep_web_sdk__bulk_fetch__every_slot_from_one_decision(storefront):
    # Given the page's OpenFeature client for visitor v-1, on the OFREP web provider
    storefront.start({"targetingKey": "v-1", "session_id": "s-1", "plan": "pro"})
    # When the page reads its flags
    headline = storefront.details("headline")
    title = storefront.details("title", "String", "fallback")
    # Then they came from one bulk evaluation across origins: content, variant, reason and
    # the decision's id, which is logged with the page's context
    assert [(r["path"], r["status"]) for r in storefront.requests] == [
        ("/ofrep/v1/evaluate/flags", 200)
    ]
    assert (headline["value"], headline["variant"]) == ({"text": "Quick picks"}, "short")
    assert headline["reason"] == "TARGETING_MATCH"
    assert (title["value"], title["variant"]) == ("title default", "default")
    decision_id = headline["flagMetadata"]["decision_id"]
    assert title["flagMetadata"]["decision_id"] == decision_id
    decision_log_flush()
    decision = Decision.objects.get()
    assert str(decision.decision_id) == decision_id
    assert (decision.visitor_id, decision.session_id) == ("v-1", "s-1")
    assert decision.context == {"attributes": {"plan": "pro"}}
    # And a typed slot asked for an object, or an object slot for a string, is a TYPE_MISMATCH
    mismatched = storefront.details("headline", "String", "fallback")
    assert (mismatched["value"], mismatched["errorCode"]) == ("fallback", "TYPE_MISMATCH")
    assert storefront.details("title")["errorCode"] == "TYPE_MISMATCH"
    assert storefront.page_errors == []


def test_ofrep_web_sdk__polling__revalidates_with_the_etag_and_gets_304(storefront):
    # Given the provider polling every 300 ms
    storefront.start({"targetingKey": "v-1", "session_id": "s-1"}, poll_ms=300)
    first = storefront.requests[0]
    assert first["status"] == 200 and first["etag"]
    # When it polls while nothing changed
    storefront.wait_for("two polls", lambda: len(storefront.requests) >= 3)
    # Then it sends back the ETag (readable across origins) and is answered 304
    polls = storefront.requests[1:3]
    assert [(p["if_none_match"], p["status"]) for p in polls] == [(first["etag"], 304)] * 2
    # and keeps the answers it had
    assert storefront.details("headline")["variant"] == "short"
    assert storefront.page_errors == []


def test_ofrep_web_sdk__new_visitor__new_answers_from_a_new_decision(storefront):
    # Given the page answered for visitor v-1 (the rule adjusts v-1's headline)
    storefront.start({"targetingKey": "v-1", "session_id": "s-1"})
    before = storefront.details("headline")
    # When the context changes to another visitor
    storefront.page.evaluate(
        "() => OpenFeature.setContext({targetingKey: 'v-2', session_id: 's-9'})"
    )
    # Then the provider fetched again, unconditionally (another visitor's ETag is not
    # theirs), and the new visitor gets their own answer from their own decision
    after = storefront.details("headline")
    assert [(r["status"], r["if_none_match"]) for r in storefront.requests] == [
        (200, None),
        (200, None),
    ]
    assert (before["variant"], after["variant"]) == ("short", "default")
    assert after["reason"] == "DEFAULT"
    assert after["flagMetadata"]["decision_id"] != before["flagMetadata"]["decision_id"]
    decision_log_flush()
    assert sorted(Decision.objects.values_list("visitor_id", flat=True)) == ["v-1", "v-2"]
    assert storefront.page_errors == []


def test_ofrep_web_sdk__origin_not_allowed__provider_errors_and_defaults(storefront):
    # Given the property no longer allows the page's origin
    Property.objects.filter(pk=storefront.prop.pk).update(allowed_origins=["https://shop.example"])
    # When the page sets the provider up
    failed = storefront.page.evaluate(
        """async ([app, key]) => {
            try {
                await OpenFeature.setProviderAndWait(new OFREPWebProvider({
                    baseUrl: app, headers: [["Authorization", "Bearer " + key]]}));
                return null;
            } catch (e) { return String(e); }
        }""",
        [storefront.app, storefront.key],
    )
    # Then the refusal was readable (403, not a CORS failure) and flags are the defaults
    assert failed is not None
    assert [r["status"] for r in storefront.requests] == [403]
    fallback = storefront.details("headline", "Object", {"mine": True})
    assert fallback["value"] == {"mine": True} and fallback["errorCode"]
