"""What an answer shows: a variant's content, with live content (trending, recently viewed,
popular in the visitor's segment) filled in; and the slot's default answer."""

from .. import live
from ..ruleset import CompiledSlot
from .answers import SlotAnswer
from .context import Decision


def content(d: Decision, slot: CompiledSlot, variant: str) -> dict:
    spec = slot.variants.get(variant)
    if spec is None:
        return {}
    if not spec.strategy:
        return spec.content
    items: list[str] = []
    prop_id, now = d.prop.pk, d.now
    if spec.strategy == "trending":
        items = live.trending_items(prop_id, now, spec.limit)
    elif spec.strategy == "recently_viewed":
        items = list(reversed(d.attributes["visitor"].get("items_viewed", [])))[: spec.limit]
    elif spec.strategy == "popular_in_segment":
        segments = d.attributes.get("segments") or []
        if segments:
            condition = dict(d.ruleset.segments)[segments[0]]
            items = live.popular_in_segment(prop_id, segments[0], condition, now, spec.limit)
        if not items:
            items = live.trending_items(prop_id, now, spec.limit)
    return {**spec.content, "strategy": spec.strategy, "items": items}


def default_answer(d: Decision, slot_key: str) -> SlotAnswer:
    """The slot's default, with live content filled in like any other answer."""
    slot = d.ruleset.slots[slot_key]
    return SlotAnswer(slot.key, slot.default, content(d, slot, slot.default))


def all_defaults(d: Decision) -> None:
    """Every known slot's default answer (nothing applied)."""
    for slot_key in d.known:
        d.result.answers[slot_key] = default_answer(d, slot_key)
