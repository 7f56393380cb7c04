"""The tracker's live part in headless Chromium: its condition language against GrowthBook's
public cases (as the server's is in test_conformance.py), the page signals it measures against
scripted input, and live plans end to end on the demo storefront: live rules created in the
test, decide's real plans, the firing applied in place, reported to POST /api/v1/adjustments
and read back from the decision log.
"""

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from personalization.hotstate import decision_log_flush
from personalization.models import Adjustment, Decision, LiveFiring, Property, Slot, Variant
from personalization.simulation import demo_live_rules
from tests.personalization.decisions.test_conformance import CASES, unique_ids
from tests.personalization.ingest import test_tracker_browser
from tests.personalization.ingest.test_tracker_browser import Storefront
from tests.targeting import rule

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


# ---- live plans on the demo storefront: real live rules, decide's real plans ---------------


FAST = {"page.scroll_speed": {"$gt": 2500}}
CONDENSED = {"layout": "condensed"}
ADJUSTMENTS = re.compile(r"/api/v1/adjustments$")
RECORD_FIRINGS = (
    "document.addEventListener('microadjust:adjustment', e => "
    "(window.__fired ||= []).push(e.detail))"
)


# When page.scroll_speed first crosses 2,500 px/s (read after the live part's own scroll
# handler, registered before this one) and when the layout then changes.
PROBE_CROSSING = """() => {
    const slot = document.querySelector('[data-slot=layout]');
    window.__probe = {cross: null, change: null};
    addEventListener('scroll', () => {
        if (__probe.cross === null && microadjust.signals().page.scroll_speed > 2500)
            __probe.cross = performance.now();
    });
    new MutationObserver(() => {
        if (__probe.change === null && slot.classList.contains('layout-condensed'))
            __probe.change = performance.now();
    }).observe(slot, {attributes: true});
}"""


def live_rule(
    prop: Property,
    key: str,
    slot_key: str,
    variant: str,
    content: dict[str, Any],
    when: dict[str, Any],
    **fields: Any,
) -> None:
    """A live rule: ``variant`` of ``slot_key`` (made with ``content`` if the slot lacks it)
    when ``when`` holds in the page; above the demo's page-load rules unless told."""
    slot = Slot.objects.get(property=prop, key=slot_key)
    Variant.objects.get_or_create(slot=slot, key=variant, defaults={"content": content})
    rule(prop, key, slot_key, variant, when, **{"priority": 60, **fields})


def fast_scrollers(prop: Property, **fields: Any) -> None:
    live_rule(prop, "fast-scrollers", "layout", "condensed", CONDENSED, FAST, **fields)


def make_tall(page: Any) -> None:
    """Room to scroll for several seconds (set from script: the page's CSP refuses inline
    style attributes)."""
    page.evaluate(
        "() => { const f = document.createElement('div'); f.id = 'filler';"
        " f.style.height = '8000px'; document.body.append(f); }"
    )


def live_loaded(page: Any) -> bool:
    return page.evaluate("typeof microadjust.signals == 'function'")


def open_accepted(shop: Storefront, tall: bool = False, script: str = "") -> None:
    """The demo page, accepted, once its plan has loaded the live part; ``tall`` adds room to
    scroll, ``script`` runs before consent is given."""
    shop.open()
    if tall:
        make_tall(shop.page)
    if script:
        shop.page.evaluate(script)
    shop.accept_all()
    shop.wait(lambda: live_loaded(shop.page), what="the live part to load")


def scroll_at(page: Any, speed: float, seconds: float) -> float | None:
    """Scroll down at ``speed`` px/s for ``seconds`` in animation frames, and read
    page.scroll_speed just before the last frame's scroll (the signal then covers one full
    second of the scroll; None without the live part)."""
    return page.evaluate(
        """([speed, seconds]) => new Promise(done => {
            const y0 = scrollY, t0 = performance.now();
            const step = t => {
                const elapsed = Math.max(0, t - t0) / 1000;
                if (elapsed >= seconds) return done(microadjust.signals?.().page.scroll_speed);
                scrollTo(0, y0 + speed * elapsed);
                requestAnimationFrame(step);
            };
            requestAnimationFrame(step);
        })""",
        [speed, seconds],
    )


