"""Event ingestion: every event meets exactly one fate.

validate (JSON Schema) → consent gate → store (deduplicated) → fold into live signals.
Invalid events are quarantined whole with their errors; events whose visitor has
not granted the event's purpose are counted and never stored.
"""

import copy
import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import fastjsonschema
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from consent import selectors as consent_selectors
from consent import services as consent_services

from .. import event_schemas, hotstate, schema_patterns, visitor_state
from ..db import (
    from_db_datetime,
    from_db_json,
    increment_counters,
    insert_returning_new,
    insert_rows,
    update_rows,
    upsert_locked,
)
from ..models import (
    Event,
    EventType,
    Fate,
    IngestStat,
    Property,
    QuarantinedEvent,
    QuarantineStatus,
    Session,
    Visitor,
)
from ..transactions import atomic_retrying

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Prepared:
    index: int
    event_id: uuid.UUID
    type: str
    purpose: str
    visitor_id: str
    session_id: str
    timestamp: datetime
    decision_id: uuid.UUID | None
    properties: dict
    context: dict


@dataclass
class VisitorRow:
    pk: int
    visitor_id: str
    state: dict
    first_seen: datetime
    last_seen: datetime


@dataclass
class Rejected:
    index: int
    raw: Any
    error: dict


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    dropped_no_consent: int = 0
    errors: list[dict] = field(default_factory=list)
    stored_ids: list[uuid.UUID] = field(default_factory=list)

    def as_response(self) -> dict:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "dropped_no_consent": self.dropped_no_consent,
            "errors": self.errors,
        }


RETENTION_CACHE_SECONDS = 60


def raw_event_retention_days(property_id: int) -> int:
    """The age past which events are refused: the same number the retention purge uses."""
    key = f"retention:raw_events:{property_id}"
    days = cache.get(key)
    if days is None:
        days = consent_selectors.retention_period(property_id, "raw_events")
        cache.set(key, days, RETENTION_CACHE_SECONDS)
    return int(days)


class TypeBook:
    """Validators and purposes for the built-in types and the property's custom ones."""

    def __init__(self, prop: Property, names: set[str]) -> None:
        self.property_id = prop.pk
        self.retention_days = raw_event_retention_days(prop.pk)
        custom = names - set(event_schemas.BUILT_IN_TYPES)
        self.custom = (
            {t.name: t for t in EventType.objects.filter(property=prop, name__in=custom)}
            if custom
            else {}
        )

    def lookup(self, name: str) -> tuple[event_schemas.Validator, str] | None:
        builtin = event_schemas.BUILT_IN_TYPES.get(name)
        if builtin is not None:
            validator = event_schemas.builtin_validator(name)
            assert validator is not None
            return validator, builtin[0]
        custom = self.custom.get(name)
        if custom is None:
            return None
        return (
            event_schemas.custom_validator(self.property_id, name, custom.version, custom.schema),
            custom.purpose,
        )


def _prepare(
    index: int, raw: Any, book: TypeBook, prop: Property, now: datetime
) -> Prepared | Rejected:
    if not isinstance(raw, dict):
        return Rejected(index, raw, {"path": "", "message": "an event must be a JSON object"})
    error = event_schemas.envelope_validate(raw)
    if error is not None:
        return Rejected(index, raw, error)
    found = book.lookup(raw["type"])
    if found is None:
        return Rejected(
            index, raw, {"path": "type", "message": f"unknown event type {raw['type']!r}"}
        )
    validator, purpose = found
    props = raw.get("properties") or {}
    try:
        validator(props)
    except fastjsonschema.JsonSchemaValueException as exc:
        return Rejected(index, raw, event_schemas.describe_error(exc, "properties"))
    except schema_patterns.SchemaPatternError as exc:
        # A regex of the type's schema ran out of time (or the batch's budget for them).
        return Rejected(index, raw, {"path": "properties", "message": str(exc)})
    ts = event_schemas.parse_timestamp(raw["timestamp"])
    if ts is None:
        return Rejected(
            index, raw, {"path": "timestamp", "message": "must be an ISO 8601 time with a zone"}
        )
    if ts > now + timedelta(seconds=settings.EVENTS_MAX_FUTURE_SECONDS):
        return Rejected(
            index, raw, {"path": "timestamp", "message": "is more than 5 minutes in the future"}
        )
    if ts < now - timedelta(days=book.retention_days):
        return Rejected(
            index,
            raw,
            {
                "path": "timestamp",
                "message": f"is older than the property's retention ({book.retention_days} days)",
            },
        )
    decision = raw.get("decision_id")
    return Prepared(
        index=index,
        event_id=uuid.UUID(raw["event_id"]),
        type=raw["type"],
        purpose=purpose,
        visitor_id=raw["visitor_id"],
        session_id=raw["session_id"],
        timestamp=ts,
        decision_id=uuid.UUID(decision) if decision else None,
        properties=props,
        context=raw.get("context") or {},
    )


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _type_label(raw: Any) -> str:
    """The type a quarantined event is filed and counted under: its name when it is a
    well-formed type name, else "(invalid)" (what the sender wrote stays in the payload)."""
    value = raw.get("type") if isinstance(raw, dict) else None
    return value if event_schemas.type_name_valid(value) else "(invalid)"


