"""What a marketer types in the admin: allowed origins one per line, an experiment's
variants as rows of weights and its namespace as three optional fields, a running
experiment's biasing changes only as a confirmed new phase, and what the rule form says
about caps with session stickiness. Everything goes through the Django test client, as
a signed-in marketing user."""

from datetime import timedelta
from html import unescape

import pytest
from django.test import Client
from django.utils import timezone

from consent.models import AuditEntry
from personalization.decisions import DecideRequest, decide
from personalization.models import Experiment, ExperimentGoal, Goal, History, Property, Slot
from personalization.permissions import ANALYSTS, MARKETING
from personalization.services.experiments import experiment_start
from tests.conftest import ALL_PURPOSES
from tests.targeting import slot

PROPERTY_ADD = "/admin/personalization/property/add/"
EXPERIMENT_ADD = "/admin/personalization/experiment/add/"


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page_text(response) -> str:
    return unescape(response.content.decode())


# --- allowed origins -------------------------------------------------------------------


def property_form(**overrides):
    data = {
        "name": "Corner shop",
        "slug": "corner-shop",
        "allowed_origins": "",
        "timezone": "Europe/Paris",
        "retention_days": 90,
    }
    data.update(overrides)
    return data


def test_property_admin__origins_one_per_line__saved_as_the_browser_sends_them(db, staff):
    # Given a marketer adding a property
    client = login(staff(MARKETING))
    # When they type the origins one per line, as they would copy them from a browser
    typed = "https://corner.example\n\n  http://localhost:8000  \nHTTPS://Shop.Example:443/\n"
    response = client.post(PROPERTY_ADD, property_form(allowed_origins=typed))
    # Then the property is created with each origin, normalised as browsers send Origin
    assert response.status_code == 302, page_text(response)[:2000]
    prop = Property.objects.get(slug="corner-shop")
    assert prop.allowed_origins == [
        "https://corner.example",
        "http://localhost:8000",
        "https://shop.example",
    ]
    assert prop.origin_allowed("https://shop.example")


def test_property_admin__bad_origin_lines__refused_naming_each_line(db, staff):
    # Given a marketer who pastes a good origin, a bare host, a page URL and a wildcard
    client = login(staff(MARKETING))
    typed = "https://ok.example\nshop.example\nhttps://shop.example/cart\nhttps://*.shop.example"
    # When they save
    response = client.post(PROPERTY_ADD, property_form(allowed_origins=typed))
    # Then the form is shown again with one error per bad line, naming the line
    assert response.status_code == 200
    text = page_text(response)
    assert "Line 2: “shop.example” is not an origin: it must start with https:// or http://" in text
    assert (
        "Line 3: “https://shop.example/cart” is not an origin: it has a path, query or "
        "fragment; keep only scheme://host[:port], e.g. https://shop.example" in text
    )
    assert "Line 4: “https://*.shop.example” is not an origin: wildcards are not supported" in text
    assert "Line 1:" not in text
    # and nothing is saved
    assert not Property.objects.filter(slug="corner-shop").exists()


def test_property_admin__change_form__origins_shown_one_per_line_and_kept(shop, staff):
    # Given a property with two allowed origins
    Property.objects.filter(pk=shop.prop.pk).update(
        allowed_origins=["https://shop.example", "https://m.shop.example"]
    )
    client = login(staff(MARKETING, shop.prop))
    url = f"/admin/personalization/property/{shop.prop.pk}/change/"
    # When the marketer opens it
    text = page_text(client.get(url))
    # Then the box lists one origin per line, not a JSON list
    assert "https://shop.example\nhttps://m.shop.example</textarea>" in text
    assert '["https://shop.example"' not in text
    # and saving the box as shown keeps them
    response = client.post(
        url,
        property_form(
            name=shop.prop.name,
            slug=shop.prop.slug,
            allowed_origins="https://shop.example\r\nhttps://m.shop.example",
            timezone=shop.prop.timezone,
            retention_days=shop.prop.retention_days,
        ),
    )
    assert response.status_code == 302, page_text(response)[:2000]
    shop.prop.refresh_from_db()
    assert shop.prop.allowed_origins == ["https://shop.example", "https://m.shop.example"]


# --- experiments: variants, weights, namespace --------------------------------------------


