"""Writes of the consent app: publish policies, record consent, apply GPC."""

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import registry
from ..context import current_endpoint
from ..exceptions import DomainError, problem
from ..hashing import truncate_ip, visitor_key
from ..models import (
    BUILT_IN_PURPOSES,
    ConsentMethod,
    ConsentPolicy,
    ConsentRecord,
    GpcEvidence,
)
from ..selectors import (
    EffectiveConsent,
    consent_effective,
    consents_effective,
    policy_current,
    policy_forget,
    policy_get,
)
from .audit import audit_record

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
    audit_record(
        action="policy.published",
        property_id=property_id,
        target=f"consent_policy:{policy.pk}",
        details={
            "version": policy.version,
            "purposes": policy.purpose_keys,
            "jurisdictions": policy.jurisdictions,
        },
        user=user,
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
    endpoint: str | None = None,
) -> EffectiveConsent:
    """Record a visitor's choice; with GPC the opt-out wins whatever was asked."""
    policy = policy_get(property_id, policy_version)
    if policy is None:
        message = f"This property has no consent policy version {policy_version}."
        raise DomainError(
            "unknown_policy_version",
            message,
            details={"errors": [problem("policy_version", "unknown_policy_version", message)]},
        )
    unknown = sorted(set(purposes) - set(policy.purpose_keys))
    if unknown:
        raise DomainError(
            "unknown_purpose",
            f"Policy version {policy_version} does not define: {', '.join(unknown)}.",
            details={
                "errors": [
                    problem(
                        f"purposes.{key}",
                        "unknown_purpose",
                        f"is not a purpose of policy version {policy_version}",
                    )
                    for key in unknown
                ]
            },
        )
    if method not in ConsentMethod.values:
        raise DomainError("invalid_method", f"Unknown consent method {method!r}.")
    granted = {key for key, value in purposes.items() if value is True}
    if gpc:
        granted -= set(GPC_PURPOSES)
        method = ConsentMethod.GPC
    key = visitor_key(property_id, visitor_id)
    with transaction.atomic():
        ConsentRecord.objects.create(
            property_id=property_id,
            visitor_key=key,
            policy=policy,
            granted=sorted(granted),
            refused=sorted(set(policy.purpose_keys) - granted),
            method=method,
            network=truncate_ip(ip),
        )
        if gpc:
            _gpc_evidence(property_id, [key], endpoint)
        registry.consent_changed(property_id, [key])
    return consent_effective(property_id, visitor_id)


@transaction.atomic
def consent_record_by_officer(
    *,
    property_id: int,
    visitor_id: str,
    policy_version: int,
    purposes: dict[str, bool],
    user: Any,
) -> EffectiveConsent:
    """An officer records a choice the visitor made elsewhere (a letter, a call): method officer."""
    consent = consent_record(
        property_id=property_id,
        visitor_id=visitor_id,
        policy_version=policy_version,
        purposes=purposes,
        method=ConsentMethod.OFFICER,
    )
    audit_record(
        action="consent.recorded",
        property_id=property_id,
        target=f"visitor:{visitor_key(property_id, visitor_id)}",
        details={
            "policy_version": policy_version,
            "granted": sorted(k for k, v in purposes.items() if v),
            "method": ConsentMethod.OFFICER,
        },
        user=user,
    )
    return consent


def consent_opt_out(*, property_id: int, visitor_id: str, method: str) -> EffectiveConsent:
    """Refuse personalization and granular tracking under the current policy, keeping the
    rest of what the visitor granted (an opt-out request; the same purposes GPC refuses)."""
    policy = policy_current(property_id)
    if policy is None:
        raise DomainError("no_policy", "This property has no consent policy yet.", status=409)
    current = consent_effective(property_id, visitor_id)
    keep = {p for p, allowed in current.purposes.items() if allowed} - set(GPC_PURPOSES)
    return consent_record(
        property_id=property_id,
        visitor_id=visitor_id,
        policy_version=policy.version,
        purposes={p: p in keep for p in policy.purpose_keys},
        method=method,
    )


def _gpc_evidence(property_id: int, keys: Iterable[str], endpoint: str | None) -> None:
    at = timezone.now()
    where = (endpoint if endpoint is not None else current_endpoint())[:200]
    GpcEvidence.objects.bulk_create(
        [
            GpcEvidence(property_id=property_id, visitor_key=key, endpoint=where, at=at)
            for key in sorted(set(keys))
        ]
    )


def gpc_apply(
    *,
    property_id: int,
    visitor_ids: Iterable[str],
    ip: str | None = None,
    endpoint: str | None = None,
) -> int:
    """Record the GPC opt-out for each visitor whose consent still allows a GPC purpose.

    Once per visitor and policy version: a visitor already opted out under the
    current version gets no new record. Every application is kept as evidence
    (one bulk insert for the whole request). ``endpoint`` defaults to the route
    the current request resolved to. Returns the number of records written.
    """
    policy = policy_current(property_id)
    if policy is None:
        return 0
    keys = {vid: visitor_key(property_id, vid) for vid in visitor_ids}
    effective = consents_effective(property_id, keys)
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
                visitor_key=keys[vid],
                policy=policy,
                granted=sorted(granted),
                refused=sorted(set(policy.purpose_keys) - granted),
                method=ConsentMethod.GPC,
                network=truncate_ip(ip),
            )
        )
    with transaction.atomic():
        ConsentRecord.objects.bulk_create(records)
        _gpc_evidence(property_id, keys.values(), endpoint)
        registry.consent_changed(property_id, [r.visitor_key for r in records])
    return len(records)
