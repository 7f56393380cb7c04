"""The tracker's live part in headless Chromium: its condition language against GrowthBook's
public cases (as the server's is in test_conformance.py), and the page signals it measures
against scripted input on the demo storefront.

Until decide hands out plans (issue 17, the engine's part), the demo's real decide answer is
extended in the browser with a ``live`` entry: everything else (the page, the decision, consent)
is the live server's.
"""

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.personalization.decisions.test_conformance import CASES, unique_ids
from tests.personalization.ingest import test_tracker_browser
from tests.personalization.ingest.test_tracker_browser import Storefront

STATIC = Path(__file__).resolve().parents[3] / "personalization" / "static" / "personalization"
LIVE_JS = (STATIC / "tracker-live.js").read_text()

# Cases of the evalCondition section that do not apply to the page's evaluator, with the reason.
# (None: the server's departures from GrowthBook's SDK are the page's too, and the cases agree.)
NOT_APPLICABLE: dict[str, str] = {}

pytestmark = pytest.mark.django_db(transaction=True)

# The demo property, as the tracker's other browser tests build it.
demo = test_tracker_browser.demo


@pytest.fixture
def storefront(page: Any, live_server: Any, demo: Any) -> Iterator[Storefront]:
    yield Storefront(page, live_server.url, demo)
    page.unroute_all(behavior="ignoreErrors")


# ---- the condition language -----------------------------------------------------------------


def test_live_eval_condition__growthbook_cases__every_applicable_case_passes(page: Any) -> None:
    # Given the live part loaded in a page beside a tracker object
    page.set_content("<!doctype html><title>conformance</title>")
    page.evaluate("window.microadjust = {}")
    page.add_script_tag(content=LIVE_JS)
    assert page.evaluate("typeof microadjust.evalCondition") == "function"
    rows = CASES["evalCondition"]
    names = unique_ids(row[0] for row in rows)
    cases = [
        {
            "name": name,
            "condition": row[1],
            "attributes": row[2],
            "groups": row[4] if len(row) > 4 else None,
        }
        for name, row in zip(names, rows, strict=True)
        if name not in NOT_APPLICABLE
    ]
    # When each case is evaluated by microadjust.evalCondition in Chromium
    got = page.evaluate(
        """cases => cases.map(c => {
            try { return microadjust.evalCondition(c.condition, c.attributes, c.groups || {}); }
            catch (e) { return 'threw ' + e; }
        })""",
        cases,
    )
    # Then every applicable case gives GrowthBook's expected answer
    expected = {name: row[3] for name, row in zip(names, rows, strict=True)}
    wrong = [
        (c["name"], c["condition"], c["attributes"], answer)
        for c, answer in zip(cases, got, strict=True)
        if answer is not expected[c["name"]]
    ]
    assert wrong == []
    assert len(cases) == len(rows) == 248


def test_live_eval_condition__server_departures__same_as_the_server(page: Any) -> None:
    # Given the page's evaluator and the server's
    from personalization.conditions import eval_condition

    page.set_content("<!doctype html><title>departures</title>")
    page.evaluate("window.microadjust = {}")
    page.add_script_tag(content=LIVE_JS)
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        # Malformed logic fails closed
        ({"$and": {"a": 1}}, {"a": 1}),
        ({"$or": "x"}, {}),
        ({"$not": [1]}, {}),
        # Objects compare regardless of key order
        ({"o": {"x": 1, "y": 2}}, {"o": {"y": 2, "x": 1}}),
        # Every key holds, logic operators included
        ({"$or": [{"a": 1}], "b": 2}, {"a": 1, "b": 3}),
        # A path reaches own keys and canonical indexes only
        ({"a.length": 2}, {"a": [1, 2]}),
        ({"a.01": 2}, {"a": [1, 2]}),
        ({"a.1": 2}, {"a": [1, 2]}),
        ({"o.toString": {"$exists": True}}, {"o": {}}),
        # Page signals as the tracker builds them
        (
            {"page.section_visible_s.hero": {"$gte": 3}},
            {"page": {"section_visible_s": {"hero": 4}}},
        ),
        (
            {"page.exit_intent": True, "page.scroll_speed": {"$gt": 2500}},
            {"page": {"exit_intent": True, "scroll_speed": 100}},
        ),
    ]
    # When both evaluate each
    got = page.evaluate("cs => cs.map(([c, a]) => microadjust.evalCondition(c, a, {}))", cases)
    # Then they agree
    assert got == [eval_condition(c, a) for c, a in cases]


# ---- the plan and the page signals on the demo storefront -----------------------------------


def make_tall(shop: Storefront) -> None:
    """Room to scroll for several seconds (set from script: the page's CSP refuses inline
    style attributes)."""
    shop.page.evaluate(
        "() => { const f = document.createElement('div'); f.id = 'filler';"
        " f.style.height = '8000px'; document.body.append(f); }"
    )