@pytest.fixture
def lab(shop):
    shop.prop.holdout_pct = 0
    shop.prop.max_adjustments_per_session = 0
    shop.prop.save()
    slot(shop.prop, "cta", {"b": {"label": "Buy now"}, "c": {"label": "Get it"}})
    slot(shop.prop, "headline", {"short": {"text": "Quick"}})
    shop.click = Goal.objects.create(
        property=shop.prop, key="cta-click", event_type="click", element_id="cta"
    )
    return shop


def experiment_form(lab, rows, **overrides):
    """The experiment form as the admin posts it; ``rows`` are (variant, weight) pairs."""
    data = {
        "property": lab.prop.pk,
        "key": "cta-test",
        "name": "",
        "slot": Slot.objects.get(property=lab.prop, key="cta").pk,
        "coverage": 1.0,
        "condition": "{}",
        "namespace_id": "",
        "namespace_start": "",
        "namespace_end": "",
        "hash_seed": "",
        "hash_version": 2,
        "priority": 1000,
        "confidence": 0.95,
        "method": "fixed",
        "correction": "holm",
        "min_users": 100,
        "planned_users": "",
        "winner": "",
        "goal_links-TOTAL_FORMS": 0,
        "goal_links-INITIAL_FORMS": 0,
        "history-TOTAL_FORMS": 0,
        "history-INITIAL_FORMS": 0,
    }
    for i, (variant, weight) in enumerate([*rows, ("", "")]):
        data[f"variants-{i}-variant"] = variant
        data[f"variants-{i}-weight"] = weight
    data.update(overrides)
    return data


def test_experiment_admin__add_form__variant_rows_and_empty_namespace(lab, staff):
    # When a marketer opens a new experiment
    text = page_text(login(staff(MARKETING, lab.prop)).get(EXPERIMENT_ADD))
    # Then the variants are rows choosing among the slots' variants, with a weight each
    assert 'name="variants-0-variant"' in text and 'name="variants-0-weight"' in text
    assert '<optgroup label="slot cta">' in text and '<option value="b">b</option>' in text
    # and the namespace is three empty optional fields: no JSON, no "null"
    for name in ("namespace_id", "namespace_start", "namespace_end"):
        assert f'name="{name}"' in text
    assert 'name="namespace"' not in text and 'name="variants"' not in text
    assert ">null</textarea>" not in text


def test_experiment_admin__variant_rows_in_percent__saved_as_weights(lab, staff):
    # Given a marketer filling the rows with percentages and leaving the namespace empty
    client = login(staff(MARKETING, lab.prop))
    rows = [("default", "50"), ("b", "30%"), ("c", "20")]
    # When they save
    response = client.post(EXPERIMENT_ADD, experiment_form(lab, rows))
    # Then the experiment holds the variants in order with shares adding up to 1
    assert response.status_code == 302, page_text(response)[:3000]
    exp = Experiment.objects.get(key="cta-test")
    assert exp.variants == [
        {"variant": "default", "weight": 0.5},
        {"variant": "b", "weight": 0.3},
        {"variant": "c", "weight": 0.2},
    ]
    assert exp.namespace is None
    # and the change form shows the rows again, the control first
    text = page_text(client.get(f"/admin/personalization/experiment/{exp.pk}/change/"))
    assert 'name="variants-0-weight" value="0.5"' in text
    assert 'name="variants-2-weight" value="0.2"' in text
    assert '<option value="c" selected>c</option>' in text


