"""Builders of small datasets with a known structure for the learning tests."""

import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from personalization import visitor_state
from personalization.models import (
    Adjustment,
    Decision,
    Event,
    PropensityModel,
    Property,
    Visitor,
)
from tests.factories import GoalFactory, SessionFactory, VisitorFactory
from tests.targeting import slot

# Three planted behaviours: (session seconds, scroll speed px/s, mobile, purchases, sessions)
PERSONAS: dict[str, tuple[float, float, bool, int, int]] = {
    "skimmer": (20.0, 2600.0, True, 0, 1),
    "reader": (900.0, 250.0, False, 0, 6),
    "buyer": (400.0, 800.0, False, 4, 12),
}


def visitor_with(prop: Property, vid: str, persona: str, rng: random.Random) -> Visitor:
    """A visitor whose stored state is the persona's, with a little noise."""
    duration, speed, mobile, purchases, sessions = PERSONAS[persona]
    now = timezone.now()
    v = visitor_state.visitor_new()
    v.update(
        sessions=sessions,
        bounced=0,
        session_starts=[now.timestamp() - 3600],
        purchases=purchases,
        cart_adds=purchases * 2,
        page_views=sessions * 3,
        clicks=sessions * 2,
        engagement_sum=sessions * (20.0 + duration / 30),
        device_type="mobile" if mobile else "desktop",
        last_event_ts=now.timestamp(),
    )
    s = visitor_state.session_new(now - timedelta(hours=1), {})
    noisy = duration * rng.uniform(0.85, 1.15)
    s.update(
        first_ts=now.timestamp() - 3600,
        last_ts=now.timestamp() - 3600 + noisy,
        page_views=3,
        speed_n=1,
        speed_sum=speed * rng.uniform(0.85, 1.15),
        scroll_n=1,
        scroll_sum=50.0,
        max_scroll_depth=50.0 if persona == "skimmer" else 90.0,
        clicks=2,
        device_type="mobile" if mobile else "desktop",
    )
    visitor = VisitorFactory(property=prop, visitor_id=vid, first_seen=now, state=v)
    SessionFactory(visitor=visitor, started_at=now - timedelta(hours=1), last_event_at=now, state=s)
    return visitor


def planted_visitors(prop: Property, consent: Any, per_persona: int = 25) -> dict[str, str]:
    """visitor id → persona, every visitor consenting to everything."""
    rng = random.Random(7)
    out = {}
    for persona in PERSONAS:
        for i in range(per_persona):
            vid = f"{persona}-{i}"
            consent(prop, vid)
            visitor_with(prop, vid, persona, rng)
            out[vid] = persona
    return out


def decision_signals(mobile: bool, engaged: float) -> dict[str, Any]:
    return {
        "session": {"duration_s": 60.0 * engaged, "device_type": "mobile" if mobile else "desktop"},
        "visitor": {"sessions": 1 + int(engaged), "engagement_score": 10.0 * engaged},
        "segments": [],
    }


def cta_model(prop: Property) -> PropensityModel:
    """A slot "cta" (default, b) and a model of "clicks the CTA within the hour"."""
    s = slot(prop, "cta", {"b": {"label": "Buy now"}})
    goal = GoalFactory(
        property=prop, key="cta-click", event_type="click", element_id="cta", window_hours=1
    )
    return PropensityModel.objects.create(
        property=prop, key="cta-click", slot=s, goal=goal, min_rows=50
    )


def log_answers(
    prop: Property,
    consent: Any,
    n: int,
    *,
    seed: int = 1,
    prefix: str = "p",
    click: Any = None,
    start: datetime | None = None,
) -> list[str]:
    """``n`` logged answers of the slot "cta" (half default, half b), each by its own
    consenting visitor, with a CTA click when ``click(mobile, variant, rng)`` says so.

    The planted effect (the default ``click``): mobile visitors shown b click (90%),
    everyone else rarely (10%)."""
    rng = random.Random(seed)
    click = click or (
        lambda mobile, variant, r: r.random() < (0.9 if mobile and variant == "b" else 0.1)
    )
    start = start or timezone.now() - timedelta(days=2)
    visitors = []
    for i in range(n):
        vid = f"{prefix}-{i}"
        consent(prop, vid)
        mobile = rng.random() < 0.5
        variant = "b" if i % 2 else "default"
        at = start + timedelta(seconds=30 * i)
        decision = Decision.objects.create(
            decision_id=uuid.uuid4(),
            property=prop,
            visitor_id=vid,
            session_id=f"s-{vid}",
            created_at=at,
            personalized=variant != "default",
            signals=decision_signals(mobile, rng.random() * 3),
        )
        Adjustment.objects.create(
            decision=decision,
            property=prop,
            visitor_id=vid,
            session_id=f"s-{vid}",
            created_at=at,
            slot_key="cta",
            variant_key=variant,
            source_kind="default" if variant == "default" else "rule",
            source_key="" if variant == "default" else "show-b",
            is_default=variant == "default",
        )
        if click(mobile, variant, rng):
            Event.objects.create(
                property=prop,
                event_id=uuid.uuid4(),
                type="click",
                visitor_id=vid,
                session_id=f"s-{vid}",
                timestamp=at + timedelta(minutes=2),
                received_at=at + timedelta(minutes=2),
                properties={"element_id": "cta"},
            )
        visitors.append(vid)
    return visitors