def page_firings(shop: Storefront) -> Callable[[], list[Decision]]:
    """Reads the decision log's in-page firings (flushing what waits in Redis first)."""

    def read() -> list[Decision]:
        decision_log_flush()
        return list(Decision.objects.filter(property=shop.prop, trigger="page").order_by("pk"))

    return lambda: shop.read(read)


def reports(shop: Storefront) -> int:
    return shop.calls.count(("POST", "adjustments"))


def busy_once(shop: Storefront, retry_after: int) -> list[str]:
    """The API answers the page's first report 503 (``Retry-After``), the next ones for real;
    the bodies of the reports it got, in order."""
    attempts: list[str] = []

    def answer(route: Any) -> None:
        attempts.append(route.request.post_data)
        if len(attempts) > 1:
            route.continue_()
            return
        headers = {"Retry-After": str(retry_after)}
        route.fulfill(status=503, headers=headers, json={"error": {}})

    shop.page.route(ADJUSTMENTS, answer)
    return attempts


def layout_of(page: Any) -> str | None:
    return page.get_attribute("[data-slot=layout]", "data-layout")


def test_live_signals__scripted_scroll__speed_reads_back_within_ten_percent(storefront):
    shop = storefront
    # Given the demo page, tall enough to scroll for a while, offered a plan reading scroll speed
    fast_scrollers(shop.prop)
    open_accepted(shop, tall=True)
    # When the page is scrolled at 1,500 px/s, then at 600 px/s, by script
    fast = scroll_at(shop.page, 1500, 1.3)
    shop.page.wait_for_timeout(1100)
    slow = scroll_at(shop.page, 600, 1.3)
    # Then page.scroll_speed reads each back within 10 %
    assert fast == pytest.approx(1500, rel=0.10)
    assert slow == pytest.approx(600, rel=0.10)
    # And neither crossed the plan's threshold: the layout is the page-load one, nothing reported
    assert layout_of(shop.page) != "condensed"
    assert reports(shop) == 0
    # And a second after the scroll stops, the speed is 0 again
    shop.page.wait_for_timeout(1300)
    assert shop.page.evaluate("microadjust.signals().page.scroll_speed") == 0
    depth = shop.page.evaluate("microadjust.signals().page.scroll_depth")
    assert 0 < depth <= 100
    assert shop.page_errors == []


def test_live_plan__fast_scroll__applied_in_place_within_150_ms_reported_and_logged_once(
    storefront,
):
    shop = storefront
    # Given a live rule that condenses the layout for fast scrollers, and a visitor who accepted
    fast_scrollers(shop.prop)
    open_accepted(shop, tall=True, script=RECORD_FIRINGS)
    plan = shop.decision()
    # And a probe noting when page.scroll_speed first crosses 2,500 px/s and the layout changes
    shop.page.evaluate(PROBE_CROSSING)
    # When the visitor scrolls fast, twice
    scroll_at(shop.page, 4000, 1.2)
    shop.wait(lambda: shop.page.evaluate("window.__fired?.length"), what="the entry to fire")
    shop.page.evaluate("scrollTo(0, 0)")
    scroll_at(shop.page, 4000, 1.2)
    # Then the layout changed in place, without a reload, within 150 ms of the crossing
    probe = shop.page.evaluate("window.__probe")
    assert probe["cross"] is not None and probe["change"] is not None
    assert 0 <= probe["change"] - probe["cross"] <= 150
    assert shop.page.evaluate("performance.getEntriesByType('navigation').length") == 1
    layout = shop.page.locator("[data-slot=layout]")
    assert layout.get_attribute("data-layout") == "condensed"
    assert "layout-condensed" in (layout.get_attribute("class") or "")
    # And it fired once, and was reported once with the decision, its token and the signal read
    (fired,) = shop.page.evaluate("window.__fired")
    assert fired["slot"] == "layout" and fired["variant"] == "condensed"
    assert fired["decision_id"] == layout.get_attribute("data-ma-decision") == str(plan.decision_id)
    assert fired["signals"]["page.scroll_speed"] > 2500 and fired["token"]
    logged = shop.wait(page_firings(shop), what="the firing in the decision log")
    shop.page.wait_for_timeout(300)
    assert reports(shop) == 1
    # And the decision log holds it once: a decision fired in the page, child of the page
    # load's, with the page signal it read, and its adjustment
    (decision,) = logged
    assert str(decision.parent_decision_id) == str(plan.decision_id)
    assert decision.signals["page"]["page.scroll_speed"] > 2500
    assert decision.suppressed == []
    answers = Adjustment.objects.filter(decision=decision)
    assert [(a.slot_key, a.variant_key, a.source_key, a.is_default) for a in answers] == [
        ("layout", "condensed", "fast-scrollers", False)
    ]
    assert LiveFiring.objects.get().applied is True
    assert shop.page_errors == []


