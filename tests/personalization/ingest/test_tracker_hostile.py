"""Hostile variant content against the tracker script, in headless Chromium.

A storefront page (served to the browser by Playwright, on the live server's origin) loads the
tracker from the app's static files; the visitor accepts in the real banner, and the decision's
answer is a stub (page.route) carrying hostile content, so that the tracker itself is what is
tested: it must refuse whatever the server would let through.

Every payload reports itself if it ever runs: it posts ``pwned:<name>`` to the top window (which
collects it, from any frame, same-origin or not) and calls ``alert`` (a dialog Playwright sees).
After the answer is applied every element is poked (clicked, hovered, focused, sent load and
error events) so that an inline handler would run. Each refusal must be exactly one console
warning prefixed ``[microadjust]`` that names the slot, the attribute (or text) and the element.
"""

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from personalization.models import Property
from personalization.services.properties import property_create
from tests.personalization.ingest.test_tracker_browser import FAST, Storefront

pytestmark = pytest.mark.django_db(transaction=True)

DECISION_ID = "5d1e3c62-58a4-4c55-9a55-3a1f0c6f8e01"

# Before any page script, in every frame: the top window collects what payloads report, and
# notes when a decision has been applied.
WATCH = """
if (window === window.top) {
  window.__pwned = [];
  addEventListener('message', e => {
    const d = e.data;
    if (typeof d == 'string' && d.startsWith('pwned:')) window.__pwned.push(d.slice(6));
  });
  document.addEventListener('microadjust:decision', () => { window.__decided = true; });
}
"""

# Dispatch what would run an inline handler or follow a link, on every element of the page
# (buttons inside forms are left alone: they would submit the page away).
POKE = """() => {
  for (const el of document.querySelectorAll('head *, body *')) {
    if (el.closest('form, .ma-banner')) continue;
    el.dispatchEvent(new MouseEvent('click', {bubbles: true, cancelable: true}));
    for (const type of ['mouseover', 'focus', 'load', 'error', 'input', 'animationstart']) {
      el.dispatchEvent(new Event(type));
    }
  }
}"""

# Each slot's attributes (but the tracker's own data-ma-*) and text: what a refusal leaves as is.
SNAPSHOT = """() => [...document.querySelectorAll('[data-slot]')].map(e => [
  e.dataset.slot,
  [...e.attributes].filter(a => !a.name.startsWith('data-ma-')).map(a => [a.name, a.value]),
  e.textContent,
])"""


def payload(name: str) -> str:
    """Script that reports ``name`` if it ever runs, in whatever frame it runs."""
    return f"top.postMessage('pwned:{name}','*');alert('{name}')"


def frame_page(name: str) -> str:
    return f"<!doctype html><script>{payload(name)}</script>"


def serving(body: str, kind: str) -> Callable[[Any], None]:
    """A route handler answering ``body``. (A handler taking a second parameter, even one with a
    default, is handed the request by Playwright: hence a closure.)"""
    return lambda route: route.fulfill(body=body, content_type=kind)


