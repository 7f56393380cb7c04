"""The page-side attributes (``page.*``): declared in the catalogue like every other name, so
the builder offers them and the admin checks them, but never assembled by the server."""

import json
import re

import pytest
from django.utils import timezone

from personalization.admin_targeting import ConditionField, builder_attributes
from personalization.attributes import CATALOGUE, attribute_problems, condition_problems
from personalization.engine import DecideRequest
from personalization.ruleset import ruleset_for
from personalization.selectors import visitor_signals_get

PAGE_NAMES = [
    "page.scroll_speed",
    "page.scroll_depth",
    "page.dwell_s",
    "page.idle_s",
    "page.exit_intent",
    "page.section_visible_s.<section>",
    "page.clicks",
    "page.rage_clicks",
    "page.activity_trend",
]


def test_page_provider__declarations__every_signal_typed_with_unit_and_measurement():
    # Given the catalogue's page provider
    provider = CATALOGUE.provider("page")
    by_name = {a.name: a for a in provider.attributes}
    # Then it is page-side and declares each signal the contract names, with how it is measured
    assert provider.page_side is True
    assert list(by_name) == PAGE_NAMES
    assert by_name["page.scroll_speed"].type == "number"
    assert by_name["page.scroll_speed"].unit == "px/s"
    assert by_name["page.scroll_depth"].unit == "percent 0..100"
    assert by_name["page.exit_intent"].type == "boolean"
    assert by_name["page.activity_trend"].unit == "-1..1"
    assert all(a.measurement.strip() and "\n" not in a.measurement for a in by_name.values())
    # And only the page provider is page-side
    assert CATALOGUE.page_side == ("page",)


@pytest.mark.parametrize(
    ("path", "declared"),
    [
        ("page.scroll_speed", "page.scroll_speed"),
        ("page.section_visible_s.reviews", "page.section_visible_s.<section>"),
        ("page.rage_clicks", "page.rage_clicks"),
    ],
)
def test_catalogue_lookup__page_path__its_declaration_and_page_side(path, declared):
    # When a page path is looked up
    attribute = CATALOGUE.lookup(path)
    # Then it is declared, and known to be page-side
    assert attribute is not None and attribute.name == declared
    assert CATALOGUE.is_page_side(path)
    assert not CATALOGUE.is_page_side("session.scroll_speed")
    assert not CATALOGUE.is_page_side("pages")


def test_condition_problems__live_rule_conditions__none():
    # Given conditions mixing server and page attributes, as live rules are written
    conditions = [
        {"page.scroll_speed": {"$gt": 2500}},
        {"session.page_views": {"$gte": 2}, "page.exit_intent": True},
        {"$or": [{"page.idle_s": {"$gte": 20}}, {"page.exit_intent": {"$eq": True}}]},
        {"page.section_visible_s.reviews": {"$gt": 10}, "page.activity_trend": {"$lt": -0.5}},
        {"page.scroll_depth": {"$gte": 75}, "page.rage_clicks": {"$gte": 1}},
    ]
    # When the admin checks them
    # Then nothing is wrong with any
    for condition in conditions:
        assert condition_problems(condition) == [], condition


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ({"page.scroll_speed": {"$gt": "fast"}}, "is a number (px/s), and $gt compares it with"),
        ({"page.exit_intent": {"$eq": "yes"}}, "is a boolean, and $eq compares"),
        ({"page.clicks": {"$size": 2}}, "$size reads a list, and `page.clicks` is a"),
        ({"page.dwell_s": "long"}, 'is a number (seconds), not string "long"'),
    ],
)
def test_attribute_problems__page_attribute_wrong_type__refused(condition, message):
    # When the admin checks a page clause with a value its type cannot match
    problems = attribute_problems(condition)
    # Then it is refused, naming the type and unit
    assert len(problems) == 1, problems
    assert message in problems[0]


def test_attribute_problems__page_typo__closest_page_name_suggested():
    # When a misspelt page name is checked
    problems = attribute_problems({"page.scrol_speed": {"$gt": 1}})
    # Then it is unknown, and the page name is suggested
    assert problems == [
        'Unknown attribute `page.scrol_speed` in clause 1 (condition["page.scrol_speed"]); '
        "did you mean `page.scroll_speed`?"
    ]


def test_admin_condition_field__page_attributes__accepted_and_typed():
    # Given the admin's condition field (rules, segments and experiments use it)
    field = ConditionField()
    # When a live rule's condition is saved, and one with a wrong type
    good = field.clean(json.dumps({"page.scroll_speed": {"$gt": 2500}}))
    # Then the first is accepted as it is, the second refused
    assert good == {"page.scroll_speed": {"$gt": 2500}}
    with pytest.raises(Exception, match=re.escape("is a boolean")):
        field.clean(json.dumps({"page.exit_intent": {"$gt": 1}}))


def test_builder_attributes__page_entries__unit_description_measurement_and_page_side():
    # When the builder's list is built
    entries = {e["name"]: e for e in builder_attributes()}
    # Then page attributes are offered with unit, meaning, measurement and the page-side mark
    speed = entries["page.scroll_speed"]
    assert speed["type"] == "number" and speed["unit"] == "px/s"
    assert speed["page_side"] is True
    assert "last 1,000 ms" in speed["measurement"]
    # And server-side entries keep their shape
    assert "page_side" not in entries["session.scroll_speed"]
    assert set(entries["session.scroll_speed"]) == {"name", "type", "unit", "description"}


def test_catalogue_assemble__decide__no_page_values(shop):
    # Given a decide request
    now = timezone.now()
    request = DecideRequest("v-1", "s-1", ["headline"], {"url": "https://shop.example/"})
    signals = visitor_signals_get(shop.prop, "v-1", "s-1", now)
    # When the server assembles the attributes its conditions read
    attributes = CATALOGUE.assemble(request, signals, ruleset_for(shop.prop.pk), shop.prop, now)
    # Then there is no page namespace: the server never has page signals
    assert "page" not in attributes
    assert len(CATALOGUE.provides) == len(CATALOGUE.providers) - 1