def test_live_plan__cap_per_session__holds_across_two_page_views(storefront):
    shop = storefront
    # Given a fast-scroller rule capped at once per session, fired in a first page view
    fast_scrollers(shop.prop, cap_per_session=1)
    open_accepted(shop, tall=True)
    scroll_at(shop.page, 4000, 1.2)
    shop.wait(page_firings(shop), what="the first firing")
    # When the visitor opens the next page of the same session
    shop.page.goto(shop.base + "/demo/?page=shoes")
    shop.wait(lambda: shop.page.evaluate("document.querySelector('[data-ma-decision]')"))
    shop.page.wait_for_timeout(300)
    make_tall(shop.page)
    scroll_at(shop.page, 4000, 1.2)
    shop.page.wait_for_timeout(300)
    # Then the cap is spent: no plan (the live part is not even loaded), nothing more reported
    assert not live_loaded(shop.page)
    assert reports(shop) == 1
    assert [d.suppressed for d in page_firings(shop)()] == [[]]


def test_live_plan__two_tabs_fire_at_once__the_server_refuses_one_and_it_puts_its_slot_back(
    storefront,
):
    shop = storefront
    # Given a fast-scroller rule capped at once per session, and a visitor with two tabs of one
    # session, each offered the entry by its own decision
    fast_scrollers(shop.prop, cap_per_session=1)
    open_accepted(shop, tall=True)
    a = shop.page
    with a.context.expect_page() as opened:
        a.evaluate("window.open(location.href)")
    b = opened.value
    b.wait_for_load_state()
    shop.wait(lambda: live_loaded(b), what="the second tab's plan")
    make_tall(b)
    assert b.evaluate("microadjust.sessionId()") == a.evaluate("microadjust.sessionId()")
    # And the two reports held until both tabs have fired, so that they reach the server at once
    held: list[Any] = []

    def together(route: Any) -> None:
        held.append(route)
        if len(held) == 2:
            for r in held:
                r.continue_()

    a.context.route(ADJUSTMENTS, together)
    # When both tabs scroll fast at the same time
    start = """() => { const y0 = scrollY, t0 = performance.now();
        const step = t => { const s = (t - t0) / 1000; if (s > 1.2) return;
            scrollTo(0, y0 + 4000 * Math.max(s, 0)); requestAnimationFrame(step); };
        requestAnimationFrame(step); }"""
    a.evaluate(start)
    b.evaluate(start)
    shop.wait(lambda: len(held) == 2, what="both tabs to fire")
    logged = shop.wait(lambda: len(page_firings(shop)()) == 2 and page_firings(shop)())
    # Then the server applied one and refused the other by the cap
    assert sorted(bool(d.suppressed) for d in logged) == [False, True]
    refused = next(d for d in logged if d.suppressed)
    assert refused.suppressed == [
        {"slot": "layout", "candidate": "rule:fast-scrollers", "reason": "frequency_cap"}
    ]
    assert Adjustment.objects.filter(property=shop.prop, decision__trigger="page").count() == 1
    # And the refused tab put its slot back (the page-load answer's layout), the other kept it
    shop.wait(lambda: sorted([str(layout_of(a)), str(layout_of(b))]) == ["None", "condensed"])
    back = a if layout_of(a) is None else b
    assert "layout-condensed" not in back.get_attribute("[data-slot=layout]", "class")
    assert "layout-grid" in back.get_attribute("[data-slot=layout]", "class")
    assert back.get_attribute("[data-slot=layout]", "data-ma-variant") == "default"
    # And it does not fire that slot again in this page view
    back.evaluate("scrollTo(0, 0)")
    scroll_at(back, 4000, 1.2)
    back.wait_for_timeout(300)
    assert len(held) == 2 and layout_of(back) is None


