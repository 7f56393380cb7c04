"""The attribute catalogue: one declaration of every name a condition reads, which the engine,
the one condition walker, the builder, the admin's checks and the README all follow."""

import dataclasses
import html
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from personalization import engine, live
from personalization.admin_targeting import SegmentForm
from personalization.attributes import CATALOGUE, attribute_problems, condition_problems
from personalization.conditions import condition_clauses, condition_paths, namespace_keys
from personalization.engine import DecideRequest
from personalization.learning import scoring
from personalization.learning.scoring import CompiledModel
from personalization.models import Rule, Segment, Slot, Variant
from personalization.permissions import MARKETING
from personalization.ruleset import ruleset_for
from personalization.selectors import visitor_signals_get
from personalization.services.experiments import experiment_problems
from personalization.services.ingest import events_ingest
from tests.conftest import make_event
from tests.targeting import rule, slot

ROOT = Path(__file__).resolve().parent.parent

# Every condition the rest of the suite saves through the admin or the services (and the
# README's examples): each must stay acceptable.
KNOWN_GOOD = [
    {"session.duration_s": {"$lt": 30}},
    {"visitor.page_views": {"$gte": 2}},
    {"visitor.sessions": {"$gte": 2}, "visitor.bounce_rate": {"$lt": 0.5}},
    {"session.page_views": {"$gt": 3}, "session.device_type": "mobile"},
    {"session.scroll_speed": {"$gt": 1500}, "session.utm_campaign": {"$eq": "winter"}},
    {"visitor.items_viewed": {"$in": ["sku-1"]}, "visitor.engagement_score": {"$gt": 40}},
    {"model.cta-click.score": {"$gt": 0.7}},
    {"model.cta-click.variants.b": {"$gt": 0.5}, "model.m.best": "b"},
    {"slot.headline.ctr": {"$gt": 0.1}, "slot.headline.exposures": {"$gte": 200}},
    {"context.utm.campaign": "winter", "context.attributes.q": {"$regex": "a+"}},
    {"url": {"$regex": "/shop/"}, "id": {"$inGroup": "vips"}},
    {"plan": "free"},
    {"a": {"$exists": True}},
    {"company.size": {"$gt": 10}},
    {"segments": {"$in": ["deep-readers"]}, "segment.deep-readers": True},
    {"session.path.0": "/", "session.section_ms.reviews": {"$gt": 1000}},
    {"visitor.days_since_last_visit": {"$eq": None}},
    {"session.clicks": "3"},
    {"session.items_viewed": {"$size": 2}, "visitor.items_carted": {"$elemMatch": {"$eq": "x"}}},
    {"$and": [{"session.duration_s": {"$lt": 30}}, {"$or": [{"visitor.bounce_rate": 0.5}]}]},
    {},
]


