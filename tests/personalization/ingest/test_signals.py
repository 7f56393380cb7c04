"""Live signals after a known event sequence, as targeting conditions will read them."""

from datetime import timedelta

import pytest
from django.utils import timezone

from personalization.attributes import CATALOGUE
from personalization.models import Session
from personalization.selectors import visitor_signals_get
from personalization.services.ingest import events_ingest
from personalization.visitor_state import engagement_score, parse_user_agent
from tests.conftest import make_event

# The catalogue's fixed session and visitor names: the signals documented.
SIGNALS = {
    a.name
    for namespace in ("session", "visitor")
    for a in CATALOGUE.provider(namespace).attributes
    if not a.is_pattern
}

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


@pytest.fixture
def known_visit(shop, consent):
    """A bounced visit ten days ago, then a shopping visit an hour ago."""
    consent(shop.prop, "v-1")
    now = timezone.now()
    t1 = now - timedelta(days=10)
    t2 = now - timedelta(hours=1)

    def ev(type, seconds, props=None, session="s-2", **context):
        return make_event(
            type,
            session_id=session,
            at=t2 + timedelta(seconds=seconds),
            properties=props or {},
            **({"context": context} if context else {}),
        )

    first = make_event(
        "page_view", session_id="s-1", at=t1, context={"url": "https://shop.example/"}
    )
    second = [
        ev(
            "page_view",
            0,
            {"item_id": "sku-1"},
            url="https://shop.example/shop/shoes",
            user_agent=IPHONE,
            referrer="https://www.google.com/",
            utm={"source": "news", "medium": "email", "campaign": "winter"},
        ),
        ev("scroll", 10, {"depth_pct": 50, "speed_px_s": 1000}),
        ev("scroll", 20, {"depth_pct": 100, "speed_px_s": 3000}),
        ev("section_view", 30, {"section": "reviews", "visible_ms": 4000}),
        ev("section_view", 40, {"section": "reviews", "visible_ms": 1000}),
        ev("click", 50, {"element_id": "cta"}),
        ev("hover", 55, {"element_id": "cta", "dwell_ms": 800}),
        ev("page_view", 60, {}, url="https://shop.example/cart"),
        ev("add_to_cart", 70, {"item_id": "sku-1", "price": 49}),
        ev("form_interaction", 80, {"form_id": "checkout", "action": "start"}),
        ev("form_interaction", 90, {"form_id": "checkout", "action": "submit"}),
        ev("purchase", 100, {"revenue": 49.5, "currency": "EUR"}),
    ]
    # Sent out of order and in two batches, as a real tracker may.
    assert events_ingest(prop=shop.prop, events=[first]).accepted == 1
    assert events_ingest(prop=shop.prop, events=second[6:] + second[:6]).accepted == 12
    return shop


def test_signals__known_sequence__session_values(known_visit):
    s = visitor_signals_get(known_visit.prop, "v-1", "s-2")["session"]
    expected = {
        "duration_s": 100.0,
        "page_views": 2,
        "is_bounce": False,
        "section_ms": {"reviews": 5000},
        "max_scroll_depth": 100.0,
        "avg_scroll_depth": 75.0,
        "scroll_speed": 2000.0,
        "clicks": 1,
        "hovers": 1,
        "form_starts": 1,
        "form_submits": 1,
        "form_abandons": 0,
        "device_type": "mobile",
        "os": "iOS",
        "browser": "Mobile Safari",
        "referrer_source": "google.com",
        "referrer_kind": "search",
        "utm_source": "news",
        "utm_medium": "email",
        "utm_campaign": "winter",
        "path": ["/shop/shoes", "/cart"],
        "activity_trend": round((7 - 5) / 12, 3),
        "items_viewed": ["sku-1"],
        "cart_adds": 1,
        "purchases": 1,
        "revenue": 49.5,
        "engagement_score": 100.0,
    }
    assert s == expected


def test_signals__known_sequence__visitor_values(known_visit):
    v = visitor_signals_get(known_visit.prop, "v-1", "s-2")["visitor"]
    assert v == {
        "sessions": 2,
        "bounce_rate": 0.5,
        "visits_7d": 1,
        "visits_30d": 2,
        "days_since_last_visit": round((10 * 86400 - 3600) / 86400, 3),
        "page_views": 3,
        "clicks": 1,
        "items_viewed": ["sku-1"],
        "items_carted": ["sku-1"],
        "cart_adds": 1,
        "purchases": 1,
        "revenue": 49.5,
        # the bounced session scores 5 (one page view), the shopping one saturates at 100
        "engagement_score": 52.5,
        "device_type": "mobile",
    }


def test_signals__every_documented_name__present(known_visit):
    values = visitor_signals_get(known_visit.prop, "v-1", "s-2")
    names = {f"{scope}.{name}" for scope, group in values.items() for name in group}
    assert names == SIGNALS


def test_signals__gap_over_30_minutes__opens_new_session(shop, consent):
    consent(shop.prop, "v-1")
    t = timezone.now() - timedelta(hours=2)
    events_ingest(
        prop=shop.prop, events=[make_event(at=t), make_event(at=t + timedelta(minutes=29))]
    )
    assert Session.objects.count() == 1
    events_ingest(prop=shop.prop, events=[make_event(at=t + timedelta(minutes=60))])
    assert Session.objects.count() == 2
    v = visitor_signals_get(shop.prop, "v-1", "s-1")["visitor"]
    assert v["sessions"] == 2 and v["bounce_rate"] == 0.5


def test_signals__event_after_session_end__opens_new_session(shop, consent):
    consent(shop.prop, "v-1")
    t = timezone.now() - timedelta(minutes=10)
    events_ingest(
        prop=shop.prop,
        events=[make_event(at=t), make_event("session_end", at=t + timedelta(seconds=5))],
    )
    events_ingest(prop=shop.prop, events=[make_event(at=t + timedelta(seconds=30))])
    sessions = list(Session.objects.order_by("started_at"))
    assert len(sessions) == 2 and sessions[0].ended_at is not None and sessions[1].ended_at is None


def test_signals__duplicate_events__not_counted_twice(shop, consent):
    consent(shop.prop, "v-1")
    event = make_event()
    events_ingest(prop=shop.prop, events=[event])
    events_ingest(prop=shop.prop, events=[event])
    assert visitor_signals_get(shop.prop, "v-1")["session"]["page_views"] == 1


def test_signals__unknown_visitor__neutral_values(shop):
    values = visitor_signals_get(shop.prop, "nobody")
    assert values["session"] == {} and values["visitor"]["sessions"] == 0


@pytest.mark.parametrize(
    ("ua", "expected"),
    [
        (IPHONE, "mobile"),
        ("Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15", "tablet"),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
            "Chrome/131.0 Safari/537.36",
            "desktop",
        ),
        ("Googlebot/2.1 (+http://www.google.com/bot.html)", "bot"),
        ("", "unknown"),
    ],
)
def test_parse_user_agent__known_strings__device_type(ua, expected):
    assert parse_user_agent(ua)[0] == expected


def test_engagement_score__one_page_view__five():
    assert engagement_score({"page_views": 1}) == 5.0