class HostileStorefront(Storefront):
    """A page of our own making with the tracker, a stubbed decision, and what ran in it."""

    def __init__(self, page: Any, base: str, prop: Property, key: str) -> None:
        super().__init__(page, base, prop)
        self.key = key
        self.dialogs: list[str] = []
        self.hostile_requests: list[str] = []
        page.on("dialog", self._on_dialog)
        page.on("request", self._on_hostile_request)
        page.add_init_script(WATCH)
        # Nothing leaves for another host; the payload pages a refused attribute would load
        # exist, so that loading one would run it.
        page.route(re.compile(r"^https?://(?!localhost[:/]|127\.0\.0\.1[:/])"), lambda r: r.abort())
        for path, body, kind in [
            ("/hostile-frame/", frame_page("frame"), "text/html"),
            ("/hostile.js", payload("script-src"), "text/javascript"),
            ("/evil.css", "body { display: none }", "text/css"),
        ]:
            page.route(f"{base}{path}", serving(body, kind))

    def _on_dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _on_hostile_request(self, request: Any) -> None:
        if re.search(r"hostile|evil", request.url):
            self.hostile_requests.append(request.url)

    def serve(self, body: str, slots: dict[str, dict[str, Any]], head: str = "") -> None:
        """Open the page with ``body`` (and ``head``); the decision answers ``slots``."""
        attrs = " ".join(f'data-{k}="{v}"' for k, v in FAST.items())
        html = f"""<!doctype html><html><head><meta charset="utf-8"><title>Hostile</title>
          {head}
          <script src="/static/personalization/tracker.js" async data-key="{self.key}" {attrs}>
          </script></head><body>{body}</body></html>"""
        answer = {
            "decision_id": DECISION_ID,
            "personalized": True,
            "slots": {
                key: {"variant": f"v-{key}", "content": content, "source": {"kind": "rule"}}
                for key, content in slots.items()
            },
            "suppressed": [],
            "unknown_slots": [],
        }
        self.page.route(
            f"{self.base}/shop/",
            lambda r: r.fulfill(status=200, content_type="text/html", body=html),
        )
        self.page.route("**/api/v1/decide", lambda r: r.fulfill(json=answer))
        self.page.goto(f"{self.base}/shop/")

    def decided(self) -> None:
        """Accept in the banner and wait until the stubbed decision has been applied."""
        self.accept_all()
        self.wait(lambda: self.page.evaluate("window.__decided === true"), what="the decision")

    def refusals(self) -> list[str]:
        return [w for w in self.warnings if w.startswith("[microadjust]")]

    def settle(self, count: int, timeout: float = 8.0) -> None:
        """Give the answer time to be applied: until ``count`` warnings have come (or the time
        is up: the assertions then say what is missing), and a little longer, for one too many
        to show."""
        deadline = time.monotonic() + timeout
        while len(self.refusals()) < count and time.monotonic() < deadline:
            self.page.wait_for_timeout(50)
        self.page.wait_for_timeout(400)

    def poke(self) -> None:
        self.page.evaluate(POKE)
        self.page.wait_for_timeout(800)  # frames load, messages arrive

    def ran(self) -> list[str]:
        return self.page.evaluate("window.__pwned") + self.dialogs


@pytest.fixture
def storefront(page: Any, live_server: Any) -> Iterator[HostileStorefront]:
    prop, keys = property_create(name="Hostile shop", origins=[live_server.url])
    yield HostileStorefront(page, live_server.url, prop, keys["publishable"])
    page.unroute_all(behavior="ignoreErrors")


def refused(slot: str, name: str | None, tag: str) -> str:
    """The start of the one warning a refusal logs: the slot, the attribute (or text), the
    element."""
    label = "text" if name is None else json.dumps(name, ensure_ascii=False)
    return f"[microadjust] slot {slot}: {label} on <{tag}> refused"


def matched(warnings: list[str], expected: list[str]) -> Counter[str]:
    """How many warnings start with each expected prefix (a warning matching none counts under
    its own text)."""
    counts: Counter[str] = Counter()
    for warning in warnings:
        hits = [prefix for prefix in expected if warning.startswith(prefix)]
        counts[hits[0] if len(hits) == 1 else warning] += 1
    return counts


# ---- the corpus ----------------------------------------------------------------------------------

JS = "javascript:" + payload("js-url")
HOSTILE_URLS = [
    JS,
    "JavaScript:" + payload("js-url"),
    "JAVASCRIPT:" + payload("js-url"),
    "  javascript:" + payload("js-url"),
    "\tjavascript:" + payload("js-url"),
    "\njavascript:" + payload("js-url"),
    "\x01javascript:" + payload("js-url"),
    "java\tscript:" + payload("js-url"),
    "java\nscript:" + payload("js-url"),
    "java\rscript:" + payload("js-url"),
    "javascript&#58;" + payload("js-url"),
    "&#106;avascript:" + payload("js-url"),
    "javascript&colon;" + payload("js-url"),
    "data:text/html,<script>" + payload("data-url") + "</script>",
    "DATA:text/html,<script>" + payload("data-url") + "</script>",
    " data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    "VBScript:msgbox(1)",
]
HOSTILE_IMAGES = [
    JS,
    "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' onload=\"" + payload("svg") + '"/>',
    " DATA:image/png;base64,iVBORw0KGgo=",
    "vbscript:msgbox(1)",
]