def login(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def store(shop, consent):
    shop.prop.holdout_pct = 0
    shop.prop.save()
    slot(shop.prop, "headline", {"short": {"text": "Quick"}})
    consent(shop.prop, "v-1")
    return shop


def rule_form(shop, condition: Any) -> dict[str, Any]:
    headline = Slot.objects.get(property=shop.prop, key="headline")
    return {
        "property": shop.prop.pk,
        "key": "r1",
        "name": "",
        "slot": headline.pk,
        "variant": Variant.objects.get(slot=headline, key="short").pk,
        "condition": json.dumps(condition),
        "priority": 100,
        "status": "active",
        "cooldown_seconds": 0,
        "min_sample": 200,
        "versions-TOTAL_FORMS": 0,
        "versions-INITIAL_FORMS": 0,
    }


# --- the admin's checks -------------------------------------------------------------------


def test_rule_admin__unknown_attribute__refused_suggesting_the_closest_name(store, staff):
    # Given a marketer
    user = staff(MARKETING, store.prop)
    # When they save and activate a rule whose second clause misspells session.scroll_speed
    condition = {"$and": [{"session.clicks": {"$gt": 1}}, {"session.scrol_speed": {"$gt": 1500}}]}
    response = login(user).post("/admin/personalization/rule/add/", rule_form(store, condition))
    # Then the form is shown again with the clause, the unknown name and the closest one
    assert response.status_code == 200
    text = html.unescape(response.content.decode())
    assert (
        'Unknown attribute `session.scrol_speed` in clause 2 (condition["$and"][1]'
        '["session.scrol_speed"]); did you mean `session.scroll_speed`?'
    ) in text
    # And nothing was saved
    assert not Rule.objects.exists()


def test_rule_admin__string_compared_with_number_attribute__refused_naming_the_clause(store, staff):
    # Given a marketer
    user = staff(MARKETING, store.prop)
    # When they compare session.scroll_speed (a number) with the string "fast"
    condition = {"session.device_type": "mobile", "session.scroll_speed": {"$gt": "fast"}}
    response = login(user).post("/admin/personalization/rule/add/", rule_form(store, condition))
    # Then the form names the clause, the attribute's type and unit, and the value
    assert response.status_code == 200
    text = html.unescape(response.content.decode())
    assert (
        'Wrong value type in clause 2 (condition["session.scroll_speed"]): '
        '`session.scroll_speed` is a number (px/s), and $gt compares it with string "fast"'
    ) in text
    assert not Rule.objects.exists()


def test_rule_admin__catalogue_and_storefront_attributes__saved(store, staff):
    # Given a marketer
    user = staff(MARKETING, store.prop)
    # When they save a rule reading signals, a slot metric, context and a storefront attribute
    condition = {
        "$or": [
            {"session.scroll_speed": {"$gt": 1500}, "slot.headline.ctr": {"$lt": 0.02}},
            {"context.utm.campaign": "winter", "plan": {"$in": ["free", "trial"]}},
        ]
    }
    response = login(user).post("/admin/personalization/rule/add/", rule_form(store, condition))
    # Then it is saved as written
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Rule.objects.get(key="r1").condition == condition


def test_segment_form__unknown_attribute__refused_on_the_condition(store):
    # Given a segment condition reading a visitor signal that does not exist
    form = SegmentForm(
        data={
            "property": store.prop.pk,
            "key": "loyal",
            "name": "Loyal",
            "condition": json.dumps({"visitor.visits_7days": {"$gte": 3}}),
            "goal": "{}",
            "saved_visitors": "",
        }
    )
    # When the form is checked
    valid = form.is_valid()
    # Then the condition is refused, suggesting the catalogue's name
    assert not valid
    message = " ".join(form.errors["condition"])
    assert "Unknown attribute `visitor.visits_7days` in clause 1" in message
    assert "did you mean `visitor.visits_7d`?" in message
    assert not Segment.objects.exists()


def test_experiment_problems__unknown_attribute__condition_refused():
    # Given an experiment whose condition misspells a namespace
    # When its settings are checked (as the admin and experiment_start do)
    problems = experiment_problems(
        slot_id=None,
        variants=[{"variant": "a", "weight": 0.5}, {"variant": "b", "weight": 0.5}],
        coverage=1,
        namespace=None,
        condition={"sesion.duration_s": {"$lt": 30}},
        confidence=0.95,
    )
    # Then the condition is refused with the catalogue's name
    assert list(problems) == ["condition"]
    assert "did you mean `session.duration_s`?" in problems["condition"]


@pytest.mark.parametrize("condition", KNOWN_GOOD, ids=[json.dumps(c)[:60] for c in KNOWN_GOOD])
def test_condition_problems__conditions_in_use__none(condition):
    # Given a condition the suite or the README uses
    # When the admin checks it
    problems = condition_problems(condition)
    # Then nothing is wrong with it
    assert problems == []


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ({"session.clicks": {"$size": 2}}, "$size reads a list, and `session.clicks` is a"),
        ({"session.device_type": {"$eq": 3}}, "is a string, and $eq compares it with number 3"),
        ({"session.clicks": {"$in": [1, "two"]}}, '$in compares it with string "two"'),
        ({"session.is_bounce": {"$ne": "yes"}}, "is a boolean, and $ne compares"),
        ({"visitor.items_viewed": {"$gt": 3}}, "is an array (item ids), and $gt compares"),
        ({"session.clicks": {"$not": {"$gt": "x"}}}, '$gt compares it with string "x"'),
        ({"session.clicks": "many"}, 'is a number (count), not string "many"'),
        ({"slot.headline.ctr": {"$gt": "high"}}, "is a number (share 0..1)"),
    ],
)
def test_attribute_problems__wrong_value_type__names_clause_and_type(condition, message):
    # Given a clause whose value cannot match its attribute's type
    # When the admin checks it
    problems = attribute_problems(condition)
    # Then one problem names clause 1 and says what is wrong
    assert len(problems) == 1, problems
    assert "in clause 1 (condition[" in problems[0]
    assert message in problems[0]


