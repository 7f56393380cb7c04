"""Builders for slots, variants and rules, through the same services staff use."""

from typing import Any

from personalization.models import Property, Rollout, Rule, Slot, Variant
from personalization.services.rules import rule_save


def slot(
    prop: Property, key: str, variants: dict[str, dict] | None = None, default: str = "default"
) -> Slot:
    s = Slot.objects.create(property=prop, key=key, default_variant=default)
    Variant.objects.create(slot=s, key=default, content={"text": f"{key} default"})
    for name, content in (variants or {}).items():
        Variant.objects.create(slot=s, key=name, content=content)
    return s


def rule(
    prop: Property,
    key: str,
    slot_key: str,
    variant_key: str,
    condition: dict | None = None,
    **fields: Any,
) -> Rule:
    s = Slot.objects.get(property=prop, key=slot_key)
    r = Rule(
        property=prop,
        key=key,
        slot=s,
        variant=Variant.objects.get(slot=s, key=variant_key),
        condition=condition or {},
        status=fields.pop("status", "active"),
        **fields,
    )
    return rule_save(rule=r)


def rollout(
    prop: Property, key: str, slot_key: str, variant_key: str, percent: int = 100
) -> Rollout:
    """A rollout serving ``variant_key`` in the slot to ``percent`` of visitors."""
    s = Slot.objects.get(property=prop, key=slot_key)
    return Rollout.objects.create(
        property=prop, key=key, slot=s, variant=variant_key, percent=percent
    )
