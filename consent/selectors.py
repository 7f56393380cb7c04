"""Reads of the consent app. Ingestion and decisions ask these, nothing else."""

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.db.models import Case, Exists, IntegerField, OuterRef, Q, QuerySet, Value, When
from django.utils import timezone

from . import registry
from .hashing import visitor_key
from .holdings import property_model
from .models import (
    CLOSED_STATUSES,
    AuditEntry,
    AuditKind,
    ConsentPolicy,
    ConsentRecord,
    PrivacyRequest,
    RetentionPolicy,
    Suppression,
)

POLICY_CACHE_SECONDS = 5


@dataclass(frozen=True)
class EffectiveConsent:
    policy_version: int | None
    purposes: dict[str, bool] = field(default_factory=dict)
    reconsent_required: bool = False
    updated_at: datetime | None = None
    record_id: int | None = None
    # Erased (or otherwise suppressed): nothing is granted, whatever a record says.
    suppressed: bool = False

    def allows(self, purpose: str) -> bool:
        return self.purposes.get(purpose, False)


def _policy_cache_key(property_id: int) -> str:
    return f"consent:policy:{property_id}"


# Every decision reads the current policy: a process keeps it for a second (no cache round
# trip), within the shared cache's own POLICY_CACHE_SECONDS.
POLICY_MEMO_SECONDS = 1.0
_current: dict[int, tuple[float, ConsentPolicy]] = {}


def policy_current(property_id: int) -> ConsentPolicy | None:
    memo = _current.get(property_id)
    now = time.monotonic()
    if memo is not None and memo[0] > now:
        return memo[1]
    key = _policy_cache_key(property_id)
    policy = cache.get(key)
    if policy is None:
        policy = ConsentPolicy.objects.filter(property_id=property_id).order_by("-version").first()
        if policy is not None:
            cache.set(key, policy, POLICY_CACHE_SECONDS)
    if policy is not None:
        _current[property_id] = (now + POLICY_MEMO_SECONDS, policy)
    return policy


def policy_forget(property_id: int) -> None:
    _current.pop(property_id, None)
    cache.delete(_policy_cache_key(property_id))


def policy_get(property_id: int, version: int) -> ConsentPolicy | None:
    return ConsentPolicy.objects.filter(property_id=property_id, version=version).first()


@dataclass(frozen=True)
class _Latest:
    """The fields of a visitor's latest consent record that the effective consent needs."""

    id: int
    granted: list[str]
    policy: ConsentPolicy
    created_at: datetime
    suppressed: bool


def _effective(record: _Latest | None, current: ConsentPolicy | None) -> EffectiveConsent:
    if current is None:
        return EffectiveConsent(policy_version=None)
    keys = current.purpose_keys
    if record is None:
        return EffectiveConsent(
            policy_version=None, purposes=dict.fromkeys(keys, False), reconsent_required=True
        )
    if record.suppressed:
        return EffectiveConsent(
            policy_version=record.policy.version,
            purposes=dict.fromkeys(keys, False),
            updated_at=record.created_at,
            record_id=record.id,
            suppressed=True,
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
        record_id=record.id,
    )


POLICY_BY_ID_SECONDS = 3600


_by_id: dict[int, ConsentPolicy] = {}


def memos_clear() -> None:
    """Forget this process's consent-policy memos (``personalization.cache.reset_all``
    calls it; the shared cache is emptied there)."""
    _current.clear()
    _by_id.clear()


def _policies_by_id(ids: set[int]) -> dict[int, ConsentPolicy]:
    """Published policies never change: kept by id in the process (bounded: a few versions
    per property) and in the shared cache."""
    if ids <= _by_id.keys():
        return {pid: _by_id[pid] for pid in ids}
    keys = {f"consent:policy-id:{pid}": pid for pid in ids}
    found = {keys[k]: v for k, v in cache.get_many(list(keys)).items()}
    missing = ids - set(found)
    if missing:
        fresh = {p.pk: p for p in ConsentPolicy.objects.filter(pk__in=missing)}
        cache.set_many(
            {f"consent:policy-id:{pid}": p for pid, p in fresh.items()}, POLICY_BY_ID_SECONDS
        )
        found.update(fresh)
    if len(_by_id) > 10_000:
        _by_id.clear()
    _by_id.update(found)
    return found


