"""Writes of the consent app: publish policies, record consent, apply GPC."""

from collections.abc import Iterable
from typing import Any

from django.db import transaction

from .exceptions import DomainError
from .hashing import truncate_ip, visitor_key
from .models import BUILT_IN_PURPOSES, ConsentMethod, ConsentPolicy, ConsentRecord
from .selectors import (
    EffectiveConsent,
    consent_effective,
    consents_effective,
    policy_current,
    policy_forget,
    policy_get,
)

GPC_PURPOSES = ("personalization", "granular_tracking")
REQUIRED_PURPOSES = {p["key"] for p in BUILT_IN_PURPOSES}


def purposes_validate(purposes: Any) -> list[dict[str, str]]:
    if not isinstance(purposes, list) or not purposes:
        raise DomainError("invalid_policy", "A policy lists at least one purpose.")
    seen: set[str] = set()
    cleaned = []
    for index, purpose in enumerate(purposes):
        if not isinstance(purpose, dict):
            raise DomainError("invalid_policy", f"Purpose {index} must be an object.")
        key = str(purpose.get("key", "")).strip()
        if not key or not key.replace("_", "").isalnum() or key in seen:
            raise DomainError(
                "invalid_policy", f"Purpose {index} needs a unique key of letters, digits and _."
            )
        if not str(purpose.get("text", "")).strip():
            raise DomainError(
                "invalid_policy", f"Purpose {key!r} needs the text shown to visitors."
            )
        seen.add(key)
        cleaned.append(
            {"key": key, "title": str(purpose.get("title") or key), "text": str(purpose["text"])}
        )
    missing = REQUIRED_PURPOSES - seen
    if missing:
        raise DomainError(
            "invalid_policy", f"A policy keeps the built-in purposes; missing: {sorted(missing)}."
        )
    return cleaned


@transaction.atomic
def policy_publish(
    *,
    property_id: int,
    purposes: list[dict[str, str]] | None = None,
    jurisdictions: list[str] | None = None,
    user: Any = None,
) -> ConsentPolicy:
    cleaned = purposes_validate(purposes if purposes is not None else BUILT_IN_PURPOSES)
    last = (
        ConsentPolicy.objects.select_for_update()
        .filter(property_id=property_id)
        .order_by("-version")
        .first()
    )
    policy = ConsentPolicy.objects.create(
        property_id=property_id,
        version=(last.version + 1) if last else 1,
        purposes=cleaned,
        jurisdictions=list(jurisdictions or []),
        published_by=user if getattr(user, "pk", None) else None,
    )
    # Forget now (this process) and after commit (a reader may have cached the old one meanwhile).
    policy_forget(property_id)
    transaction.on_commit(lambda: policy_forget(property_id))
    return policy


def consent_record(
    *,
    property_id: int,
    visitor_id: str,
    policy_version: int,
    purposes: dict[str, bool],
    method: str,
    ip: str | None = None,
    gpc: bool = False,
) -> EffectiveConsent:
    """Record a visitor's choice; with GPC the opt-out wins whatever was asked."""
    policy = policy_get(property_id, policy_version)
    if policy is None:
        raise DomainError(
            "unknown_policy_version",
            f"This property has no consent policy version {policy_version}.",
            details={"policy_version": policy_version},
        )
    unknown = sorted(set(purposes) - set(policy.purpose_keys))
    if unknown:
        raise DomainError(
            "unknown_purpose",
            f"Policy version {policy_version} does not define: {', '.join(unknown)}.",
            details={"purposes": unknown},
        )
    if method not in ConsentMethod.values:
        raise DomainError("invalid_method", f"Unknown consent method {method!r}.")
    granted = {key for key, value in purposes.items() if value is True}
    if gpc:
        granted -= set(GPC_PURPOSES)
        method = ConsentMethod.GPC
    ConsentRecord.objects.create(
        property_id=property_id,
        visitor_key=visitor_key(property_id, visitor_id),
        policy=policy,
        granted=sorted(granted),
        refused=sorted(set(policy.purpose_keys) - granted),
        method=method,
        network=truncate_ip(ip),
    )
    return consent_effective(property_id, visitor_id)


def gpc_apply(*, property_id: int, visitor_ids: Iterable[str], ip: str | None = None) -> int:
    """Record the GPC opt-out for each visitor whose consent still allows a GPC purpose.

    Once per visitor and policy version: a visitor already opted out under the
    current version gets no new record. Returns the number of records written.
    """
    policy = policy_current(property_id)
    if policy is None:
        return 0
    effective = consents_effective(property_id, visitor_ids)
    records = []
    for vid, consent in effective.items():
        already = consent.policy_version == policy.version and not any(
            consent.allows(p) for p in GPC_PURPOSES
        )
        if already and consent.record_id is not None:
            continue
        granted = {p for p, allowed in consent.purposes.items() if allowed} - set(GPC_PURPOSES)
        records.append(
            ConsentRecord(
                property_id=property_id,
                visitor_key=visitor_key(property_id, vid),
                policy=policy,
                granted=sorted(granted),
                refused=sorted(set(policy.purpose_keys) - granted),
                method=ConsentMethod.GPC,
                network=truncate_ip(ip),
            )
        )
    ConsentRecord.objects.bulk_create(records)
    return len(records)