def test_live_plan__without_personalization__nothing_fires(storefront):
    shop = storefront
    # Given a live rule, and a visitor who allows analytics and granular tracking only
    fast_scrollers(shop.prop)
    shop.open()
    make_tall(shop.page)
    shop.wait(lambda: shop.page.evaluate("!!microadjust.consent.policy()"))
    shop.page.evaluate(
        "microadjust.consent.set({analytics: true, granular_tracking: true,"
        " personalization: false})"
    )
    shop.wait(lambda: shop.page.evaluate("microadjust.consent.get().analytics === true"))
    # When they scroll fast
    scroll_at(shop.page, 4000, 1.2)
    shop.wait_event("scroll")
    # Then no decision was asked, no plan loaded, nothing fired or was reported
    assert ("POST", "decide") not in shop.calls and reports(shop) == 0
    assert not live_loaded(shop.page)
    assert layout_of(shop.page) != "condensed"
    assert page_firings(shop)() == []


def test_live_plan__failed_report__retried_and_never_applied_twice(storefront):
    shop = storefront
    # Given a fast-scroller rule, and an API that answers the first report 503
    fast_scrollers(shop.prop)
    attempts = busy_once(shop, retry_after=0)
    open_accepted(shop, tall=True, script=RECORD_FIRINGS)
    shop.page.evaluate(
        """() => { const slot = document.querySelector('[data-slot=layout]');
            let was = false; window.__changes = 0;
            new MutationObserver(() => {
                const now = slot.classList.contains('layout-condensed');
                if (now != was) { window.__changes++; was = now; }
            }).observe(slot, {attributeFilter: ['class']}); }"""
    )
    # When the visitor scrolls fast
    scroll_at(shop.page, 4000, 1.2)
    logged = shop.wait(page_firings(shop), what="the retried report to be logged")
    # Then the same report went twice, was applied and logged once, the slot changed once
    assert len(attempts) == 2 and attempts[0] == attempts[1]
    assert len(logged) == 1 and logged[0].suppressed == []
    assert shop.page.evaluate("window.__fired.length") == 1
    assert shop.page.evaluate("window.__changes") == 1
    assert layout_of(shop.page) == "condensed"