def _gate(
    prop: Property,
    prepared: list[Prepared],
    result: IngestResult,
    fates: Counter[tuple[str, str]],
) -> tuple[list[Prepared], list[Prepared]]:
    """The consent gate: (events to store, events dropped for lack of consent)."""
    visitor_ids = {p.visitor_id for p in prepared}
    consents = consent_selectors.consents_effective(prop.pk, visitor_ids)
    to_store: list[Prepared] = []
    dropped: list[Prepared] = []
    seen: set[uuid.UUID] = set()
    for p in prepared:
        if not consents[p.visitor_id].allows(p.purpose):
            result.dropped_no_consent += 1
            fates[(p.type, Fate.DROPPED_NO_CONSENT)] += 1
            dropped.append(p)
        elif p.event_id in seen:
            result.duplicates += 1
            fates[(p.type, Fate.DUPLICATE)] += 1
        else:
            seen.add(p.event_id)
            to_store.append(p)
    return to_store, dropped


def _persist(
    prop: Property,
    to_store: list[Prepared],
    now: datetime,
    result: IngestResult,
    fates: Counter[tuple[str, str]],
) -> None:
    """Store new events, count the rest as duplicates, fold signals. Inside a transaction."""
    if not to_store:
        return
    stored, visitors = _store(prop, to_store, now)
    result.stored_ids = [p.event_id for p in stored]
    result.accepted += len(stored)
    result.duplicates += len(to_store) - len(stored)
    stored_set = set(result.stored_ids)
    for p in to_store:
        fates[(p.type, Fate.ACCEPTED if p.event_id in stored_set else Fate.DUPLICATE)] += 1
    _fold_signals(prop, stored, visitors)


def _count_fates(prop: Property, fates: Counter[tuple[str, str]], now: datetime) -> None:
    hour = now.replace(minute=0, second=0, microsecond=0)
    rows = [
        {"property": prop.pk, "event_type": t, "hour": hour, "fate": f, "count": n}
        for (t, f), n in fates.items()
    ]
    increment_counters(IngestStat, rows, ["property", "event_type", "hour", "fate"], "count")


def _named(events: list[Any]) -> set[str]:
    """The well-formed visitor ids a batch names (what the envelope schema accepts)."""
    return {
        vid
        for e in events
        if isinstance(e, dict)
        and isinstance(vid := e.get("visitor_id"), str)
        and 1 <= len(vid) <= event_schemas.MAX_ID
    }


