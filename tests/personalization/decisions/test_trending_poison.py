"""Trending items against poisoning: a visitor counts once per item, and an item needs
TRENDING_MIN_VISITORS distinct visitors to trend. Through the API: events in, decide out.
(There is no item catalogue in the product, so ids are not checked against one.)"""

import pytest
from django.core.cache import cache

from personalization import live
from personalization.models import Variant
from tests.conftest import make_event
from tests.targeting import rule, slot


@pytest.fixture
def store(shop):
    """A shop whose recommendations slot serves trending items to everyone."""
    shop.prop.holdout_pct = 0
    shop.prop.save()
    reco = slot(shop.prop, "recommendations")
    Variant.objects.create(
        slot=reco, key="trend", content={"title": "Trending"}, strategy="trending", strategy_limit=5
    )
    rule(shop.prop, "everyone", "recommendations", "trend")
    return shop


def send(shop, consent, visitor: str, kind: str, item: str, times: int = 1) -> None:
    """``visitor`` (consenting) sends ``times`` events of ``kind`` about ``item``."""
    consent(shop.prop, visitor)
    events = [
        make_event(
            kind, visitor_id=visitor, session_id=f"s-{visitor}", properties={"item_id": item}
        )
        for _ in range(times)
    ]
    response = shop.client().post("/api/v1/events", {"events": events}, format="json")
    assert response.json()["accepted"] == times, response.content[:300]


def trending(shop, consent, visitor: str = "shopper") -> list[str]:
    consent(shop.prop, visitor)
    cache.delete(f"live:trending:{shop.prop.pk}")  # trending items are cached for a minute
    body = {"visitor_id": visitor, "session_id": "s-shopper", "slots": ["recommendations"]}
    response = shop.client().post("/api/v1/decide", body, format="json")
    assert response.status_code == 200, response.content[:300]
    answer = response.json()["slots"]["recommendations"]
    assert answer["variant"] == "trend", answer
    return answer["content"]["items"]


def test_trending__20_fake_visitors_carting_a_made_up_item_5_times__real_items_first(
    store, consent
):
    # Given real shoppers: 25 viewed sku-001 and 22 viewed sku-002 in the last hour
    for n in range(25):
        send(store, consent, f"real-{n}", "page_view", "sku-001")
    for n in range(22):
        send(store, consent, f"real-{n}", "page_view", "sku-002")
    # And 20 made-up visitors who each carted an invented item 5 times (100 events)
    for n in range(20):
        send(store, consent, f"fake-{n}", "add_to_cart", "sku-invented", times=5)
    # When a shopper is served trending items
    items = trending(store, consent)
    # Then the real items come first: the invented one counts its 20 visitors, not its 100
    # events (with no catalogue to check ids against, it still trends behind them)
    assert items == ["sku-001", "sku-002", "sku-invented"]


def test_trending__one_visitor_carting_an_item_100_times__not_trending(store, consent):
    # Given 3 shoppers who viewed sku-001, and one visitor who carted sku-mine 100 times
    for n in range(3):
        send(store, consent, f"real-{n}", "page_view", "sku-001")
    send(store, consent, "pusher", "add_to_cart", "sku-mine", times=100)
    # When a shopper is served trending items
    items = trending(store, consent)
    # Then one visitor's events do not make an item trend, however many
    assert items == ["sku-001"]


def test_trending__item_below_the_minimum_of_visitors__trends_once_reached(store, consent):
    # Given an item viewed by one visitor fewer than the minimum
    assert live.TRENDING_MIN_VISITORS >= 2
    for n in range(live.TRENDING_MIN_VISITORS - 1):
        send(store, consent, f"real-{n}", "page_view", "sku-new")
    # When a shopper is served trending items  Then it is not among them
    assert trending(store, consent) == []
    # When one more visitor views it  Then it trends
    send(store, consent, "one-more", "page_view", "sku-new")
    assert trending(store, consent) == ["sku-new"]