def _url_schemes() -> tuple[str, dict[str, dict[str, Any]], list[str]]:
    body, slots, expected = [], {}, []
    for i, url in enumerate(HOSTILE_URLS):
        body.append(f'<a href="#" data-slot="link-{i}">link {i}</a>')
        slots[f"link-{i}"] = {"attributes": {"href": url}}
        expected.append(refused(f"link-{i}", "href", "a"))
    for i, url in enumerate(HOSTILE_IMAGES):
        body.append(f'<img alt="" data-slot="image-{i}">')
        slots[f"image-{i}"] = {"attributes": {"src": url}}
        expected.append(refused(f"image-{i}", "src", "img"))
    body.append('<img alt="" data-slot="srcset">')
    slots["srcset"] = {"attributes": {"srcset": "/ok.png 1x, " + JS + " 2x"}}
    expected.append(refused("srcset", "srcset", "img"))
    body.append('<video data-slot="video"></video>')
    slots["video"] = {"attributes": {"poster": "javascript:" + payload("poster")}}
    expected.append(refused("video", "poster", "video"))
    return "\n".join(body), slots, expected


def _on_handlers() -> tuple[str, dict[str, dict[str, Any]], list[str]]:
    names = ["onclick", "ONCLICK", "OnClick", "onClick", "onmouseover", "onfocus"]
    names += [" onclick", "onclick ", "\tonclick", "onclick\n", "on click", "onclick\x00"]
    img_names = ["onerror", "OnError", "ONERROR", " onerror", "onerror\x0c", "onload"]
    svg_names = ["onload", "OnLoad", "onbegin", "onclick"]
    body = """<button type="button" data-slot="buy">Buy</button>
      <img alt="" src="/missing.png" data-slot="photo">
      <svg data-slot="badge" width="10" height="10"><circle r="4"></circle></svg>"""
    slots = {
        "buy": {"attributes": {n: payload("handler") for n in names}},
        "photo": {"attributes": {n: payload("handler") for n in img_names}},
        "badge": {"attributes": {n: payload("handler") for n in svg_names}},
    }
    expected = [refused("buy", n, "button") for n in names]
    expected += [refused("photo", n, "img") for n in img_names]
    expected += [refused("badge", n, "svg") for n in svg_names]
    return body, slots, expected


def _style() -> tuple[str, dict[str, dict[str, Any]], list[str]]:
    names = ["style", "STYLE", "Style", " style"]
    value = "background:url(javascript:" + payload("style") + ");display:none"
    body = '<p data-slot="para">Hello</p>'
    slots = {"para": {"attributes": {n: value for n in names}}}
    return body, slots, [refused("para", n, "p") for n in names]


def _not_on_the_list() -> tuple[str, dict[str, dict[str, Any]], list[str]]:
    # URL-bearing attributes outside the allow-list, whatever their value, even https.
    body = """<form data-slot="form-js" action="/ok"><button type="button">Go</button></form>
      <form data-slot="form-away" action="/ok"></form>
      <form action="/ok"><button data-slot="submit" type="submit">Send</button></form>
      <a href="#" data-slot="pinged">ping</a>
      <svg width="10" height="10"><a href="#" data-slot="svg-link"><text y="9">x</text></a></svg>
      <p data-slot="clobber">p</p>"""
    slots = {
        "form-js": {"attributes": {"action": "javascript:" + payload("action")}},
        "form-away": {"attributes": {"action": "https://evil.example/collect"}},
        "submit": {"attributes": {"formaction": "JaVaScRiPt:" + payload("formaction")}},
        "pinged": {"attributes": {"ping": "javascript:" + payload("ping")}},
        "svg-link": {
            "attributes": {"xlink:href": JS, "href": "\tjavascript:" + payload("svg-href")}
        },
        "clobber": {
            "attributes": {"id": "CONFIG", "name": "CONFIG", "data-slot": "x", "srcdoc": "x"}
        },
    }
    expected = [
        refused("form-js", "action", "form"),
        refused("form-away", "action", "form"),
        refused("submit", "formaction", "button"),
        refused("pinged", "ping", "a"),
        refused("svg-link", "xlink:href", "a"),
        refused("svg-link", "href", "a"),
        refused("clobber", "id", "p"),
        refused("clobber", "name", "p"),
        refused("clobber", "data-slot", "p"),
        refused("clobber", "srcdoc", "p"),
    ]
    return body, slots, expected