def events_ingest(
    *,
    prop: Property,
    events: list[Any],
    gpc: bool = False,
    ip: str | None = None,
    now: datetime | None = None,
) -> IngestResult:
    now = now or timezone.now()
    # (Only well-formed names: the envelope refuses the others before any lookup.)
    names = {
        e["type"]
        for e in events
        if isinstance(e, dict) and event_schemas.type_name_valid(e.get("type"))
    }
    book = TypeBook(prop, names)
    result = IngestResult()
    fates: Counter[tuple[str, str]] = Counter()
    prepared: list[Prepared] = []
    rejected: list[Rejected] = []
    with schema_patterns.batch_budget(len(events)):
        for index, raw in enumerate(events):
            item = _prepare(index, raw, book, prop, now)
            if isinstance(item, Prepared):
                prepared.append(item)
            else:
                rejected.append(item)
    if gpc:
        # Every visitor the request names, their invalid events' too (docs/CONTRACT.md: a request
        # carrying Sec-GPC records the opt-out), before the gate reads consent.
        consent_services.gpc_apply(property_id=prop.pk, visitor_ids=_named(events), ip=ip)
    to_store, _ = _gate(prop, prepared, result, fates)
    rejected = _drop_suppressed(prop, rejected, result, fates)

    def store() -> IngestResult:
        attempt, counts = copy.deepcopy(result), fates.copy()
        _quarantine(prop, rejected, now, attempt, counts)
        _persist(prop, to_store, now, attempt, counts)
        _count_fates(prop, counts, now)
        return attempt

    return atomic_retrying(store)


@dataclass
class ReplayResult:
    stored: int = 0
    duplicates: int = 0
    still_quarantined: int = 0
    dropped_no_consent: int = 0


def quarantine_replay(*, prop: Property, ids: list[int]) -> ReplayResult:
    """Re-run quarantined events through validation, the consent gate and storage.

    Each one is then stored (and marked replayed), found already stored (marked
    replayed), dropped for lack of consent (removed), or stays quarantined with
    its new error.
    """
    now = timezone.now()
    rows = {
        q.pk: q
        for q in QuarantinedEvent.objects.filter(
            property=prop, pk__in=ids, status=QuarantineStatus.QUARANTINED
        )
    }
    names = {q.payload.get("type") for q in rows.values() if isinstance(q.payload.get("type"), str)}
    book = TypeBook(prop, {n for n in names if n})
    prepared: list[Prepared] = []
    failed: list[QuarantinedEvent] = []
    with schema_patterns.batch_budget(len(rows)):
        for pk, q in rows.items():
            item = _prepare(pk, q.payload, book, prop, now)
            if isinstance(item, Prepared):
                prepared.append(item)
            else:
                q.errors = [item.error]
                q.replay_attempts += 1
                failed.append(q)
    result = IngestResult()
    fates: Counter[tuple[str, str]] = Counter()
    to_store, dropped = _gate(prop, prepared, result, fates)
    with transaction.atomic():
        _persist(prop, to_store, now, result, fates)
        QuarantinedEvent.objects.bulk_update(failed, ["errors", "replay_attempts"])
        replayed = [p.index for p in to_store]
        QuarantinedEvent.objects.filter(pk__in=replayed).update(
            status=QuarantineStatus.REPLAYED, replayed_at=now, errors=[]
        )
        QuarantinedEvent.objects.filter(pk__in=[p.index for p in dropped]).delete()
        _count_fates(prop, fates, now)
    return ReplayResult(
        stored=result.accepted,
        duplicates=result.duplicates,
        still_quarantined=len(failed),
        dropped_no_consent=result.dropped_no_consent,
    )


def _drop_suppressed(
    prop: Property,
    rejected: list[Rejected],
    result: IngestResult,
    fates: Counter[tuple[str, str]],
) -> list[Rejected]:
    """An erased or opted-out visitor's invalid events are not kept either: quarantine
    would store the raw id the erasure removed."""
    ids = {
        r.raw["visitor_id"]
        for r in rejected
        if isinstance(r.raw, dict) and isinstance(r.raw.get("visitor_id"), str)
    }
    suppressed = consent_selectors.suppressed_visitors(prop.pk, ids) if ids else set()
    if not suppressed:
        return rejected
    kept = []
    for r in rejected:
        if isinstance(r.raw, dict) and r.raw.get("visitor_id") in suppressed:
            result.dropped_no_consent += 1
            fates[(_type_label(r.raw), Fate.DROPPED_NO_CONSENT)] += 1
        else:
            kept.append(r)
    return kept


