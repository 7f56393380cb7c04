"""create_property, simulate_traffic and load_demo, as a newcomer runs them."""

import io
import re
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from personalization.models import ApiKey, Event, Property, QuarantinedEvent, Rule, RuleFires
from personalization.services.keys import api_key_authenticate


def run(*args, **kwargs) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, **kwargs)
    return out.getvalue()


def test_create_property__prints_working_keys(db):
    out = run("create_property", "--name", "Corner shop", "--origin", "https://corner.example")
    prop = Property.objects.get(name="Corner shop")
    assert prop.allowed_origins == ["https://corner.example"]
    pk = re.search(r"publishable: (pk_\S+)", out).group(1)
    sk = re.search(r"secret:\s+(sk_\S+)", out).group(1)
    assert api_key_authenticate(pk).property == prop and api_key_authenticate(sk).is_secret
    assert ApiKey.objects.filter(property=prop).count() == 2


def test_create_property__bad_origin__refused(db):
    with pytest.raises(CommandError, match="not an origin"):
        run("create_property", "--name", "X", "--origin", "corner.example")


def test_simulate_traffic__spreads_visits_and_meets_every_fate(shop):
    out = run(
        "simulate_traffic",
        "--property",
        shop.prop.slug,
        "--visitors",
        "60",
        "--days",
        "20",
        "--seed",
        "3",
    )
    accepted, quarantined, dropped = (
        int(re.search(rf"(\d+) {w}", out).group(1)) for w in ("stored", "quarantined", "dropped")
    )
    assert Event.objects.count() == accepted > 500
    assert QuarantinedEvent.objects.count() == quarantined
    assert dropped > 0
    oldest = Event.objects.order_by("timestamp").first().timestamp
    assert oldest < timezone.now() - timedelta(days=5)
    types = set(Event.objects.values_list("type", flat=True))
    assert {"page_view", "scroll", "click", "section_view", "session_end"} <= types


def test_simulate_traffic__unknown_property__clear_error(db):
    with pytest.raises(CommandError, match="No property"):
        run("simulate_traffic", "--property", "nope")


def test_load_demo__creates_staff_property_and_traffic(db):
    out = run("load_demo", "--visitors", "40", "--days", "5")
    assert "Admin login: admin / " in out
    prop = Property.objects.get(slug="demo-shop")
    assert Event.objects.filter(property=prop).exists()
    # the storefront asked for decisions, got adjustments, and clicks answer them
    from personalization.models import Adjustment, Decision

    assert Decision.objects.filter(property=prop).exists()
    assert Adjustment.objects.filter(property=prop, is_default=False).exists()
    assert Event.objects.filter(property=prop, type="click", decision_id__isnull=False).exists()
    # and its live rules act out the product's examples in the open page
    live = Rule.objects.filter(property=prop, fires=RuleFires.PAGE)
    assert {r.key: r.condition for r in live} == {
        "fast-scrollers-condensed": {"page.scroll_speed": {"$gt": 2500}},
        "newsletter-when-ready": {
            "$or": [{"page.exit_intent": True}, {"page.idle_s": {"$gte": 8}}]
        },
        "fading-activity-trending": {
            "visitor.items_viewed": {"$size": {"$gt": 0}},
            "page.activity_trend": {"$lt": -0.3},
        },
    }
    again = run("load_demo", "--visitors", "20", "--days", "5")
    assert "Demo property existed" in again
    # (run again, nothing is added twice)
    assert Rule.objects.filter(property=prop, key="fast-scrollers-condensed").count() == 1
