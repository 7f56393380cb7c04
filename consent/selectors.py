"""Reads of the consent app. Ingestion and decisions ask these, nothing else."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.core.cache import cache

from .hashing import visitor_key
from .models import ConsentPolicy, ConsentRecord

POLICY_CACHE_SECONDS = 5


@dataclass(frozen=True)
class EffectiveConsent:
    policy_version: int | None
    purposes: dict[str, bool] = field(default_factory=dict)
    reconsent_required: bool = False
    updated_at: datetime | None = None
    record_id: int | None = None

    def allows(self, purpose: str) -> bool:
        return self.purposes.get(purpose, False)


def _policy_cache_key(property_id: int) -> str:
    return f"consent:policy:{property_id}"


def policy_current(property_id: int) -> ConsentPolicy | None:
    key = _policy_cache_key(property_id)
    policy = cache.get(key)
    if policy is None:
        policy = ConsentPolicy.objects.filter(property_id=property_id).order_by("-version").first()
        if policy is not None:
            cache.set(key, policy, POLICY_CACHE_SECONDS)
    return policy


def policy_forget(property_id: int) -> None:
    cache.delete(_policy_cache_key(property_id))


def policy_get(property_id: int, version: int) -> ConsentPolicy | None:
    return ConsentPolicy.objects.filter(property_id=property_id, version=version).first()


def _effective(record: ConsentRecord | None, current: ConsentPolicy | None) -> EffectiveConsent:
    if current is None:
        return EffectiveConsent(policy_version=None)
    keys = current.purpose_keys
    if record is None:
        return EffectiveConsent(
            policy_version=None, purposes=dict.fromkeys(keys, False), reconsent_required=True
        )
    granted = set(record.granted)
    record_keys = set(record.policy.purpose_keys)
    # Until the visitor is asked again, only what both versions allow is in force.
    purposes = {key: key in granted and key in record_keys for key in keys}
    return EffectiveConsent(
        policy_version=record.policy.version,
        purposes=purposes,
        reconsent_required=record.policy.version != current.version and set(keys) != record_keys,
        updated_at=record.created_at,
        record_id=record.pk,
    )


def consents_effective(property_id: int, visitor_ids: Iterable[str]) -> dict[str, EffectiveConsent]:
    """The effective consent of each visitor, in one query whatever their number."""
    ids = set(visitor_ids)
    if not ids:
        return {}
    current = policy_current(property_id)
    keys = {visitor_key(property_id, vid): vid for vid in ids}
    latest: dict[str, ConsentRecord] = {}
    records = (
        ConsentRecord.objects.filter(property_id=property_id, visitor_key__in=list(keys))
        .select_related("policy")
        .order_by("visitor_key", "-id")
    )
    for record in records:
        latest.setdefault(record.visitor_key, record)
    return {vid: _effective(latest.get(key), current) for key, vid in keys.items()}


def consent_effective(property_id: int, visitor_id: str) -> EffectiveConsent:
    return consents_effective(property_id, [visitor_id])[visitor_id]


def consent_history(property_id: int, visitor_id: str) -> list[ConsentRecord]:
    key = visitor_key(property_id, visitor_id)
    return list(
        ConsentRecord.objects.filter(property_id=property_id, visitor_key=key)
        .select_related("policy")
        .order_by("id")
    )