def _quarantine(
    prop: Property,
    rejected: list[Rejected],
    now: datetime,
    result: IngestResult,
    fates: Counter[tuple[str, str]],
) -> None:
    rows: list[dict[str, Any]] = []
    in_batch: set[uuid.UUID] = set()
    for r in rejected:
        raw = r.raw if isinstance(r.raw, dict) else {"value": r.raw}
        event_id = _uuid_or_none(raw.get("event_id"))
        visitor = raw.get("visitor_id")
        result.errors.append(
            {"index": r.index, "event_id": raw.get("event_id") if event_id else None, **r.error}
        )
        if event_id is not None and event_id in in_batch:
            result.duplicates += 1
            fates[(_type_label(raw), Fate.DUPLICATE)] += 1
            continue
        if event_id is not None:
            in_batch.add(event_id)
        rows.append(
            {
                "property": prop.pk,
                "event_id": event_id,
                "event_type": _type_label(raw),
                "visitor_id": visitor[:128] if isinstance(visitor, str) else "",
                "payload": raw,
                "errors": [r.error],
                "status": "quarantined",
                "received_at": now,
                "replay_attempts": 0,
            }
        )
    inserted = set(
        insert_returning_new(QuarantinedEvent, rows, ["property", "event_id"], "event_id")
    )
    for row in rows:
        # A retried batch carries the same bad event again: it is already kept once.
        if row["event_id"] is None or row["event_id"] in inserted:
            result.quarantined += 1
            fates[(row["event_type"], Fate.QUARANTINED)] += 1
        else:
            result.duplicates += 1
            fates[(row["event_type"], Fate.DUPLICATE)] += 1


def _store(
    prop: Property, items: list[Prepared], now: datetime
) -> tuple[list[Prepared], dict[str, VisitorRow]]:
    rows = [
        {
            "property": prop.pk,
            "event_id": p.event_id,
            "type": p.type,
            "visitor_id": p.visitor_id,
            "session_id": p.session_id,
            "timestamp": p.timestamp,
            "received_at": now,
            "decision_id": p.decision_id,
            "properties": p.properties,
            "context": p.context,
        }
        for p in items
    ]
    # Lock the visitors first: concurrent batches of one visitor fold signals in turn.
    visitors = _visitors_locked(prop, items)
    new_ids = set(insert_returning_new(Event, rows, ["property", "event_id"], "event_id"))
    return [p for p in items if p.event_id in new_ids], visitors


def _visitors_locked(prop: Property, items: list[Prepared]) -> dict[str, VisitorRow]:
    """Create missing visitors and lock all of the batch's visitors, in sorted order."""
    fresh = visitor_state.visitor_new()
    seen: dict[str, tuple[datetime, datetime]] = {}
    for p in items:
        first, last = seen.get(p.visitor_id, (p.timestamp, p.timestamp))
        seen[p.visitor_id] = (min(first, p.timestamp), max(last, p.timestamp))
    rows = upsert_locked(
        Visitor,
        [
            {
                "property": prop.pk,
                "visitor_id": vid,
                "first_seen": seen[vid][0],
                "last_seen": seen[vid][1],
                "state": fresh,
            }
            for vid in sorted(seen)
        ],
        conflict=["property", "visitor_id"],
        touch="last_seen",
        returning=["id", "visitor_id", "state", "first_seen", "last_seen"],
    )
    return {
        vid: VisitorRow(
            pk, vid, from_db_json(state), from_db_datetime(first), from_db_datetime(last)
        )
        for pk, vid, state, first, last in rows
    }


@dataclass
class SessionRow:
    pk: int | None
    visitor_pk: int
    session_id: str
    started_at: datetime
    last_event_at: datetime
    ended_at: datetime | None
    state: dict