@pytest.mark.parametrize(
    ("rows", "field_values", "message"),
    [
        (
            [("default", "0.6"), ("b", "0.6")],
            {},
            "The weights must sum to 1, or 100% (they sum to 1.2, 120%).",
        ),
        (
            [("default", "50"), ("b", "40")],
            {},
            "The weights must sum to 1, or 100% (they sum to 0.9, 90%).",
        ),
        ([("default", "0.5"), ("b", "half")], {}, "Row 2: “half” is not a number"),
        ([("default", "0.5"), ("b", "-0.5")], {}, "Row 2: “-0.5” is not a weight (0 or more)."),
        ([("default", "150%"), ("b", "50%")], {}, "default: a percentage lies between 0 and 100."),
        ([("default", "0.5"), ("", "0.5")], {}, "Row 2: choose its variant."),
        ([("default", "0.5"), ("b", "")], {}, "Row 2: give b a weight."),
        ([("default", "1")], {}, "An experiment has a control and at least one treatment."),
        (
            [("default", "0.5"), ("short", "0.5")],
            {},
            "The slot has no variant short.",
        ),
        (
            [("default", "0.5"), ("b", "0.5")],
            {"namespace_start": "0", "namespace_end": "0.5"},
            "Name the namespace this range belongs to.",
        ),
        (
            [("default", "0.5"), ("b", "0.5")],
            {"namespace_id": "checkout", "namespace_start": "0"},
            "Give the range of 'checkout' the experiment takes",
        ),
        (
            [("default", "0.5"), ("b", "0.5")],
            {"namespace_id": "checkout", "namespace_start": "0.5", "namespace_end": "1.5"},
            "The namespace range must lie within [0, 1], start &lt; end.",
        ),
    ],
)
def test_experiment_admin__bad_rows_or_namespace__refused_with_clear_message(
    lab, staff, rows, field_values, message
):
    # Given a marketer's rows or namespace that cannot make an experiment
    client = login(staff(MARKETING, lab.prop))
    # When they save
    response = client.post(EXPERIMENT_ADD, experiment_form(lab, rows, **field_values))
    # Then the form comes back saying what is wrong, and nothing is saved
    assert response.status_code == 200
    assert unescape(message) in page_text(response)
    assert not Experiment.objects.exists()


def test_experiment_admin__namespace_fields__stored_as_a_range(lab, staff):
    # Given a marketer who puts the experiment in the first half of "checkout"
    client = login(staff(MARKETING, lab.prop))
    data = experiment_form(
        lab,
        [("default", "0.5"), ("b", "0.5")],
        namespace_id="checkout",
        namespace_start="0",
        namespace_end="0.5",
    )
    # When they save
    response = client.post(EXPERIMENT_ADD, data)
    # Then the namespace is stored as the engine reads it, and shown in its fields again
    assert response.status_code == 302, page_text(response)[:3000]
    exp = Experiment.objects.get(key="cta-test")
    assert exp.namespace == ["checkout", 0.0, 0.5]
    text = page_text(client.get(f"/admin/personalization/experiment/{exp.pk}/change/"))
    assert 'name="namespace_id" value="checkout"' in text
    assert 'name="namespace_end" value="0.5"' in text


# --- running experiments: a biasing change is a confirmed new phase --------------------


def running(lab, weights=(0.5, 0.5)):
    exp = Experiment.objects.create(
        property=lab.prop,
        key="cta-test",
        slot=Slot.objects.get(property=lab.prop, key="cta"),
        variants=[
            {"variant": "default", "weight": weights[0]},
            {"variant": "b", "weight": weights[1]},
        ],
        min_users=5,
    )
    ExperimentGoal.objects.create(experiment=exp, goal=lab.click, role="primary")
    return experiment_start(experiment=exp)


def change_url(exp) -> str:
    return f"/admin/personalization/experiment/{exp.pk}/change/"


def test_experiment_admin__running_reweighted_without_confirmation__refused_nothing_changed(
    lab, staff
):
    # Given a running 50/50 experiment
    exp = running(lab)
    client = login(staff(MARKETING, lab.prop))
    # When a marketer re-weights it to 70/30 without ticking the confirmation
    response = client.post(
        change_url(exp), experiment_form(lab, [("default", "0.7"), ("b", "0.3")])
    )
    # Then the save is refused with the reason and the way out
    assert response.status_code == 200
    text = page_text(response)
    assert (
        "cta-test is running (phase 1): changing its variants or weights would bias its "
        "results." in text
    )
    assert "tick “I understand this starts a new phase” and save" in text
    # and nothing changed: same weights, same phase, no new history
    exp.refresh_from_db()
    assert [v["weight"] for v in exp.variants] == [0.5, 0.5]
    assert (exp.phase, exp.phase_started_at) == (1, None)
    assert not History.objects.filter(experiment=exp, action="new_phase").exists()


def test_experiment_admin__running_other_fields_changed__saved_without_a_phase(lab, staff):
    # Given a running experiment
    exp = running(lab)
    client = login(staff(MARKETING, lab.prop))
    # When a marketer changes only its name and minimum sample (nothing that biases it)
    data = experiment_form(lab, [("default", "50%"), ("b", "50%")], name="CTA", min_users=50)
    response = client.post(change_url(exp), data)
    # Then it saves as usual, in the same phase
    assert response.status_code == 302, page_text(response)[:3000]
    exp.refresh_from_db()
    assert (exp.name, exp.min_users, exp.phase) == ("CTA", 50, 1)
    assert not History.objects.filter(experiment=exp, action="new_phase").exists()