@pytest.mark.parametrize(
    ("path", "suggested"),
    [
        ("slot.headline.ctrr", "slot.headline.ctr"),
        ("model.cta-click.scor", "model.cta-click.score"),
        ("visitr.visits_7d", "visitor.visits_7d"),
        ("context.utm.campain", "context.utm.campaign"),
    ],
)
def test_attribute_problems__typo__closest_name_suggested(path, suggested):
    # Given a clause reading a misspelt name (in a pattern, or of a namespace)
    # When the admin checks it
    problems = attribute_problems({path: 1})
    # Then the closest name, with the clause's own keys filled in, is suggested
    assert problems == [
        f'Unknown attribute `{path}` in clause 1 (condition["{path}"]); did you mean `{suggested}`?'
    ]


def test_attribute_problems__nothing_close__points_at_the_builder_list():
    # Given a clause under a namespace with a name like none of the catalogue's
    # When the admin checks it
    problems = attribute_problems({"session.zzzzzzzzzzzzzzzzzzzzz": 1})
    # Then it is refused without a guess
    assert problems == [
        'Unknown attribute `session.zzzzzzzzzzzzzzzzzzzzz` in clause 1 (condition["session.'
        'zzzzzzzzzzzzzzzzzzzzz"]); the builder lists the attributes a condition can read.'
    ]


# --- the catalogue itself -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "declared"),
    [
        ("session.scroll_speed", "session.scroll_speed"),
        ("slot.headline.ctr_low", "slot.<key>.ctr_low"),
        ("model.m.variants.b", "model.<key>.variants.<variant>"),
        ("segment.deep-readers", "segment.<key>"),
        ("context.attributes.company.size", "context.attributes.<path>"),
        ("session.section_ms.reviews", "session.section_ms.<section>"),
        ("plan", "<attribute>"),
        ("company.size", "<attribute>"),
    ],
)
def test_catalogue_lookup__declared_or_storefront_path__its_declaration(path, declared):
    # Given a path a condition reads
    # When the catalogue looks it up
    attribute = CATALOGUE.lookup(path)
    # Then it finds the declaration it stands for
    assert attribute is not None and attribute.name == declared


@pytest.mark.parametrize("path", ["session.scrol_speed", "visitor", "slot.headline", "sesion.os"])
def test_catalogue_lookup__undeclared_path_in_a_namespace__none(path):
    # Given a path under a namespace (or a near-miss of one) that the catalogue lacks
    # When it is looked up
    # Then there is no declaration
    assert CATALOGUE.lookup(path) is None


def test_catalogue_lookup__index_into_a_list_attribute__an_element():
    # Given an index into a list signal, and into a number one
    # When they are looked up
    element = CATALOGUE.lookup("session.path.0")
    # Then the list's element is known, the number's is not
    assert element is not None and element.type == "any"
    assert CATALOGUE.lookup("session.clicks.0") is None


def test_catalogue__every_declaration__typed_with_a_description():
    # Given the catalogue's providers
    attributes = CATALOGUE.attributes()
    # Then each namespace is one provider and each name is declared once, typed and described
    assert [p.namespace for p in CATALOGUE.providers] == [
        "",
        "context",
        "session",
        "visitor",
        "model",
        "segment",
        "slot",
        "page",
    ]
    names = [a.name for a in attributes]
    assert len(names) == len(set(names))
    assert all(
        a.type in ("number", "string", "boolean", "array", "object", "any") for a in attributes
    )
    assert all(a.description.strip() and "\n" not in a.description for a in attributes)
    numbers = [a for a in attributes if a.type == "number" and a.name != "model.<key>.version"]
    assert all(a.unit for a in numbers), [a.name for a in numbers if not a.unit]