def _fold_signals(prop: Property, stored: list[Prepared], visitors: dict[str, VisitorRow]) -> None:
    """Fold stored events into sessions and visitors, in timestamp order."""
    if not stored:
        return
    visitors = {p.visitor_id: visitors[p.visitor_id] for p in stored}
    by_pk = {v.pk: v for v in visitors.values()}
    current: dict[tuple[int, str], SessionRow] = {}
    rows = (
        Session.objects.filter(
            visitor_id__in=list(by_pk), session_id__in={p.session_id for p in stored}
        )
        .order_by("visitor_id", "session_id", "-started_at")
        .values_list(
            "pk", "visitor_id", "session_id", "started_at", "last_event_at", "ended_at", "state"
        )
    )
    for row in rows:
        current.setdefault((row[1], row[2]), SessionRow(*row))
    # Which row of each (visitor, session id) a decision reads: the latest started.
    latest: dict[tuple[int, str], list[SessionRow]] = {k: [v] for k, v in current.items()}

    timeout = settings.SESSION_TIMEOUT_SECONDS
    new_sessions: list[SessionRow] = []
    touched: dict[int, SessionRow] = {}
    for p in sorted(stored, key=lambda e: e.timestamp):
        visitor = visitors[p.visitor_id]
        key = (visitor.pk, p.session_id)
        session = current.get(key)
        if (
            session is None
            or session.ended_at is not None
            or visitor_state.session_expired(session.last_event_at, p.timestamp, timeout)
        ):
            session = SessionRow(
                pk=None,
                visitor_pk=visitor.pk,
                session_id=p.session_id,
                started_at=p.timestamp,
                last_event_at=p.timestamp,
                ended_at=None,
                state=visitor_state.session_new(p.timestamp, p.context),
            )
            visitor_state.visitor_open_session(visitor.state, session.state, p.timestamp)
            current[key] = session
            new_sessions.append(session)
            latest.setdefault(key, []).append(session)
        elif session.pk is not None:
            touched[session.pk] = session
        visitor_state.apply_event(
            visitor.state, session.state, p.type, p.timestamp, p.properties, p.context
        )
        session.started_at = min(session.started_at, p.timestamp)
        session.last_event_at = max(session.last_event_at, p.timestamp)
        if p.type == "session_end":
            session.ended_at = p.timestamp
        visitor.first_seen = min(visitor.first_seen, p.timestamp)
        visitor.last_seen = max(visitor.last_seen, p.timestamp)

    insert_rows(
        Session,
        [
            {
                "property": prop.pk,
                "visitor": s.visitor_pk,
                "session_id": s.session_id,
                "started_at": s.started_at,
                "last_event_at": s.last_event_at,
                "ended_at": s.ended_at,
                "state": s.state,
            }
            for s in new_sessions
        ],
    )
    update_rows(
        Session,
        [
            {
                "pk": s.pk,
                "started_at": s.started_at,
                "last_event_at": s.last_event_at,
                "ended_at": s.ended_at,
                "state": s.state,
            }
            for s in touched.values()
        ],
        ["started_at", "last_event_at", "ended_at", "state"],
    )
    # Each fold is a new revision of the visitor's state (under the visitor's row lock, so
    # revisions follow the commits): the decision engine's copy in Redis is versioned by it.
    for v in visitors.values():
        v.state["rev"] = int(v.state.get("rev", 0)) + 1
    update_rows(
        Visitor,
        [
            {"pk": v.pk, "state": v.state, "first_seen": v.first_seen, "last_seen": v.last_seen}
            for v in visitors.values()
        ],
        ["state", "first_seen", "last_seen"],
    )
    _signals_copy(prop, visitors, latest)


def _signals_copy(
    prop: Property,
    visitors: dict[str, "VisitorRow"],
    latest: dict[tuple[int, str], list[SessionRow]],
) -> None:
    """Drop the engine's copies of these visitors' signals now, and write the committed
    states after the commit (personalization/hotstate/)."""
    by_pk = {v.pk: v for v in visitors.values()}
    states: dict[str, tuple[int, dict, dict[str, dict]]] = {
        v.visitor_id: (v.state["rev"], v.state, {}) for v in visitors.values()
    }
    for (visitor_pk, session_id), rows in latest.items():
        if visitor_pk not in by_pk:
            continue
        first = max(rows, key=lambda r: r.started_at)
        if sum(1 for r in rows if r.started_at == first.started_at) == 1:
            # (Two rows started at the same instant: which one a query returns is not
            # defined, so none is copied; a decision reads it from the database.)
            states[by_pk[visitor_pk].visitor_id][2][session_id] = first.state
    hotstate.signals_changed(prop.pk, states)
    transaction.on_commit(lambda: hotstate.signals_write(prop.pk, states))