def with_plan(shop: Storefront, entries: list[dict[str, Any]]) -> None:
    """Add ``entries`` as the plan of the real decide answer (decide does not make plans yet)."""

    def extend(route: Any) -> None:
        response = route.fetch()
        body = response.json()
        body["live"] = [{**entry, "token": "t"} for entry in entries]
        route.fulfill(response=response, body=json.dumps(body))

    shop.page.route(re.compile(r"/api/v1/decide$"), extend)


def live_loaded(shop: Storefront) -> bool:
    return shop.page.evaluate("typeof microadjust.signals == 'function'")


def open_with_plan(
    shop: Storefront, entries: list[dict[str, Any]], tall: bool = False, script: str = ""
) -> None:
    """The demo page with ``entries`` as its plan, accepted, once the live part has loaded;
    ``tall`` adds room to scroll, ``script`` runs before consent is given."""
    with_plan(shop, entries)
    shop.open()
    if tall:
        make_tall(shop)
    if script:
        shop.page.evaluate(script)
    shop.accept_all()
    shop.wait(lambda: live_loaded(shop), what="the live part to load")


def scroll_at(shop: Storefront, speed: float, seconds: float) -> float:
    """Scroll down at ``speed`` px/s for ``seconds`` in animation frames, and read
    page.scroll_speed just before the last frame's scroll (the signal then covers one full
    second of the scroll)."""
    return shop.page.evaluate(
        """([speed, seconds]) => new Promise(done => {
            const y0 = scrollY, t0 = performance.now();
            const step = t => {
                const elapsed = Math.max(0, t - t0) / 1000;
                if (elapsed >= seconds) return done(microadjust.signals().page.scroll_speed);
                scrollTo(0, y0 + speed * elapsed);
                requestAnimationFrame(step);
            };
            requestAnimationFrame(step);
        })""",
        [speed, seconds],
    )


LAYOUT_FAST = {
    "slot": "layout",
    "variant": "condensed",
    "content": {"layout": "condensed"},
    "when": {"page.scroll_speed": {"$gt": 2500}},
    "priority": 40,
    "source": {"kind": "rule", "key": "fast-scrollers", "version": 1},
    "max_fires": 1,
}


def test_live_signals__scripted_scroll__speed_reads_back_within_ten_percent(storefront):
    shop = storefront
    # Given the demo page, tall enough to scroll for a while, with a plan reading scroll speed
    open_with_plan(shop, [LAYOUT_FAST], tall=True)
    # When the page is scrolled at 1,500 px/s, then at 600 px/s, by script
    fast = scroll_at(shop, 1500, 1.3)
    shop.page.wait_for_timeout(1100)
    slow = scroll_at(shop, 600, 1.3)
    # Then page.scroll_speed reads each back within 10 %
    assert fast == pytest.approx(1500, rel=0.10)
    assert slow == pytest.approx(600, rel=0.10)
    # And neither crossed the plan's threshold: the layout is the page-load one
    assert shop.page.get_attribute("[data-slot=layout]", "data-layout") != "condensed"
    # And a second after the scroll stops, the speed is 0 again
    shop.page.wait_for_timeout(1300)
    assert shop.page.evaluate("microadjust.signals().page.scroll_speed") == 0
    depth = shop.page.evaluate("microadjust.signals().page.scroll_depth")
    assert 0 < depth <= 100
    assert shop.page_errors == []


def test_live_plan__signal_crosses_threshold__entry_applied_in_place_once(storefront):
    shop = storefront
    # Given a plan that condenses the layout for fast scrollers
    open_with_plan(
        shop,
        [LAYOUT_FAST],
        tall=True,
        script=(
            "document.addEventListener('microadjust:adjustment', e => "
            "(window.__fired ||= []).push(e.detail))"
        ),
    )
    # When the visitor scrolls fast, twice
    scroll_at(shop, 4000, 1.2)
    shop.wait(lambda: shop.page.evaluate("window.__fired?.length"), what="the entry to fire")
    shop.page.evaluate("scrollTo(0, 0)")
    scroll_at(shop, 4000, 1.2)
    shop.page.wait_for_timeout(200)
    # Then the layout changed in place, without a reload, and the firing happened once
    layout = shop.page.locator("[data-slot=layout]")
    assert layout.get_attribute("data-layout") == "condensed"
    assert "layout-condensed" in (layout.get_attribute("class") or "")
    fired = shop.page.evaluate("window.__fired")
    assert len(fired) == 1
    assert fired[0]["slot"] == "layout" and fired[0]["variant"] == "condensed"
    assert fired[0]["token"] == "t"
    assert fired[0]["signals"]["page.scroll_speed"] > 2500
    assert fired[0]["decision_id"] == layout.get_attribute("data-ma-decision")
    assert shop.page_errors == []


