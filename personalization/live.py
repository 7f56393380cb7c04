"""Live content and live slot metrics read at decision time, cached briefly per property.

- ``trending``: the items viewed or carted by the most distinct visitors across the property
  in the last hour (at least ``TRENDING_MIN_VISITORS`` of them; see :func:`trending_items`);
- ``recently_viewed``: the visitor's own recent items (from their live signals);
- ``popular_in_segment``: the items most viewed by recent visitors of the same segment;
- slot metrics: a slot's click-through over the last hour, its exposures and a Wilson
  interval, which rule conditions read as ``slot.<key>.ctr`` / ``ctr_low`` / ``ctr_high``
  / ``exposures``.
"""

import math
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db.models import CharField, Count
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from . import visitor_state
from .conditions import CompiledCondition
from .models import Adjustment, Event, Visitor

CACHE_SECONDS = 60
Z95 = 1.959963984540054
# An item trends once this many distinct visitors viewed or carted it in the window, each
# counting once: one visitor's hundred add_to_cart events weigh what one shopper's view does.
TRENDING_MIN_VISITORS = 3
TRENDING_WINDOW = timedelta(hours=1)


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def trending_items(property_id: int, now: datetime, limit: int) -> list[str]:
    """Items ranked by the distinct visitors who viewed or carted them in the last hour.

    A visitor counts once per item however many events they send (their weight is capped),
    and an item needs ``TRENDING_MIN_VISITORS`` of them to trend. The events counted are
    stored ones, so each visitor had consented to analytics when sending them. (There is no
    item catalogue to check the ids against: any id a storefront sends can trend.)
    """
    key = f"live:trending:{property_id}"
    items: list[str] | None = cache.get(key)
    if items is None:
        rows = (
            Event.objects.filter(
                property_id=property_id,
                timestamp__gte=now - TRENDING_WINDOW,
                type__in=("page_view", "add_to_cart"),
            )
            # As text (Cast): compared with "" as a string, not as JSON, which SQLite's JSON
            # lookups get wrong ("malformed JSON").
            .annotate(item=Cast(KeyTextTransform("item_id", "properties"), CharField()))
            .exclude(item__isnull=True)
            .exclude(item="")
            .values("item")
            .annotate(visitors=Count("visitor_id", distinct=True))
            .filter(visitors__gte=TRENDING_MIN_VISITORS)
            .order_by("-visitors", "item")[:50]
        )
        items = [r["item"] for r in rows]
        cache.set(key, items, CACHE_SECONDS)
    return items[:limit]


def popular_in_segment(
    property_id: int, segment: str, condition: CompiledCondition, now: datetime, limit: int
) -> list[str]:
    key = f"live:segment-items:{property_id}:{segment}"
    items: list[str] | None = cache.get(key)
    if items is None:
        counts: Counter[str] = Counter()
        recent = Visitor.objects.filter(
            property_id=property_id, last_seen__gte=now - timedelta(days=1)
        ).order_by("-last_seen")[:2000]
        for visitor in recent:
            attrs = visitor_state.signals_for(visitor.state, None, now)
            attrs["id"] = visitor.visitor_id
            if condition(attrs):
                counts.update(visitor.state.get("items_viewed", []))
        items = [item for item, _ in counts.most_common(50)]
        cache.set(key, items, CACHE_SECONDS * 5)
    return items[:limit]


def slot_metrics(property_id: int, slot_keys: set[str], now: datetime) -> dict[str, dict]:
    """Click-through of each slot over the last hour: adjustments shown and clicks on them."""
    out: dict[str, dict] = {}
    missing = []
    for slot in slot_keys:
        cached = cache.get(f"live:slot:{property_id}:{slot}")
        if cached is None:
            missing.append(slot)
        else:
            out[slot] = cached
    if missing:
        since = now - timedelta(hours=1)
        exposures = dict(
            Adjustment.objects.filter(
                property_id=property_id, created_at__gte=since, slot_key__in=missing
            )
            .values_list("slot_key")
            .annotate(n=Count("id"))
        )
        # Grouped for every element, filtered here: SQLite's JSON lookups cannot take __in.
        clicks = dict(
            Event.objects.filter(
                property_id=property_id,
                timestamp__gte=since,
                type="click",
                decision_id__isnull=False,
            )
            .annotate(element=KeyTextTransform("element_id", "properties"))
            .values_list("element")
            .annotate(n=Count("id"))
        )
        for slot in missing:
            n = int(exposures.get(slot, 0))
            c = min(int(clicks.get(slot, 0)), n)
            low, high = wilson_interval(c, n)
            metric = {
                "exposures": n,
                "clicks": c,
                "ctr": c / n if n else 0.0,
                "ctr_low": low,
                "ctr_high": high,
            }
            cache.set(f"live:slot:{property_id}:{slot}", metric, CACHE_SECONDS)
            out[slot] = metric
    return out


def with_interval_bound(attributes: dict[str, Any], bound: str) -> dict[str, Any]:
    """The attributes with every slot's ``ctr`` replaced by one end of its interval."""
    slots = {
        key: {**metric, "ctr": metric[bound]} for key, metric in attributes.get("slot", {}).items()
    }
    return {**attributes, "slot": slots}