def test_context_provider__context_fields__every_field_the_api_accepts():
    # Given the context fields the decide request's schema accepts
    from personalization.event_schemas import CONTEXT_PROPERTIES

    accepted = {f"context.{name}" for name in CONTEXT_PROPERTIES if name != "utm"} | {
        f"context.utm.{name}" for name in CONTEXT_PROPERTIES["utm"]["properties"]
    }
    # When the context provider's fixed names are listed
    declared = {a.name for a in CATALOGUE.provider("context").attributes}
    # Then every field is declared
    assert accepted <= declared, sorted(accepted - declared)


def test_readme_table__lists_exactly_the_catalogue():
    # Given the README's attribute table
    readme = (ROOT / "README.md").read_text()
    rows = [line for line in readme.splitlines() if re.match(r"\| `[^`]+` \| (\w+) \|", line)]
    documented = [
        line
        for line in rows
        if line.split("|")[2].strip() in ("number", "string", "boolean", "array", "object", "any")
    ]
    # When it is compared with the catalogue's own rendering
    expected = CATALOGUE.readme_table()
    # Then the table is there as rendered, and lists every name and no other
    assert expected in readme
    names = [re.match(r"\| `([^`]+)`", line).group(1) for line in documented]  # type: ignore[union-attr]
    assert names == [a.name for a in CATALOGUE.attributes()]


# --- the one walker ---------------------------------------------------------------------------


def test_condition_clauses__nested_logic__every_path_in_document_order():
    # Given a condition nesting $and, $or, $nor and $not, with an $elemMatch
    condition = {
        "plan": "pro",
        "$and": [
            {"$or": [{"model.churn.score": {"$gt": 0.5}}, {"$nor": [{"slot.cta.ctr": 0}]}]},
            {"$not": {"$and": [{"session.clicks": {"$not": {"$lt": 2}}}]}},
        ],
        "visitor.items_viewed": {"$elemMatch": {"sku": "x", "model.fake.score": 1}},
    }
    # When its clauses are walked
    clauses = condition_clauses(condition)
    # Then each attribute clause comes once, numbered, with where it stands
    assert [(c.number, c.path) for c in clauses] == [
        (1, "plan"),
        (2, "model.churn.score"),
        (3, "slot.cta.ctr"),
        (4, "session.clicks"),
        (5, "visitor.items_viewed"),
    ]
    assert clauses[2].location == ("$and", 0, "$or", 1, "$nor", 0, "slot.cta.ctr")
    assert clauses[3].argument == {"$not": {"$lt": 2}}
    # And the fields of the $elemMatch object are the element's, not attributes
    assert "sku" not in set(condition_paths(condition))
    assert namespace_keys(condition, "model") == {"churn"}


def test_namespace_keys__models_and_metric_slots_at_any_depth__found():
    # Given a condition reading two models and two slots' metrics deep in its logic
    condition = {
        "$or": [
            {"$and": [{"model.a.score": {"$gt": 0.1}}, {"slot.headline.ctr": {"$gt": 0}}]},
            {"$not": {"$nor": [{"model.b.variants.x": 1}, {"slot.cta.exposures": 9}]}},
        ]
    }
    # When the walker collects them (as the rule set and the scorer do)
    # Then both models and both slots are found, and nothing else
    assert namespace_keys(condition, "model") == scoring.referenced(condition) == {"a", "b"}
    assert namespace_keys(condition, "slot") == {"headline", "cta"}
    assert namespace_keys({"models.a": 1, "slot.": 2}, "model") == set()


def test_ruleset__rule_reading_slot_metrics_deep__metric_slots_compiled(store):
    # Given an active rule reading a slot's click-through inside $or/$not
    rule(
        store.prop,
        "r",
        "headline",
        "short",
        {"$or": [{"$not": {"slot.headline.ctr": {"$gt": 0.5}}}, {"plan": "x"}]},
    )
    # When the property's rules are compiled
    compiled = ruleset_for(store.prop.pk)
    # Then the rule, and the rule set, know which slot's metrics to load
    assert compiled.rules_by_slot["headline"][0].metric_slots == ("headline",)
    assert compiled.metric_slots == {"headline"}


# --- the engine's assembly --------------------------------------------------------------------