def _srcdoc() -> tuple[str, dict[str, dict[str, Any]], list[str]]:
    body = '<iframe data-slot="frame" title="ad"></iframe>'
    slots = {"frame": {"attributes": {"srcdoc": f"<script>{payload('srcdoc')}</script>"}}}
    return body, slots, [refused("frame", "srcdoc", "iframe")]


def _loading_elements() -> tuple[str, dict[str, dict[str, Any]], list[str]]:
    # Elements that load or run what they point at are never adjusted, even with an http URL.
    body = """<iframe data-slot="frame" title="ad"></iframe>
      <object data-slot="object" width="10" height="10"></object>
      <embed data-slot="embed" width="10" height="10">"""
    slots = {
        "frame": {"attributes": {"src": "/hostile-frame/", "class": "ad"}},
        "object": {"attributes": {"data": "/hostile-frame/", "type": "text/html"}},
        "embed": {"attributes": {"src": "/hostile-frame/", "type": "text/html"}},
    }
    expected = [
        refused("frame", "src", "iframe"),
        refused("frame", "class", "iframe"),
        refused("object", "data", "object"),
        refused("object", "type", "object"),
        refused("embed", "src", "embed"),
        refused("embed", "type", "embed"),
    ]
    return body, slots, expected


def _head_elements() -> tuple[str, dict[str, dict[str, Any]], list[str]]:
    head = """<meta name="description" content="Shoes" data-slot="meta">
      <base target="_self" data-slot="base">
      <link rel="help" href="/help" data-slot="sheet">
      <style data-slot="css">p { color: black }</style>"""
    slots = {
        "meta": {"attributes": {"http-equiv": "refresh", "content": "0;url=/hostile-frame/"}},
        "base": {"attributes": {"href": "https://evil.example/"}},
        "sheet": {"attributes": {"rel": "stylesheet", "href": "/evil.css"}},
        "css": {"text": "body { display: none }"},
    }
    expected = [
        refused("meta", "http-equiv", "meta"),
        refused("meta", "content", "meta"),
        refused("base", "href", "base"),
        refused("sheet", "rel", "link"),
        refused("sheet", "href", "link"),
        refused("css", None, "style"),
    ]
    return head, slots, expected


def _script_elements() -> tuple[str, dict[str, dict[str, Any]], list[str]]:
    # An empty script has not run yet: text or a src given to it later would run.
    body = """<script data-slot="code"></script>
      <script data-slot="loader"></script>
      <p>Shop <span data-slot="inline"><script data-content="text"></script></span></p>"""
    slots = {
        "code": {"text": payload("script-text")},
        "loader": {"attributes": {"src": "/hostile.js"}},
        "inline": {"text": payload("script-content")},
    }
    expected = [
        refused("code", None, "script"),
        refused("loader", "src", "script"),
        refused("inline", None, "script"),
    ]
    return body, slots, expected


CASES = {
    "srcdoc-on-iframe": _srcdoc,
    "loading-elements": _loading_elements,
    "head-elements": _head_elements,
    "script-elements": _script_elements,
    "on-handlers": _on_handlers,
    "style-attribute": _style,
    "url-schemes": _url_schemes,
    "url-attributes-not-on-the-list": _not_on_the_list,
}


# ---- slot attributes and text --------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_tracker__hostile_slot_content__refused_once_each_and_nothing_runs(storefront, case):
    # Given a page whose slots a decision answers with hostile content
    markup, slots, expected = CASES[case]()
    if case == "head-elements":
        storefront.serve("<h1>Shop</h1>", slots, head=markup)
    else:
        storefront.serve(markup, slots)
    before = storefront.page.evaluate(SNAPSHOT)
    # When the visitor accepts, the answer is applied, and every element is poked
    storefront.decided()
    storefront.settle(len(expected))
    storefront.poke()
    # Then nothing ran, nothing hostile was loaded, and the slots are as the page had them
    assert storefront.ran() == []
    assert storefront.hostile_requests == []
    assert storefront.page.evaluate(SNAPSHOT) == before
    # And each refusal is exactly one [microadjust] warning, and there is no other
    assert matched(storefront.refusals(), expected) == Counter(expected)
    assert all("not allowed" in w for w in storefront.refusals())
    assert storefront.page_errors == []


