"""Builders for slots, variants and rules, through the same services staff use
(``tests.factories``)."""

from typing import Any

from personalization.models import Property, Rollout, Rule, Slot, Variant
from tests.factories import RuleFactory, SlotFactory


def slot(
    prop: Property, key: str, variants: dict[str, dict] | None = None, default: str = "default"
) -> Slot:
    return SlotFactory(property=prop, key=key, default_variant=default, variants=variants)


def rule(
    prop: Property,
    key: str,
    slot_key: str,
    variant_key: str,
    condition: dict | None = None,
    **fields: Any,
) -> Rule:
    s = Slot.objects.get(property=prop, key=slot_key)
    return RuleFactory(
        property=prop,
        key=key,
        slot=s,
        variant=Variant.objects.get(slot=s, key=variant_key),
        condition=condition or {},
        **fields,
    )


def rollout(
    prop: Property, key: str, slot_key: str, variant_key: str, percent: int = 100
) -> Rollout:
    """A rollout serving ``variant_key`` in the slot to ``percent`` of visitors."""
    s = Slot.objects.get(property=prop, key=slot_key)
    return Rollout.objects.create(
        property=prop, key=key, slot=s, variant=variant_key, percent=percent
    )
