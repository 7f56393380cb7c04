"""The admin's condition builder in a real browser: build, save, reload, see errors; the
attributes it offers are the catalogue's, with their units and meanings."""

import json

import pytest

from personalization.attributes import CATALOGUE
from personalization.models import Rule
from personalization.permissions import MARKETING
from tests.browser import admin_login
from tests.targeting import slot

EXPECTED = {
    "$and": [
        {"session.duration_s": {"$lt": 30}},
        {
            "$or": [
                {"visitor.bounce_rate": {"$gt": 0.5}},
                {"session.device_type": {"$eq": "mobile"}},
            ]
        },
        {"$nor": [{"session.utm_campaign": {"$eq": "winter"}}]},
    ]
}


def fill_clause(clause, path, op, value):
    clause.locator(".cb-path").fill(path)
    clause.locator(".cb-op").select_option(op)
    clause.locator(".cb-value").fill(value)


@pytest.mark.django_db(transaction=True)
def test_condition_builder__nested_groups__saved_reloaded_intact(
    page,
    live_server,
    make_shop,
    staff,
):
    # Given a marketer of a shop with a headline slot
    shop = make_shop()
    slot(shop.prop, "headline", {"short": {"text": "Quick"}})
    user = staff(MARKETING, shop.prop)
    admin_login(page, live_server, user.username, "pw-Long-enough-123")
    # When they build all( duration<30, any(bounce>0.5, device=mobile), none(utm=winter) )
    page.goto(f"{live_server.url}/admin/personalization/rule/add/")
    page.select_option("#id_property", str(shop.prop.pk))
    page.fill("#id_key", "fast-mobile")
    page.select_option("#id_slot", label="headline")
    page.select_option("#id_variant", label="headline:short")
    page.select_option("#id_status", "active")
    root = page.locator(".cb-tree > .cb-group")
    root.locator(":scope > .cb-group-head .cb-add-clause").click()
    fill_clause(root.locator(":scope > .cb-clause").nth(0), "session.duration_s", "$lt", "30")
    root.locator(":scope > .cb-group-head .cb-add-group").click()
    any_group = root.locator(":scope > .cb-group").nth(0)
    any_group.locator(":scope > .cb-group-head .cb-add-clause").click()
    any_group.locator(":scope > .cb-group-head .cb-add-clause").click()
    fill_clause(
        any_group.locator(":scope > .cb-clause").nth(0), "visitor.bounce_rate", "$gt", "0.5"
    )
    fill_clause(
        any_group.locator(":scope > .cb-clause").nth(1), "session.device_type", "$eq", "mobile"
    )
    root.locator(":scope > .cb-group-head .cb-add-group").click()
    none_group = root.locator(":scope > .cb-group").nth(1)
    none_group.locator(":scope > .cb-group-head .cb-group-op").select_option("$nor")
    none_group.locator(":scope > .cb-group-head .cb-add-clause").click()
    fill_clause(
        none_group.locator(":scope > .cb-clause").nth(0), "session.utm_campaign", "$eq", "winter"
    )
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist")
    # Then the rule is stored as the expected JSON
    rule = Rule.objects.get(key="fast-mobile")
    assert rule.condition == EXPECTED
    # And reloading shows the same tree in the builder
    page.reload()
    paths = page.locator(".cb-path").evaluate_all("els => els.map(e => e.value)")
    assert paths == [
        "session.duration_s",
        "visitor.bounce_rate",
        "session.device_type",
        "session.utm_campaign",
    ]
    ops = page.locator(".cb-group-op").evaluate_all("els => els.map(e => e.value)")
    assert ops == ["$and", "$or", "$nor"]
    assert json.loads(page.locator("#id_condition").input_value()) == EXPECTED
    assert page.console_errors == []
    # And the builder offers the attribute catalogue, each name with its unit and meaning
    offered = page.locator(".condition-builder datalist option").evaluate_all(
        "els => els.map(e => [e.value, e.label])"
    )
    assert [name for name, _ in offered] == [e["name"] for e in CATALOGUE.builder_entries()]
    assert dict(offered)["session.scroll_speed"] == (
        "number, px/s — Mean reported scroll speed, pixels per second."
    )
    assert dict(offered)["slot.<key>.ctr"].startswith("number, share 0..1 — ")
    # And each clause says what its attribute is, a pattern's too
    hints = page.locator(".cb-hint").evaluate_all("els => els.map(e => e.textContent)")
    assert hints[0] == "number, seconds — Seconds from the session's first to its last event."
    assert hints[1].startswith("number, share 0..1 — Share of the visitor's sessions")
    first = page.locator(".cb-clause").nth(0)
    first.locator(".cb-path").fill("slot.headline.ctr_low")
    assert first.locator(".cb-hint").inner_text().startswith("number, share 0..1 — Low end")
    first.locator(".cb-path").fill("session.duration_s")
    assert json.loads(page.locator("#id_condition").input_value()) == EXPECTED

    # When a clause is made invalid (a regex that does not compile) and saved
    clause = page.locator(".cb-clause").nth(3)
    clause.locator(".cb-op").select_option("$regex")
    clause.locator(".cb-value").fill("(unclosed")
    page.click("input[name=_continue]")
    # Then the form shows an error pointing at that clause, and nothing changed
    error = page.locator(".errorlist").first.inner_text()
    assert "session.utm_campaign" in error and "regex" in error.lower()
    rule.refresh_from_db()
    assert rule.condition == EXPECTED

    # When a clause's attribute is misspelt in the builder and saved
    page.locator(".cb-clause").nth(0).locator(".cb-path").fill("session.duration")
    page.click("input[name=_continue]")
    # Then the form refuses the unknown attribute, suggesting the catalogue's name
    errors = page.locator(".errorlist").first.inner_text()
    assert "Unknown attribute `session.duration` in clause 1" in errors
    assert "did you mean `session.duration_s`?" in errors
    rule.refresh_from_db()
    assert rule.condition == EXPECTED