def test_live_plan__report_waiting_for_its_retry__sent_at_once_when_the_page_is_hidden(
    storefront,
):
    shop = storefront
    # Given a firing whose first report got a 503 asking to come back in a minute
    fast_scrollers(shop.prop)
    attempts = busy_once(shop, retry_after=60)
    open_accepted(shop, tall=True)
    scroll_at(shop.page, 4000, 1.2)
    shop.wait(lambda: len(attempts) == 1, what="the first report")
    shop.page.wait_for_timeout(300)
    assert len(attempts) == 1
    # When the page is hidden (the visitor switches tab, or leaves)
    shop.page.evaluate(
        "Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    # Then the waiting report is sent at once, not a minute later, and logged
    shop.wait(lambda: len(attempts) == 2, timeout=5, what="the page-hide try")
    assert len(shop.wait(page_firings(shop))) == 1


def test_live_signals__clicks_rage_clicks_exit_intent_and_sections(storefront):
    shop = storefront
    # Given live rules reading rage clicks, exit intent and a section's visible time
    prop = shop.prop
    live_rule(prop, "rage", "layout", "condensed", CONDENSED, {"page.rage_clicks": {"$gte": 1}})
    live_rule(prop, "leaving", "cta", "wait", {"label": "Wait!"}, {"page.exit_intent": True})
    live_rule(
        prop,
        "reading-hero",
        "recommendations",
        "reading",
        {"title": "Still reading?"},
        {"page.section_visible_s.hero": {"$gte": 2}},
    )
    open_accepted(shop)
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
    # And each entry fired in place, and the server applied each
    title = "[data-slot=recommendations] [data-content=title]"
    shop.wait(lambda: shop.page.inner_text(title) == "Still reading?")
    assert shop.page.inner_text("[data-slot=cta]") == "Wait!"
    assert layout_of(shop.page) == "condensed"
    logged = shop.wait(lambda: len(page_firings(shop)()) == 3 and page_firings(shop)())
    assert all(d.suppressed == [] for d in logged)
    # with the page signal each read, a section's visible seconds by its own name
    assert sorted(list(d.signals["page"]) for d in logged) == [
        ["page.exit_intent"],
        ["page.rage_clicks"],
        ["page.section_visible_s.hero"],
    ]
    assert shop.warnings == []
    assert shop.page_errors == []


def test_live_plan__none_in_the_answer__live_part_never_loaded(storefront):
    shop = storefront
    # Given a visitor on the demo page, whose property has no live rule
    shop.open()
    shop.accept_all()
    shop.wait(lambda: shop.page.evaluate("document.querySelector('[data-ma-decision]')"))
    shop.page.wait_for_timeout(300)
    # Then the live part was never fetched, and nothing measures page signals
    scripts = shop.page.evaluate("[...document.scripts].map(s => s.src)")
    assert not any("tracker-live.js" in src for src in scripts)
    assert shop.page.evaluate("typeof microadjust.signals") == "undefined"


def test_live_plan__consent_withdrawn__measuring_firing_and_reporting_stop(storefront):
    shop = storefront
    # Given a live rule reading the page's clicks, and a visitor who accepted
    live_rule(shop.prop, "clicky", "layout", "condensed", CONDENSED, {"page.clicks": {"$gte": 5}})
    open_accepted(shop)
    shop.page.mouse.click(5, 300)
    shop.wait(lambda: shop.page.evaluate("microadjust.signals().page.clicks") == 1)
    # When they withdraw consent in the page, then click on
    shop.page.evaluate("microadjust.consent.refuseAll()")
    shop.wait(lambda: shop.page.evaluate("microadjust.consent.get().personalization === false"))
    for _ in range(6):
        shop.page.mouse.click(5, 300)
    shop.page.wait_for_timeout(200)
    # Then nothing is measured any more, the plan never fires, nothing is reported
    assert shop.page.evaluate("microadjust.signals().page.clicks") == 0
    assert layout_of(shop.page) != "condensed"
    assert reports(shop) == 0


def test_live_plan__malformed_when__warned_once_and_ignored(storefront):
    shop = storefront
    # Given two live rules, and decide's real plan with one entry's `when` broken on its way
    live_rule(shop.prop, "clicky", "layout", "condensed", CONDENSED, {"page.clicks": {"$gte": 1}})
    live_rule(shop.prop, "hi", "cta", "hi", {"label": "Hi"}, {"page.clicks": {"$gte": 1}})

    def break_layout(route: Any) -> None:
        response = route.fetch()
        body = response.json()
        for entry in body.get("live", []):
            if entry["slot"] == "layout":
                entry["when"] = "page.clicks > 1"
        route.fulfill(response=response, body=json.dumps(body))

    shop.page.route(re.compile(r"/api/v1/decide$"), break_layout)
    open_accepted(shop)
    # When the visitor clicks, twice
    shop.page.mouse.click(5, 300)
    shop.page.mouse.click(5, 300)
    # Then the good entry fires and is applied, the bad one is warned about once, never applied
    shop.wait(lambda: shop.page.inner_text("[data-slot=cta]") == "Hi")
    assert shop.warned("live entry for slot layout") == 1
    assert layout_of(shop.page) != "condensed"
    (logged,) = shop.wait(page_firings(shop))
    assert [a.slot_key for a in Adjustment.objects.filter(decision=logged)] == ["cta"]
    assert shop.page_errors == []


def test_live_signals__time__dwell_and_idle_count_and_input_resets_idle(storefront):
    shop = storefront
    # Given a live rule reading idleness, on a page the visitor has accepted
    live_rule(shop.prop, "asleep", "layout", "condensed", CONDENSED, {"page.idle_s": {"$gte": 600}})
    open_accepted(shop)
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


# ---- the demo's own live rules (what `make run` ships) --------------------------------------


def wiggle(page: Any, speed: float, seconds: float) -> None:
    """Scroll down and back up the page at ``speed`` px/s for ``seconds`` (a fast scroller on
    a page shorter than a second of their scrolling)."""
    page.evaluate(
        """([speed, seconds]) => new Promise(done => {
            const room = document.documentElement.scrollHeight - innerHeight;
            const t0 = performance.now();
            const step = t => {
                const s = Math.max(0, t - t0) / 1000, d = (speed * s) % (2 * room);
                scrollTo(0, d <= room ? d : 2 * room - d);
                s >= seconds ? done() : requestAnimationFrame(step);
            };
            requestAnimationFrame(step);
        })""",
        [speed, seconds],
    )


def test_demo_live_rules__fast_scroller__condensed_in_place_within_150_ms_logged_once(storefront):
    shop = storefront
    # Given the demo's live rules, as `make run` loads them, and a visitor who accepted
    demo_live_rules(shop.prop)
    open_accepted(shop, script=RECORD_FIRINGS)
    shop.page.evaluate(PROBE_CROSSING)
    # When they scroll through the shop fast
    wiggle(shop.page, 4000, 1.5)
    # Then the product list is condensed in place within 150 ms of the speed crossing 2,500 px/s
    probe = shop.wait(lambda: shop.page.evaluate("__probe.change !== null && __probe"))
    assert 0 <= probe["change"] - probe["cross"] <= 150
    assert layout_of(shop.page) == "condensed"
    # And it was reported once and logged once, by the demo's rule
    (fired,) = shop.page.evaluate("window.__fired")
    assert fired["slot"] == "layout" and fired["variant"] == "condensed"
    (logged,) = shop.wait(page_firings(shop))
    assert logged.suppressed == []
    assert [(a.slot_key, a.source_key) for a in Adjustment.objects.filter(decision=logged)] == [
        ("layout", "fast-scrollers-condensed")
    ]
    wiggle(shop.page, 4000, 1.2)
    assert reports(shop) == 1
    assert shop.page_errors == []


def test_demo_live_rules__newsletter__held_while_reading_shown_on_exit_intent(storefront):
    shop = storefront
    # Given the demo's live rules, and a visitor who accepted and reads on
    demo_live_rules(shop.prop)
    open_accepted(shop)
    popup = shop.page.locator("[data-slot=newsletter_popup]")
    assert popup.get_attribute("data-ma-variant") == "held"
    shop.page.mouse.move(300, 300)
    assert popup.is_hidden()
    # When the pointer leaves the page through its top edge
    shop.page.mouse.move(300, -5)
    shop.page.dispatch_event("html", "mouseout", {"clientY": -5, "relatedTarget": None})
    # Then the pop-up shows in place, reported and logged once by the demo's rule
    shop.wait(lambda: popup.is_visible(), what="the pop-up")
    (logged,) = shop.wait(page_firings(shop))
    assert logged.signals["page"]["page.exit_intent"] is True
    assert [(a.slot_key, a.source_key) for a in Adjustment.objects.filter(decision=logged)] == [
        ("newsletter_popup", "newsletter-when-ready")
    ]
