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


def test_make_run_setup__embedded_defaults__migrate_demo_and_rollup_succeed(tmp_path):
    """`make run`'s own set-up on its embedded defaults (SQLite, the folder broker), in a
    subprocess as the Makefile runs it: a query only SQLite refuses fails here, not on a
    newcomer's first `make run` (the trending query once did: "malformed JSON")."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "DECIDE_REDIS_URL", "TASKS_IN_PROCESS")
    }
    env.update(
        DJANGO_DEBUG="1",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        CELERY_BROKER_URL="filesystem://",
        DEMO_ENABLED="1",
    )
    # The live-content queries read JSON inside events, where SQLite differs most: asked
    # directly, over events that hold the keys they read (the small demo may have none in
    # the window).
    live_queries = (
        "import uuid; from django.utils import timezone; from personalization import live; "
        "from personalization.models import Event, Property; "
        "p = Property.objects.first(); now = timezone.now(); "
        "[Event.objects.create(property=p, event_id=uuid.uuid4(), type='page_view', "
        "visitor_id=f'v-{i}', session_id='s', timestamp=now, received_at=now, "
        "properties={'item_id': 'sku-1'}) for i in range(3)]; "
        "print('trending', live.trending_items(p.pk, now, 5))"
    )
    steps = [
        ["migrate", "--noinput", "-v", "0"],
        ["load_demo", "--visitors", "120", "--days", "10"],
        ["dashboard_rollup"],
        ["shell", "-c", live_queries],
    ]
    outputs = []
    for step in steps:
        done = subprocess.run(
            [sys.executable, "manage.py", *step],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, (step, done.stdout[-2000:], done.stderr[-3000:])
        outputs.append(done.stdout)
    assert "Demo ready." in outputs[1]
    assert "rollup rows written" in outputs[2]
    assert "trending ['sku-1']" in outputs[3]
