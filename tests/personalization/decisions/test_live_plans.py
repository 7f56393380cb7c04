"""Live plans at decide and POST /api/v1/adjustments: the page fires, the server counts."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from personalization.decisions import firings, plans
from personalization.exceptions import ApplicationError
from personalization.hotstate import decision_log_flush
from personalization.models import Adjustment, Decision, LiveFiring
from personalization.services.rules import rule_save
from tests.conftest import hot_state_use, is_postgres
from tests.targeting import rule, slot

DECIDE = "/api/v1/decide"
REPORT = "/api/v1/adjustments"
FAST = {"page.scroll_speed": {"$gt": 1000}}


@pytest.fixture(params=["database", "redis"])
def live_shop(request, shop, consent, settings):
    """A shop with two slots, no holdout, and a consenting visitor v-1, on each back-end."""
    hot_state_use(settings, request.param)
    shop.prop.holdout_pct = 0
    shop.prop.save()
    slot(shop.prop, "layout", {"condensed": {"layout": "condensed"}})
    slot(shop.prop, "headline", {"b": {"text": "B"}})
    consent(shop.prop, "v-1")
    return shop


def ask(shop, visitor="v-1", session="s-1", slots=("layout",), attributes=None):
    body = {"visitor_id": visitor, "session_id": session, "slots": list(slots)}
    if attributes is not None:
        body["context"] = {"attributes": attributes}
    response = shop.client().post(DECIDE, body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def report(shop, entry, decision_id, signals=None, **override):
    body = {
        "decision_id": decision_id,
        "slot": entry["slot"],
        "variant": entry["variant"],
        "token": entry["token"],
        "signals": signals if signals is not None else {"page.scroll_speed": 3100},
        "fired_at": timezone.now().isoformat(),
        **override,
    }
    return shop.client().post(REPORT, body, format="json")


def firings_logged(prop):
    decision_log_flush()
    return list(Decision.objects.filter(property=prop, trigger="page").order_by("pk"))


def test_decide__live_rule_with_server_part_true__plan_entry_holds_only_the_page_part(live_shop):
    # Given a live rule: free-plan visitors who scroll fast get the condensed layout
    rule(live_shop.prop, "fast-free", "layout", "condensed",
         {"plan": "free", **FAST}, priority=40)  # fmt: skip
    # When a free-plan visitor's page asks
    data = ask(live_shop, attributes={"plan": "free"})
    # Then the page-load answer is the default and the plan holds one entry reading page.* only
    assert data["slots"]["layout"]["variant"] == "default"
    (entry,) = data["live"]
    assert entry["when"] == FAST
    assert entry["slot"] == "layout" and entry["variant"] == "condensed"
    assert entry["content"] == {"layout": "condensed"}
    assert entry["source"] == {"kind": "rule", "key": "fast-free", "version": 1}
    assert entry["priority"] == 40 and entry["max_fires"] == 1 and entry["token"]
    # and a pro-plan visitor (the server part false) gets no plan at all
    assert "live" not in ask(live_shop, attributes={"plan": "pro"})


def test_decide__live_rule__nothing_offered_without_consent_or_under_a_higher_answer(
    live_shop, consent
):
    rule(live_shop.prop, "fast", "layout", "condensed", FAST, priority=40)
    # A visitor who refused personalization gets no plan
    consent(live_shop.prop, "v-2", {"analytics": True, "personalization": False})
    assert "live" not in ask(live_shop, visitor="v-2")
    # A page-load answer of higher priority is never outranked by an entry
    rule(live_shop.prop, "everyone", "layout", "condensed", {}, priority=90)
    data = ask(live_shop, session="s-9")
    assert data["slots"]["layout"]["source"]["key"] == "everyone"
    assert "live" not in data


def test_adjustments__firing__applied_logged_once_with_page_signals(live_shop):
    rule(live_shop.prop, "fast", "layout", "condensed", FAST, cap_per_session=1)
    data = ask(live_shop)
    (entry,) = data["live"]
    # When the page reports the firing
    response = report(live_shop, entry, data["decision_id"])
    # Then it is applied, and logged as an adjustment fired in the page
    assert response.status_code == 200, response.content
    assert response.json() == {"applied": True}
    (fired,) = firings_logged(live_shop.prop)
    assert str(fired.parent_decision_id) == data["decision_id"]
    assert fired.signals == {"page": {"page.scroll_speed": 3100}}
    assert fired.personalized is True and fired.suppressed == []
    answers = list(Adjustment.objects.filter(decision=fired))
    assert [(a.slot_key, a.variant_key, a.source_key) for a in answers] == [
        ("layout", "condensed", "fast")
    ]
    # When the same report comes again (a retry)  Then the same answer, nothing logged twice
    again = report(live_shop, entry, data["decision_id"])
    assert again.status_code == 200 and again.json() == {"applied": True}
    assert len(firings_logged(live_shop.prop)) == 1
    assert LiveFiring.objects.filter(property=live_shop.prop).count() == 1
    # and the session's cap is spent: the next page view is offered nothing
    assert "live" not in ask(live_shop)


def test_adjustments__two_tabs_fire_at_once__the_cap_holds_and_the_second_is_refused(live_shop):
    # Given two page views of one session offered the same capped entry (two tabs)
    rule(live_shop.prop, "fast", "layout", "condensed", FAST, cap_per_session=1)
    first, second = ask(live_shop), ask(live_shop)
    assert first["live"] and second["live"]
    # When both fire
    one = report(live_shop, first["live"][0], first["decision_id"])
    two = report(live_shop, second["live"][0], second["decision_id"])
    # Then the first is applied, the second refused by the cap (the tab puts its slot back)
    assert one.json() == {"applied": True}
    assert two.json() == {"applied": False, "reason": "frequency_cap"}
    logged = firings_logged(live_shop.prop)
    assert len(logged) == 2
    refused = logged[1]
    assert refused.suppressed == [
        {"slot": "layout", "candidate": "rule:fast", "reason": "frequency_cap"}
    ]
    # and the log holds exactly the firing that was applied
    fired = Adjustment.objects.filter(property=live_shop.prop, decision__trigger="page")
    assert [a.decision_id for a in fired] == [logged[0].pk]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("hot_state", ["database", "redis"])
def test_adjustments__concurrent_reports_of_two_tabs__never_beyond_the_cap(
    shop, consent, settings, hot_state
):
    if not is_postgres():
        pytest.skip("concurrent transactions need PostgreSQL")
    hot_state_use(settings, hot_state)
    shop.prop.holdout_pct = 0
    shop.prop.save()
    slot(shop.prop, "layout", {"condensed": {"layout": "condensed"}})
    consent(shop.prop, "v-1")
    rule(shop.prop, "fast", "layout", "condensed", FAST, cap_per_session=1)
    offers = [ask(shop) for _ in range(4)]
    outcomes: list[dict] = []

    def fire(data):
        try:
            outcomes.append(
                firings.fire(
                    shop.prop,
                    {**{k: data["live"][0][k] for k in ("slot", "variant", "token")},
                     "decision_id": data["decision_id"], "signals": {}},
                )
            )  # fmt: skip
        finally:
            connection.close()

    threads = [threading.Thread(target=fire, args=(d,)) for d in offers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o["applied"] for o in outcomes) == [False, False, False, True]
    decision_log_flush()
    assert Adjustment.objects.filter(property=shop.prop, decision__trigger="page").count() == 1


def test_adjustments__forged_altered_other_slot__refused_and_nothing_logged(live_shop):
    rule(live_shop.prop, "fast", "layout", "condensed", FAST)
    rule(live_shop.prop, "fast-h", "headline", "b", FAST)
    data = ask(live_shop, slots=("layout", "headline"))
    entry = next(e for e in data["live"] if e["slot"] == "layout")
    token = entry["token"]
    altered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    cases = [
        report(live_shop, entry, data["decision_id"], token=altered),
        report(live_shop, entry, data["decision_id"], token="not-a-token"),
        # the layout entry's token sent for the headline slot, or another variant
        report(live_shop, entry, data["decision_id"], slot="headline", variant="b"),
        report(live_shop, entry, data["decision_id"], variant="default"),
        # another decision's id
        report(live_shop, entry, "00000000-0000-4000-8000-000000000000"),
    ]
    for response in cases:
        assert response.status_code == 403, response.content
        assert response.json()["error"]["code"] == "invalid_token"
    assert firings_logged(live_shop.prop) == []
    assert not LiveFiring.objects.exists()


def test_adjustments__expired_token__refused(live_shop):
    rule(live_shop.prop, "fast", "layout", "condensed", FAST)
    data = ask(live_shop)
    (entry,) = data["live"]
    later = timezone.now() + plans.PLAN_TTL + timedelta(seconds=1)
    body = {"decision_id": data["decision_id"], "slot": "layout", "variant": "condensed",
            "token": entry["token"]}  # fmt: skip
    with pytest.raises(ApplicationError) as refused:
        firings.fire(live_shop.prop, body, now=later)
    assert refused.value.code == "token_expired" and refused.value.status_code == 403
    assert not LiveFiring.objects.exists()


def test_adjustments__another_propertys_key__refused(live_shop, make_shop):
    rule(live_shop.prop, "fast", "layout", "condensed", FAST)
    data = ask(live_shop)
    other = make_shop("Other")
    body = {"decision_id": data["decision_id"], "slot": "layout", "variant": "condensed",
            "token": data["live"][0]["token"]}  # fmt: skip
    response = other.client().post(REPORT, body, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "invalid_token"


def test_adjustments__consent_withdrawn_after_decide__refused_and_logged_as_suppressed(
    live_shop, consent
):
    rule(live_shop.prop, "fast", "layout", "condensed", FAST)
    data = ask(live_shop)
    consent(live_shop.prop, "v-1", {"analytics": True, "personalization": False})
    response = report(live_shop, data["live"][0], data["decision_id"])
    assert response.json() == {"applied": False, "reason": "consent"}
    (logged,) = firings_logged(live_shop.prop)
    assert logged.suppressed == [{"slot": "layout", "candidate": "rule:fast", "reason": "consent"}]
    assert not Adjustment.objects.filter(decision=logged).exists()


def test_adjustments__rule_edited_since__refused_as_changed(live_shop):
    r = rule(live_shop.prop, "fast", "layout", "condensed", FAST)
    data = ask(live_shop)
    r.status = "paused"
    rule_save(rule=r)
    response = report(live_shop, data["live"][0], data["decision_id"])
    assert response.json() == {"applied": False, "reason": "rule_changed"}


@pytest.mark.parametrize(
    "body, path",
    [
        ({}, "decision_id"),
        ({"decision_id": "x", "slot": "a", "variant": "b", "token": "t"}, "decision_id"),
        (
            {
                "decision_id": "00000000-0000-4000-8000-000000000000",
                "slot": "a",
                "variant": "b",
                "token": "t",
                "signals": {"scroll": 1},
            },
            "signals",
        ),  # fmt: skip
        (
            {
                "decision_id": "00000000-0000-4000-8000-000000000000",
                "slot": "a",
                "variant": "b",
                "token": "t",
                "extra": 1,
            },
            "extra",
        ),  # fmt: skip
    ],
)
def test_adjustments__malformed_body__400_in_the_error_shape(shop, body, path):
    response = shop.client().post(REPORT, body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert any(p["path"].startswith(path) for p in error["details"]["errors"])


def test_decide__in_page_only_rule__offered_even_when_the_server_part_settles_it(live_shop):
    rule(live_shop.prop, "page-only", "layout", "condensed", {}, fires="page")
    rule(live_shop.prop, "load-only", "headline", "b", FAST, fires="load")
    data = ask(live_shop, slots=("layout", "headline"))
    # The in-page-only rule is not applied at load, but offered with an empty when
    assert data["slots"]["layout"]["variant"] == "default"
    assert [(e["slot"], e["when"]) for e in data["live"]] == [("layout", {})]
    # and the page-load-only live rule is neither applied nor offered
    assert data["slots"]["headline"]["variant"] == "default"


def test_preview__dry_run__explains_the_plan_and_logs_nothing(live_shop):
    from personalization.decisions import DecideRequest, decide

    rule(live_shop.prop, "fast", "layout", "condensed", {"plan": "free", **FAST})
    result = decide(
        live_shop.prop,
        DecideRequest("v-1", "s-1", ["layout"], {"attributes": {"plan": "free"}}),
        dry_run=True,
    )
    assert [e["when"] for e in result.live] == [FAST]
    assert any(
        "live rule fast offered to the page: condensed fires in the page when" in line
        for line in result.trace
    ), result.trace
    assert not result.logged
    decision_log_flush()
    assert not Decision.objects.exists()


def test_rule_admin__live_rule__says_when_it_fires_and_how_its_firings_fared(live_shop, staff):
    from django.test import Client

    from personalization.permissions import MARKETING

    r = rule(live_shop.prop, "fast", "layout", "condensed", FAST, cap_per_session=1)
    first, second = ask(live_shop), ask(live_shop)
    report(live_shop, first["live"][0], first["decision_id"])
    report(live_shop, second["live"][0], second["decision_id"])
    client = Client()
    client.force_login(staff(MARKETING, live_shop.prop))
    page = client.get(f"/admin/personalization/rule/{r.pk}/change/").content.decode()
    assert "Fires in the page when page.scroll_speed &gt; 1000 px/s" in page
    assert "fired 1 time(s), refused 1 frequency cap" in page
    assert "median time to fire" in page


def test_rule_admin__page_rule_restricted_to_page_load__refused_with_the_reason(live_shop, staff):
    from django.test import Client

    from personalization.models import Rule, Slot, Variant
    from personalization.permissions import MARKETING

    layout = Slot.objects.get(property=live_shop.prop, key="layout")
    data = {
        "property": live_shop.prop.pk,
        "key": "fast",
        "slot": layout.pk,
        "variant": Variant.objects.get(slot=layout, key="condensed").pk,
        "condition": '{"page.scroll_speed": {"$gt": 1000}}',
        "priority": 100,
        "status": "active",
        "fires": "load",
        "cooldown_seconds": 0,
        "min_sample": 200,
        "versions-TOTAL_FORMS": 0,
        "versions-INITIAL_FORMS": 0,
    }
    client = Client()
    client.force_login(staff(MARKETING, live_shop.prop))
    response = client.post("/admin/personalization/rule/add/", data)
    assert response.status_code == 200
    assert "it can fire in the page only" in response.content.decode()
    assert not Rule.objects.filter(key="fast").exists()
    # and the same rule firing in the page is saved
    response = client.post("/admin/personalization/rule/add/", {**data, "fires": "any"})
    assert response.status_code == 302
    assert Rule.objects.get(key="fast").fires == "any"


def test_simulator__live_plan__fired_from_simulated_page_signals_through_the_service(live_shop):
    import random

    from personalization.decisions import DecideRequest, decide
    from personalization.simulation import PERSONAS, SimulationTotals, Visit, play_live

    # Given a decision whose plan holds a fast-scroller entry, and a fast scroller's page view
    rule(live_shop.prop, "fast", "layout", "condensed", FAST)
    now = timezone.now()
    result = decide(live_shop.prop, DecideRequest("v-1", "s-1", ["layout"]), now=now)
    fast = next(p for p in PERSONAS if p.name == "fast_scroller")
    assert fast.scroll_speed[0] > 1000
    visit = Visit(random.Random(3), "v-1", fast, now, "desktop", True)
    visit.decision_id = str(result.decision_id)
    totals = SimulationTotals()
    # When the simulator plays the plan
    play_live(live_shop.prop, visit, result.live, totals)
    # Then the entry fired, was applied by the server and logged as fired in the page
    assert (totals.live_fired, totals.live_applied) == (1, 1)
    assert visit.answers["layout"] == "condensed"
    (fired,) = firings_logged(live_shop.prop)
    assert fired.signals["page"]["page.scroll_speed"] > 1000
    # and a deep reader (slow scrolls) would not have fired it
    slow = next(p for p in PERSONAS if p.name == "deep_reader")
    assert slow.scroll_speed[1] < 1000


def test_dashboard_rules__live_rule__firings_and_time_to_fire(live_shop, staff):
    import csv
    import io

    from django.test import Client

    from personalization.permissions import MARKETING

    rule(live_shop.prop, "fast", "layout", "condensed", FAST, cap_per_session=1)
    first, second = ask(live_shop), ask(live_shop)
    report(live_shop, first["live"][0], first["decision_id"])
    report(live_shop, second["live"][0], second["decision_id"])
    client = Client()
    client.force_login(staff(MARKETING, live_shop.prop))
    page = client.get("/dashboard/rules/")
    assert page.status_code == 200
    assert "Live rules: firings in the page, and time to fire" in page.content.decode()
    response = client.get("/dashboard/rules/?format=csv&chart=live-firings")
    assert response.status_code == 200, response.content[:300]
    (row,) = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert (row["rule"], row["applied"], row["refused"]) == ("fast", "1", "1")
    assert float(row["median_seconds_to_fire"]) >= 0


def test_decide__page_only_rule_fired_earlier_in_the_session__not_served_at_page_load(
    live_shop,
):
    # Given session stickiness, and an in-page-only rule that fired in the session's page
    live_shop.prop.session_stickiness = True
    live_shop.prop.save()
    rule(live_shop.prop, "popup-ready", "layout", "condensed", FAST, fires="page")
    first = ask(live_shop)
    assert report(live_shop, first["live"][0], first["decision_id"]).json() == {"applied": True}
    # When the next page of the session loads
    data = ask(live_shop)
    # Then the slot's page-load answer is not the in-page rule's (no sticky repeat of it):
    # the page gets it again only if its page part holds again
    assert data["slots"]["layout"]["variant"] == "default"
    assert [e["source"]["key"] for e in data.get("live", [])] == ["popup-ready"]