def test_tracker__allowed_attributes_and_text__applied(storefront):
    # Given answers within the allow-list: class, title, aria-*, target, rel, alt, width,
    # loading, http(s), mailto, tel and relative URLs, srcset, and text that looks like markup
    body = """<a href="#" data-slot="offer">Offer</a>
      <img alt="" src="/img/default.png" data-slot="hero">
      <a href="#" data-slot="mail">Mail</a>
      <a href="#" data-slot="call">Call</a>
      <a href="#" data-slot="here">Here</a>
      <p data-slot="note">Default</p>"""
    slots = {
        "offer": {
            "attributes": {
                "href": "https://shop.example/sale",
                "class": "promo",
                "title": "Sale",
                "aria-label": "Our sale",
                "target": "_blank",
                "rel": "noopener",
            }
        },
        "hero": {
            "attributes": {
                "alt": "Red shoes",
                "src": "/img/red.png",
                "srcset": "/img/red.png 1x, https://shop.example/red@2x.png 2x",
                "width": 320,
                "loading": "lazy",
            }
        },
        "mail": {"attributes": {"href": "MAILTO:help@shop.example"}},
        "call": {"attributes": {"href": "tel:+33123456789"}},
        "here": {"attributes": {"href": "./sale?from=banner#top"}},
        "note": {"text": "<b onmouseover=\"alert('x')\">Bold?</b> no"},
    }
    storefront.serve(body, slots)
    # When the visitor accepts and the answer is applied
    storefront.decided()
    storefront.page.wait_for_selector("[data-slot=note][data-ma-variant]", state="attached")
    storefront.page.wait_for_timeout(300)
    # Then every attribute is set as the answer says
    get = storefront.page.get_attribute
    assert get("[data-slot=offer]", "href") == "https://shop.example/sale"
    assert get("[data-slot=offer]", "class") == "promo"
    assert get("[data-slot=offer]", "title") == "Sale"
    assert get("[data-slot=offer]", "aria-label") == "Our sale"
    assert get("[data-slot=offer]", "target") == "_blank"
    assert get("[data-slot=offer]", "rel") == "noopener"
    assert get("[data-slot=hero]", "alt") == "Red shoes"
    assert get("[data-slot=hero]", "src") == "/img/red.png"
    assert get("[data-slot=hero]", "srcset") == slots["hero"]["attributes"]["srcset"]
    assert get("[data-slot=hero]", "width") == "320"
    assert get("[data-slot=hero]", "loading") == "lazy"
    assert get("[data-slot=mail]", "href") == "MAILTO:help@shop.example"
    assert get("[data-slot=call]", "href") == "tel:+33123456789"
    assert get("[data-slot=here]", "href") == "./sale?from=banner#top"
    # And text is text: the markup shows as written, no element is made of it
    note = storefront.page.locator("[data-slot=note]")
    assert note.text_content() == slots["note"]["text"]
    assert note.evaluate("e => e.children.length") == 0
    # And nothing was refused
    assert storefront.refusals() == []
    assert storefront.page_errors == []


# ---- recommendation items ------------------------------------------------------------------------

ITEMS_PAGE = """<section data-slot="recos"><h2>For you</h2><div data-items></div>
  <template><div class="card">
    <a href="#" data-field="url" data-field-attr="href">link</a>
    <iframe title="x" data-field="html" data-field-attr="srcdoc"></iframe>
    <b data-field="name" data-field-attr="onclick">b</b>
    <i data-field="name" data-field-attr="ONMOUSEOVER">i</i>
    <u data-field="css" data-field-attr="style">u</u>
    <img alt="" data-field="pic" data-field-attr="src">
    <em data-field="name" data-field-attr="data-slot">em</em>
    <span data-field="name" data-field-attr=" onclick">s</span>
    <script data-field="code"></script>
    <style data-field="css"></style>
    <p class="label" data-field="label"></p>
    <h3 data-field="title"></h3>
  </div></template></section>"""