def ask(lab, visitor, now=None):
    return decide(lab.prop, DecideRequest(visitor, "s-1", ["cta"]), now=now)


def test_experiment_admin__running_reweighted_with_confirmation__new_phase_counts_alone(
    lab, staff, consent
):
    # Given a running 50/50 experiment that 20 visitors were exposed to an hour ago
    exp = running(lab)
    before = [f"old-{n}" for n in range(20)]
    after = [f"new-{n}" for n in range(6)]
    for v in before + after:
        consent(lab.prop, v, ALL_PURPOSES)
    for v in before:
        ask(lab, v, now=timezone.now() - timedelta(hours=1))
    user = staff(MARKETING, lab.prop)
    client = login(user)
    # When a marketer re-weights it to 70/30 and confirms the new phase
    data = experiment_form(lab, [("default", "0.7"), ("b", "0.3")], confirm_new_phase="on")
    response = client.post(change_url(exp), data)
    # Then it is saved as phase 2, starting now
    assert response.status_code == 302, page_text(response)[:3000]
    exp.refresh_from_db()
    assert [v["weight"] for v in exp.variants] == [0.7, 0.3]
    assert exp.phase == 2 and exp.phase_started_at is not None
    assert timezone.now() - exp.phase_started_at < timedelta(minutes=1)
    # and its history records who did it, with the weights before and after
    entry = History.objects.get(experiment=exp, action="new_phase")
    assert entry.actor == user and entry.evidence["phase"] == 2
    assert entry.evidence["changes"] == {
        "variants": {
            "before": [{"variant": "default", "weight": 0.5}, {"variant": "b", "weight": 0.5}],
            "after": [{"variant": "default", "weight": 0.7}, {"variant": "b", "weight": 0.3}],
        }
    }
    assert AuditEntry.objects.filter(
        kind="configuration", property=lab.prop, action="experiment.new_phase"
    ).exists()
    # When 6 more visitors are exposed and the results are read
    for v in after:
        ask(lab, v)
    body = lab.client(lab.sk).get("/api/v1/experiments/cta-test/results").json()
    # Then only the current phase's exposures count
    assert body["phase"] == 2
    assert sum(v["users"] for v in body["goals"][0]["variants"]) == len(after)
    # and the page says which phase the results are of
    text = page_text(client.get(change_url(exp)))
    assert "Running: phase 2" in text


def test_experiment_admin__stopped_experiment_reweighted__saved_without_a_phase(lab, staff):
    # Given a stopped experiment
    from personalization.services.experiments import experiment_stop

    exp = experiment_stop(experiment=running(lab))
    # When its weights change
    response = login(staff(MARKETING, lab.prop)).post(
        change_url(exp), experiment_form(lab, [("default", "0.7"), ("b", "0.3")])
    )
    # Then nothing asks for a phase: nobody is being bucketed
    assert response.status_code == 302, page_text(response)[:3000]
    exp.refresh_from_db()
    assert [v["weight"] for v in exp.variants] == [0.7, 0.3] and exp.phase == 1


def test_experiment_admin__analyst_opens_running_experiment__read_only_page(lab, staff):
    # Given a running experiment in a namespace, and an analyst (who reads configuration)
    exp = running(lab)
    Experiment.objects.filter(pk=exp.pk).update(namespace=["checkout", 0, 0.5])
    # When the analyst opens it
    response = login(staff(ANALYSTS, lab.prop)).get(change_url(exp))
    # Then the page shows what is stored, with nothing to tick or choose
    assert response.status_code == 200
    text = page_text(response)
    assert "checkout" in text and "I understand this starts a new phase" not in text
    assert 'name="variants-0-variant"' not in text


# --- rules: what caps and cooldowns count ------------------------------------------------


def test_rule_admin__form__explains_caps_count_new_applications_not_sticky_repeats(shop, staff):
    # When a marketer opens the rule form
    text = page_text(login(staff(MARKETING, shop.prop)).get("/admin/personalization/rule/add/"))
    # Then the cooldown and cap fields say what they count
    assert "At most this many new applications per session." in text
    assert (
        "those sticky repeats of an adjustment already made this session are not new "
        "applications, so caps and cooldowns do not count them" in text
    )
    assert "Counts new applications only" in text