def _latest_records(property_id: int, keys: list[str]) -> Iterable[tuple]:
    """(visitor_key, id, granted, policy_id, created_at, suppressed) of the visitors' records,
    each visitor's latest first."""
    if connection.vendor == "postgresql":
        # Every decision asks: a fixed statement (no ORM query built per call) returning only
        # each visitor's latest record.
        record, suppression = ConsentRecord._meta.db_table, Suppression._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT DISTINCT ON (r.visitor_key) r.visitor_key, r.id, r.granted, r.policy_id, "
                f"r.created_at, EXISTS (SELECT 1 FROM {suppression} s "
                "WHERE s.property_id = r.property_id AND s.visitor_key = r.visitor_key) "
                f"FROM {record} r WHERE r.property_id = %s AND r.visitor_key = ANY(%s) "
                "ORDER BY r.visitor_key, r.id DESC",
                [property_id, keys],
            )
            found = cursor.fetchall()
        return [(k, i, json.loads(g) if isinstance(g, str) else g, p, at, sup)
                for k, i, g, p, at, sup in found]  # fmt: skip
    return (
        ConsentRecord.objects.filter(property_id=property_id, visitor_key__in=keys)
        .annotate(
            suppressed=Exists(
                Suppression.objects.filter(
                    property_id=property_id, visitor_key=OuterRef("visitor_key")
                )
            )
        )
        .order_by("visitor_key", "-id")
        .values_list("visitor_key", "id", "granted", "policy_id", "created_at", "suppressed")
    )


def consents_effective(property_id: int, visitor_ids: Iterable[str]) -> dict[str, EffectiveConsent]:
    """The effective consent of each visitor, in one query whatever their number.

    A visitor on the suppression list grants nothing. Only a visitor with a record
    could grant anything, so the list is read as a subquery of the same query.
    """
    ids = set(visitor_ids)
    if not ids:
        return {}
    current = policy_current(property_id)
    keys = {visitor_key(property_id, vid): vid for vid in ids}
    rows: dict[str, tuple] = {}
    for row in _latest_records(property_id, list(keys)):
        rows.setdefault(row[0], row)
    policies = _policies_by_id({row[3] for row in rows.values()})
    latest = {
        key: _Latest(row[1], row[2], policies[row[3]], row[4], bool(row[5]))
        for key, row in rows.items()
    }
    return {vid: _effective(latest.get(key), current) for key, vid in keys.items()}


def consent_effective(property_id: int, visitor_id: str) -> EffectiveConsent:
    return consents_effective(property_id, [visitor_id])[visitor_id]


# A visitor's latest record as a plain row: (id, granted, policy_id, created_at, suppressed).
# The decision engine keeps these rows in Redis (personalization/hotstate/) and turns them
# into the effective consent with ``consent_effective_from_row``, exactly as a query would.
LatestRow = tuple[int, list[str], int, datetime, bool]


def latest_rows(property_id: int, keys: list[str]) -> dict[str, LatestRow | None]:
    """Each keyed visitor's latest record (None: no record), in one query."""
    rows: dict[str, LatestRow | None] = dict.fromkeys(keys)
    seen: set[str] = set()
    for row in _latest_records(property_id, keys):
        if row[0] not in seen:
            seen.add(row[0])
            rows[row[0]] = (row[1], list(row[2]), row[3], row[4], bool(row[5]))
    return rows


def consent_effective_from_row(property_id: int, row: LatestRow | None) -> EffectiveConsent:
    """The effective consent under the current policy of a visitor whose latest record is
    ``row`` (as ``latest_rows`` returns it)."""
    current = policy_current(property_id)
    if row is None:
        return _effective(None, current)
    policy = _policies_by_id({row[2]})[row[2]]
    return _effective(_Latest(row[0], row[1], policy, row[3], row[4]), current)


def consent_history(property_id: int, visitor_id: str) -> list[ConsentRecord]:
    key = visitor_key(property_id, visitor_id)
    return list(
        ConsentRecord.objects.filter(property_id=property_id, visitor_key=key)
        .select_related("policy")
        .order_by("id")
    )


def suppressed_visitors(property_id: int, visitor_ids: Iterable[str]) -> set[str]:
    """Which of these raw ids are on the suppression list (erased or opted out)."""
    keys = {visitor_key(property_id, vid): vid for vid in set(visitor_ids)}
    if not keys:
        return set()
    found = Suppression.objects.filter(property_id=property_id, visitor_key__in=list(keys))
    return {keys[k] for k in found.values_list("visitor_key", flat=True)}


def training_excluded_keys(property_id: int) -> set[str]:
    """Keyed hashes of the visitors no model may be trained on (models compare keyed ids)."""
    return set(
        Suppression.objects.filter(property_id=property_id, exclude_from_training=True)
        .values_list("visitor_key", flat=True)
        .iterator()
    )


# Retention ----------------------------------------------------------------------------

