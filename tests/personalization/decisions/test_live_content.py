"""Live content (trending, recently viewed, popular in segment) and live slot metrics."""

from datetime import timedelta

import pytest
from django.utils import timezone

from personalization.decisions import DecideRequest, decide
from personalization.hotstate import decision_log_flush
from personalization.live import wilson_interval
from personalization.models import Adjustment, Decision, Segment, Slot, Variant
from personalization.services.ingest import events_ingest
from tests.conftest import make_event
from tests.targeting import rule, slot


@pytest.fixture
def shop_reco(shop, consent):
    shop.prop.holdout_pct = 0
    shop.prop.save()
    reco = slot(shop.prop, "recommendations")
    for key, strategy in (
        ("trend", "trending"),
        ("mine", "recently_viewed"),
        ("seg", "popular_in_segment"),
    ):
        Variant.objects.create(
            slot=reco, key=key, content={"title": key}, strategy=strategy, strategy_limit=3
        )
    for v in ("v-1", "v-2", "v-3"):
        consent(shop.prop, v)
    return shop


def views(visitor, items, at=None):
    at = at or timezone.now() - timedelta(minutes=10)
    return [
        make_event(
            visitor_id=visitor,
            session_id=f"s-{visitor}",
            at=at + timedelta(seconds=n),
            properties={"item_id": item},
        )
        for n, item in enumerate(items)
    ]


def ask(shop, visitor="v-1", slots=("recommendations",)):
    return decide(shop.prop, DecideRequest(visitor, f"s-{visitor}", list(slots)))


def test_trending__most_viewed_last_hour__in_order(shop_reco, consent):
    # Given items viewed in the last hour by 5 (c), 4 (b) and 3 (a) distinct visitors, and
    # one viewed by 5 visitors three hours ago (d)
    for v in ("v-4", "v-5"):
        consent(shop_reco.prop, v)
    visitors = ["v-1", "v-2", "v-3", "v-4", "v-5"]
    events = []
    for item, count in (("a", 3), ("b", 4), ("c", 5)):
        for visitor in visitors[:count]:
            events += views(visitor, [item])
    for visitor in visitors:
        events += views(visitor, ["d"], at=timezone.now() - timedelta(hours=3))
    events_ingest(prop=shop_reco.prop, events=events)
    rule(shop_reco.prop, "t", "recommendations", "trend")
    # When a visitor is served trending items  Then the last hour's, most visitors first
    content = ask(shop_reco).answers["recommendations"].content
    assert content == {"title": "trend", "strategy": "trending", "items": ["c", "b", "a"]}


def test_recently_viewed__the_visitors_own_items__newest_first(shop_reco):
    events_ingest(prop=shop_reco.prop, events=views("v-1", ["x", "y", "z", "w"]))
    rule(shop_reco.prop, "r", "recommendations", "mine")
    assert ask(shop_reco).answers["recommendations"].content["items"] == ["w", "z", "y"]


def test_popular_in_segment__items_of_segment_peers(shop_reco):
    Segment.objects.create(
        property=shop_reco.prop, key="heavy", condition={"visitor.page_views": {"$gte": 3}}
    )
    events_ingest(
        prop=shop_reco.prop,
        events=views("v-2", ["p", "p", "q"]) + views("v-3", ["r"]) + views("v-1", ["q", "s", "t"]),
    )
    rule(shop_reco.prop, "s", "recommendations", "seg", {"segments": {"$in": ["heavy"]}})
    items = ask(shop_reco).answers["recommendations"].content["items"]
    # peers in "heavy": v-1 and v-2 (v-3 viewed one item): their items, most viewed first
    assert items[0] == "q" and "r" not in items


def test_slot_metric_rule__fires_only_after_min_sample(shop_reco):
    # Given a rule that refreshes the headline when its click-through is below 10%
    slot(shop_reco.prop, "headline", {"fresh": {"text": "New"}})
    rule(
        shop_reco.prop,
        "refresh",
        "headline",
        "fresh",
        {"slot.headline.ctr": {"$lt": 0.1}},
        min_sample=5,
    )
    # When the slot has only 3 exposures in the last hour, the rule waits
    for n in range(3):
        ask(shop_reco, visitor="v-2", slots=["headline"])
    assert ask(shop_reco, slots=["headline"]).answers["headline"].is_default
    # When it reaches the sample with no clicks, the rule applies
    from django.core.cache import cache

    for n in range(3):
        ask(shop_reco, visitor="v-3", slots=["headline"])
    decision_log_flush()  # metrics read the log in the database (flushed every few seconds)
    cache.delete(f"live:slot:{shop_reco.prop.pk}:headline")  # the metric is cached for a minute
    assert ask(shop_reco, slots=["headline"]).answers["headline"].variant == "fresh"


def test_slot_metric_rule__interval_must_lie_past_threshold(shop_reco):
    slot(shop_reco.prop, "headline", {"fresh": {"text": "New"}})
    rule(
        shop_reco.prop,
        "refresh",
        "headline",
        "fresh",
        {"slot.headline.ctr": {"$lt": 0.3}},
        min_sample=5,
        require_interval=True,
    )
    # 6 exposures, 1 click: ctr 0.17 < 0.3 but the interval reaches far above 0.3
    decisions = [ask(shop_reco, visitor="v-2", slots=["headline"]) for _ in range(6)]
    events_ingest(
        prop=shop_reco.prop,
        events=[
            make_event(
                "click",
                visitor_id="v-2",
                session_id="s-v-2",
                properties={"element_id": "headline"},
                decision_id=str(decisions[0].decision_id),
            )
        ],
    )
    from django.core.cache import cache

    decision_log_flush()
    cache.delete(f"live:slot:{shop_reco.prop.pk}:headline")
    assert ask(shop_reco, slots=["headline"]).answers["headline"].is_default
    low, high = wilson_interval(1, 7)
    assert low < 0.3 < high


def test_wilson_interval__known_values():
    low, high = wilson_interval(10, 100)
    assert (round(low, 4), round(high, 4)) == (0.0552, 0.1744)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_decision_log__defaults_of_unconsented_visitor_logged(shop_reco, consent):
    consent(shop_reco.prop, "v-9", {"analytics": True, "personalization": False})
    rule(shop_reco.prop, "r", "recommendations", "mine")
    result = ask(shop_reco, visitor="v-9")
    decision_log_flush()
    decision = Decision.objects.get(decision_id=result.decision_id)
    answer = Adjustment.objects.get(decision=decision)
    assert (answer.is_default, answer.source_kind, decision.personalized) == (
        True,
        "default",
        False,
    )
    assert decision.suppressed == [
        {"slot": "recommendations", "candidate": "rule:r", "reason": "consent"}
    ]
    assert Slot.objects.filter(key="recommendations").exists()