def _attributes_before(request, signals, ruleset, prop, now):
    """The engine's ``_attributes`` before the catalogue, verbatim: the reference."""
    context = request.context
    attributes: dict[str, Any] = dict(context.get("attributes") or {})
    attributes.update(
        {
            "id": request.visitor_id,
            "url": context.get("url", ""),
            "context": context,
            "session": signals["session"],
            "visitor": signals["visitor"],
        }
    )
    if ruleset.models:
        attributes["model"] = scoring.scores(ruleset.models, attributes)
    members = [key for key, cond in ruleset.segments if cond(attributes, ruleset.saved_groups)]
    attributes["segments"] = members
    attributes["segment"] = dict.fromkeys(members, True)
    metric_slots = ruleset.metric_slots
    if metric_slots:
        attributes["slot"] = live.slot_metrics(prop.pk, metric_slots, now)
    return attributes


def test_engine_attributes__known_visitor__equal_the_assembly_before_the_catalogue(
    store, monkeypatch
):
    # Given a visitor with two page views, segments (one reading a model score), a rule on
    # slot metrics, a model, and a request whose storefront attributes include "id"
    now = timezone.now()
    events_ingest(
        prop=store.prop,
        events=[
            make_event(at=now - timedelta(seconds=30), context={"url": "https://shop.example/a"}),
            make_event(at=now - timedelta(seconds=20)),
            make_event("click", at=now - timedelta(seconds=10), properties={"element_id": "x"}),
        ],
    )
    Segment.objects.create(
        property=store.prop, key="browsers", condition={"session.page_views": {"$gte": 2}}
    )
    Segment.objects.create(
        property=store.prop, key="likely", condition={"model.m.score": {"$gt": 0.5}}
    )
    Segment.objects.create(property=store.prop, key="never", condition={"plan": "gold"})
    rule(store.prop, "r", "headline", "short", {"slot.headline.ctr": {"$lt": 0.5}})
    ruleset = dataclasses.replace(
        ruleset_for(store.prop.pk),
        models={"m": CompiledModel("m", 1, 1, "d", ("default", "short"), "default")},
    )
    seen: list[list[str]] = []

    def scores(models, attributes):
        seen.append(list(attributes))
        return {"m": {"score": 0.8, "variants": {"default": 0.8}, "best": "default", "version": 1}}

    monkeypatch.setattr(scoring, "scores", scores)
    request = DecideRequest(
        "v-1",
        "s-1",
        ["headline"],
        {"url": "https://shop.example/a", "attributes": {"plan": "free", "id": "spoof"}},
    )
    signals = visitor_signals_get(store.prop, "v-1", "s-1", now)
    # When the engine assembles the attributes, and the assembly before the catalogue does
    got = engine._attributes(request, signals, ruleset, store.prop, now)
    expected = _attributes_before(request, signals, ruleset, store.prop, now)
    # Then they are equal, key order included, and the model saw the same attributes
    assert got == expected
    assert (
        list(got)
        == list(expected)
        == [
            "plan",
            "id",
            "url",
            "context",
            "session",
            "visitor",
            "model",
            "segments",
            "segment",
            "slot",
        ]
    )
    assert got["id"] == "v-1" and got["segments"] == ["browsers", "likely"]
    assert got["slot"]["headline"]["exposures"] == 0
    assert seen[0] == seen[1] == ["plan", "id", "url", "context", "session", "visitor"]


# --- the builder ------------------------------------------------------------------------------


def test_rule_admin_builder__offers_catalogue_with_unit_and_description(store, staff):
    # Given a marketer
    user = staff(MARKETING, store.prop)
    # When they open the rule form
    response = login(user).get("/admin/personalization/rule/add/")
    # Then the builder's list is the catalogue's, each name with type, unit and meaning
    assert response.status_code == 200
    found = re.search(
        r'<script id="condition-attributes" type="application/json">(.*?)</script>',
        response.content.decode(),
        re.S,
    )
    assert found is not None
    offered = json.loads(found.group(1))
    assert offered == CATALOGUE.builder_entries()
    by_name = {e["name"]: e for e in offered}
    assert by_name["session.scroll_speed"] == {
        "name": "session.scroll_speed",
        "type": "number",
        "unit": "px/s",
        "description": "Mean reported scroll speed, pixels per second.",
    }
    assert {"slot.<key>.ctr", "model.<key>.score", "segment.<key>", "context.utm.campaign"} <= set(
        by_name
    )