def test_live_signals__clicks_rage_clicks_exit_intent_and_sections(storefront):
    shop = storefront
    # Given a plan reading clicks, rage clicks, exit intent and a section's visible time
    open_with_plan(
        shop,
        [
            {**LAYOUT_FAST, "when": {"page.rage_clicks": {"$gte": 1}}},
            {
                **LAYOUT_FAST,
                "slot": "cta",
                "content": {"label": "Wait!"},
                "when": {"page.exit_intent": True},
            },
            {
                **LAYOUT_FAST,
                "slot": "headline",
                "content": {"text": "Still reading?"},
                "when": {"page.section_visible_s.hero": {"$gte": 2}},
            },
        ],
    )
    # When the visitor clicks three times in one spot, once elsewhere, and leaves by the top
    box = shop.page.locator("h1").bounding_box()
    assert box is not None
    x, y = box["x"] + 10, box["y"] + 10
    for _ in range(3):
        shop.page.mouse.click(x, y)
        shop.page.wait_for_timeout(80)
    shop.page.mouse.click(x + 200, y + 5)
    signals = shop.page.evaluate("microadjust.signals().page")
    assert signals["clicks"] >= 4 and signals["rage_clicks"] == 1
    assert signals["exit_intent"] is False
    shop.page.mouse.move(200, 200)
    shop.page.mouse.move(200, -5)
    shop.page.dispatch_event("html", "mouseout", {"clientY": -5, "relatedTarget": None})
    # Then exit intent is set, and the hero section's visible seconds grow
    shop.wait(lambda: shop.page.evaluate("microadjust.signals().page.exit_intent"))
    shop.wait(
        lambda: shop.page.evaluate("microadjust.signals().page.section_visible_s.hero >= 2"),
        what="two visible seconds of the hero",
    )
    # And each entry fired in place
    shop.wait(lambda: shop.page.inner_text("[data-slot=headline]") == "Still reading?")
    assert shop.page.inner_text("[data-slot=cta]") == "Wait!"
    assert shop.page.get_attribute("[data-slot=layout]", "data-layout") == "condensed"
    assert shop.page_errors == []


def test_live_plan__none_in_the_answer__live_part_never_loaded(storefront):
    shop = storefront
    # Given a visitor on the demo page, whose decision has no plan
    shop.open()
    shop.accept_all()
    shop.wait(lambda: shop.page.evaluate("document.querySelector('[data-ma-decision]')"))
    shop.page.wait_for_timeout(300)
    # Then the live part was never fetched, and nothing measures page signals
    scripts = shop.page.evaluate("[...document.scripts].map(s => s.src)")
    assert not any("tracker-live.js" in src for src in scripts)
    assert shop.page.evaluate("typeof microadjust.signals") == "undefined"


def test_live_plan__consent_withdrawn__measuring_and_firing_stop(storefront):
    shop = storefront
    # Given a plan reading the page's clicks, and a visitor who accepted
    open_with_plan(shop, [{**LAYOUT_FAST, "when": {"page.clicks": {"$gte": 5}}}])
    shop.page.mouse.click(5, 300)
    shop.wait(lambda: shop.page.evaluate("microadjust.signals().page.clicks") == 1)
    # When they withdraw consent in the page, then click on
    shop.page.evaluate("microadjust.consent.refuseAll()")
    shop.wait(lambda: shop.page.evaluate("microadjust.consent.get().personalization === false"))
    for _ in range(6):
        shop.page.mouse.click(5, 300)
    shop.page.wait_for_timeout(200)
    # Then nothing is measured any more, and the plan never fires
    assert shop.page.evaluate("microadjust.signals().page.clicks") == 0
    assert shop.page.get_attribute("[data-slot=layout]", "data-layout") != "condensed"


def test_live_plan__malformed_when__warned_once_and_ignored(storefront):
    shop = storefront
    # Given a plan with an entry whose `when` is not a condition, beside a good one
    open_with_plan(
        shop,
        [
            {**LAYOUT_FAST, "when": "page.clicks > 1"},
            {
                **LAYOUT_FAST,
                "slot": "cta",
                "content": {"label": "Hi"},
                "when": {"page.clicks": {"$gte": 1}},
            },
        ],
    )
    # When the visitor clicks
    shop.page.mouse.click(5, 300)
    # Then the good entry fires, the bad one is warned about once and never applied
    shop.wait(lambda: shop.page.inner_text("[data-slot=cta]") == "Hi")
    assert shop.warned("live entry for slot layout") == 1
    assert shop.page.get_attribute("[data-slot=layout]", "data-layout") != "condensed"
    assert shop.page_errors == []


def test_live_signals__time__dwell_and_idle_count_and_input_resets_idle(storefront):
    shop = storefront
    # Given a plan reading idleness, on a page the visitor has accepted
    open_with_plan(shop, [{**LAYOUT_FAST, "when": {"page.idle_s": {"$gte": 600}}}])
    # When the visitor does nothing for a while
    shop.page.keyboard.press("Shift")
    shop.wait(
        lambda: shop.page.evaluate("microadjust.signals().page.idle_s >= 2"),
        what="two idle seconds",
    )
    before = shop.page.evaluate("microadjust.signals().page")
    # Then idle and dwell seconds have counted, and an input sets idle back to 0
    assert before["dwell_s"] >= before["idle_s"] >= 2
    shop.page.keyboard.press("Shift")
    shop.wait(lambda: shop.page.evaluate("microadjust.signals().page.idle_s") == 0)
    assert shop.page.evaluate("microadjust.signals().page.dwell_s") >= before["dwell_s"]