def test_tracker__hostile_items_template_fields__refused_once_each_and_nothing_runs(storefront):
    # Given a recommendations template whose fields name dangerous attributes and elements,
    # and an item whose fields are payloads
    item = {
        "item_id": "sku-1",
        "url": "javascript:" + payload("items-href"),
        "html": f"<script>{payload('items-srcdoc')}</script>",
        "name": payload("items-handler"),
        "css": "background:url(javascript:" + payload("items-style") + ")",
        "pic": 'data:image/svg+xml,<svg onload="' + payload("items-svg") + '"/>',
        "code": payload("items-script"),
        "label": f'<img src=x onerror="{payload("items-markup")}">',
        "title": "Red shoes",
    }
    storefront.serve(ITEMS_PAGE, {"recos": {"items": [item]}})
    # When the visitor accepts, the items render, and every element is poked
    storefront.decided()
    card = storefront.page.locator("[data-slot=recos] [data-items] .card")
    card.wait_for(state="attached")
    expected = [
        refused("recos", "href", "a"),
        refused("recos", "srcdoc", "iframe"),
        refused("recos", "onclick", "b"),
        refused("recos", "ONMOUSEOVER", "i"),
        refused("recos", "style", "u"),
        refused("recos", "src", "img"),
        refused("recos", "data-slot", "em"),
        refused("recos", " onclick", "span"),
        refused("recos", None, "script"),
        refused("recos", None, "style"),
    ]
    storefront.settle(len(expected))
    storefront.poke()
    # Then nothing ran, and each refused field was left as the template had it
    assert storefront.ran() == []
    assert card.locator("a").get_attribute("href") == "#"
    assert card.locator("iframe").get_attribute("srcdoc") is None
    assert card.locator("img").get_attribute("src") is None
    assert card.locator("em").get_attribute("data-slot") is None
    assert card.locator("script").evaluate("e => e.textContent") == ""
    assert card.locator("style").evaluate("e => e.textContent") == ""
    # And allowed fields are text, markup included, with no element made of it
    assert card.locator("h3").text_content() == "Red shoes"
    assert card.locator("p.label").text_content() == item["label"]
    assert card.locator("p.label *").count() == 0
    assert card.get_attribute("data-item-id") == "sku-1"
    # And each refusal is exactly one [microadjust] warning, and there is no other
    assert matched(storefront.refusals(), expected) == Counter(expected)
    assert storefront.page_errors == []


# ---- surveys -------------------------------------------------------------------------------------


def test_tracker_survey__choice_questions__no_literal_false_rendered(storefront):
    # Given a slot answered with a survey of single, multiple choice and text questions
    survey = {
        "key": "quick",
        "title": "A quick question",
        "questions": [
            {
                "key": "reason",
                "type": "single",
                "text": "What brought you here?",
                "choices": ["Search", "A friend"],
                "required": False,
            },
            {
                "key": "sizes",
                "type": "multiple",
                "text": "<b>Which sizes?</b>",
                "choices": ["S", "M"],
                "required": False,
            },
            {
                "key": "comment",
                "type": "text",
                "text": "Anything to add?",
                "choices": [],
                "required": False,
            },
        ],
    }
    storefront.page.route("**/api/v1/surveys/quick", lambda r: r.fulfill(json=survey))
    aside = '<aside data-slot="feedback" hidden></aside>'
    storefront.serve(aside, {"feedback": {"survey": "quick"}})
    # When the visitor accepts and the survey renders
    storefront.decided()
    form = storefront.page.locator("[data-slot=feedback] form.ma-survey")
    form.wait_for()
    # Then no choice question shows a stray "false" (nor any loose text) before its options
    for key in ("reason", "sizes"):
        fieldset = form.locator(f"[data-question={key}]")
        loose = fieldset.evaluate(
            "f => [...f.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent)"
        )
        assert loose == []
        assert "false" not in fieldset.inner_text()
        assert fieldset.locator("input").count() == 2
    assert "false" not in form.inner_text()
    # And the question texts are text, markup included
    assert form.locator("[data-question=sizes] legend").text_content() == "<b>Which sizes?</b>"
    assert form.locator("legend b").count() == 0
    # And the text question still has its box
    assert form.locator("[data-question=comment] textarea").count() == 1
    assert storefront.refusals() == []
    assert storefront.page_errors == []