RETENTION_DEFAULTS: dict[str, int] = {
    "raw_events": 395,
    "quarantine": 30,
    "adjustment_log": 395,
    "survey_answers": 730,
}


def retention_periods(property_id: int) -> dict[str, int]:
    """Days kept per retention kind. Without a policy row, raw events follow the property's
    own ``retention_days`` (the age ingestion refuses), the rest the defaults."""
    policy = RetentionPolicy.objects.filter(property_id=property_id).first()
    if policy is not None:
        return {
            "raw_events": policy.raw_events_days,
            "quarantine": policy.quarantine_days,
            "adjustment_log": policy.adjustment_log_days,
            "survey_answers": policy.survey_answers_days,
        }
    days = dict(RETENTION_DEFAULTS)
    prop_days = (
        property_model()
        ._default_manager.filter(pk=property_id)
        .values_list("retention_days", flat=True)
        .first()
    )
    if prop_days:
        days["raw_events"] = int(prop_days)
    return days


def retention_period(property_id: int, kind: str) -> int:
    return retention_periods(property_id)[kind]


# Data-subject requests ----------------------------------------------------------------

DUE_SOON_DAYS = 7


def visitor_known(property_id: int, visitor_id: str) -> bool:
    """Whether any store an access export reads holds a row about this visitor."""
    return any(
        store.queryset_for(property_id, visitor_id).exists()
        for store in registry.stores()
        if store.export and store.exporter is None
    )


def request_open_for(property_id: int, visitor_id: str, kind: str) -> PrivacyRequest | None:
    return (
        PrivacyRequest.objects.filter(
            property_id=property_id, visitor_key=visitor_key(property_id, visitor_id), kind=kind
        )
        .exclude(status__in=CLOSED_STATUSES)
        .order_by("id")
        .first()
    )


def days_left(request: PrivacyRequest, today: date | None = None) -> int:
    return (request.due_date - (today or timezone.now().date())).days


def deadline_flag(request: PrivacyRequest, today: date | None = None) -> str:
    """'overdue', 'due_soon' (within 7 days) or '' for an open request; '' once closed."""
    if not request.is_open:
        return ""
    left = days_left(request, today)
    if left < 0:
        return "overdue"
    if left <= DUE_SOON_DAYS:
        return "due_soon"
    return ""


def requests_for(properties: QuerySet, **filters: Any) -> QuerySet[PrivacyRequest]:
    """The officer's queue: open requests first, by due date."""
    return (
        PrivacyRequest.objects.filter(property__in=properties, **filters)
        .select_related("property", "assignee")
        .annotate(closed=_closed())
        .order_by("closed", "due_date", "id")
    )


def _closed() -> Case:
    return Case(
        When(status__in=CLOSED_STATUSES, then=Value(1)),
        default=Value(0),
        output_field=IntegerField(),
    )


def request_audit_trail(request: PrivacyRequest) -> list[AuditEntry]:
    return list(
        AuditEntry.objects.filter(target=f"privacy_request:{request.pk}")
        .select_related("actor")
        .order_by("at", "id")
    )


def audit_entries_for(privacy_properties: QuerySet, config_properties: QuerySet) -> QuerySet:
    """Privacy entries of the properties an officer holds, configuration entries of those
    marketing holds (docs/CONTRACT.md: each role reads its own part of the log)."""
    return AuditEntry.objects.filter(
        Q(kind=AuditKind.PRIVACY, property__in=privacy_properties)
        | Q(kind=AuditKind.CONFIGURATION, property__in=config_properties)
    )


def request_by_public_id(property_id: int, public_id: Any) -> PrivacyRequest | None:
    return (
        PrivacyRequest.objects.filter(property_id=property_id, public_id=public_id)
        .select_related("export")
        .first()
    )


def request_public(request: PrivacyRequest) -> dict[str, Any]:
    """What the storefront may read about its request (no visitor id, no contact)."""
    export = getattr(request, "export", None) if request.kind == "access" else None
    return {
        "id": str(request.public_id),
        "kind": request.kind,
        "regulation": request.regulation,
        "status": request.status,
        "received_at": request.received_at,
        "due_at": request.due_date,
        "days_left": days_left(request) if request.is_open else None,
        "extended": request.extended_at is not None,
        "extension_reason": request.extension_reason or None,
        "denial_reason": request.denial_reason or None,
        "completed_at": request.completed_at,
        "export": (
            {
                "status": export.status,
                "progress": {
                    "stores_done": export.stores_done,
                    "stores_total": export.stores_total,
                },
                "expires_at": export.expires_at,
                "token": str(export.token) if export.status == "ready" else None,
            }
            if export is not None
            else None
        ),
        "receipt": request.receipt,
    }
