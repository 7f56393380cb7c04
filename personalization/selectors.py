"""Reads of the core domain used by other apps (the dashboards)."""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Count, Prefetch, QuerySet, Sum
from django.utils import timezone

from .db import from_db_json
from .models import (
    Fate,
    IngestStat,
    LiveFiring,
    Property,
    Session,
    Survey,
    SurveyQuestion,
    Visitor,
)
from .visitor_state import signals_for


@dataclass
class FateRow:
    property_name: str
    event_type: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(Fate.values, 0))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def problem_share(self) -> float:
        bad = self.counts[Fate.QUARANTINED]
        return bad / self.total if self.total else 0.0


def ingest_fates(properties: QuerySet[Property], since: datetime) -> list[FateRow]:
    """Counts of each fate per property and event type since a time, from the hourly rollup."""
    rows: dict[tuple[str, str], FateRow] = {}
    query = (
        IngestStat.objects.filter(property__in=properties, hour__gte=since)
        .values("property__name", "event_type", "fate")
        .annotate(n=Sum("count"))
        .order_by("property__name", "event_type")
    )
    for item in query:
        key = (item["property__name"], item["event_type"])
        row = rows.setdefault(key, FateRow(*key))
        row.counts[item["fate"]] = item["n"]
    return list(rows.values())


def visitor_states_get(
    property_id: int, visitor_id: str, session_id: str | None = None
) -> tuple[int, dict | None, dict | None]:
    """The stored live-signal states of a visitor and of their session (the latest one with
    that id; without an id, their latest), in one round trip, with the visitor state's
    revision (0 before any event was folded into it: the same signals as no visitor)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT v.state, s.state FROM personalization_visitor v "
                "LEFT JOIN LATERAL (SELECT state FROM personalization_session "
                "WHERE visitor_id = v.id AND (%s::text IS NULL OR session_id = %s::text) "
                "ORDER BY started_at DESC LIMIT 1) s ON true "
                "WHERE v.property_id = %s AND v.visitor_id = %s",
                [session_id, session_id, property_id, visitor_id],
            )
            row = cursor.fetchone()
        if row is None:
            return 0, None, None
        visitor_state = from_db_json(row[0])
        session_state = from_db_json(row[1]) if row[1] is not None else None
    else:
        visitor = Visitor.objects.filter(property_id=property_id, visitor_id=visitor_id).first()
        if visitor is None:
            return 0, None, None
        sessions = Session.objects.filter(visitor=visitor)
        if session_id is not None:
            sessions = sessions.filter(session_id=session_id)
        session = sessions.order_by("-started_at").first()
        visitor_state, session_state = visitor.state, session.state if session else None
    return int(visitor_state.get("rev", 0)), visitor_state, session_state


def visitor_signals_get(
    prop: Property, visitor_id: str, session_id: str | None = None, now: datetime | None = None
) -> dict:
    """The live signals of a visitor (and of their current session) as conditions read them."""
    _, visitor_state, session_state = visitor_states_get(prop.pk, visitor_id, session_id)
    return signals_for(visitor_state, session_state, now or timezone.now())


def survey_active(property_id: int, key: str) -> Survey | None:
    """An active survey of the property with its questions in order (two queries)."""
    return (
        Survey.objects.filter(property_id=property_id, key=key, active=True)
        .prefetch_related(
            Prefetch("questions", queryset=SurveyQuestion.objects.order_by("order", "id"))
        )
        .first()
    )


def survey_public(survey: Survey) -> dict[str, Any]:
    """What the storefront reads to render a survey. NPS and rating questions offer their
    scale as choices, so a client renders every closed question the same way."""
    return {
        "key": survey.key,
        "title": survey.title,
        "questions": [
            {
                "key": q.key,
                "type": q.type,
                "text": q.text,
                "choices": q.offered(),
                "required": q.required,
            }
            for q in survey.questions.all()
        ],
    }


@dataclass(frozen=True)
class LiveFirings:
    """How a live rule's plan entries fared in the pages: fired and applied, refused by
    reason, and the median time from the page-load decision to the firing."""

    applied: int
    refused: dict[str, int]
    median_seconds_to_fire: float | None


def live_firings(property_id: int, rule_key: str, since: datetime) -> LiveFirings:
    rows = LiveFiring.objects.filter(
        property_id=property_id, source_key=rule_key, created_at__gte=since
    )
    applied, refused = 0, dict[str, int]()
    for is_applied, reason, n in (
        rows.values_list("applied", "reason").annotate(n=Count("id")).order_by()
    ):
        if is_applied:
            applied += n
        else:
            refused[reason] = refused.get(reason, 0) + n
    times = sorted(t for t in rows.values_list("seconds_to_fire", flat=True) if t is not None)
    median = times[len(times) // 2] if times else None
    return LiveFirings(applied, dict(sorted(refused.items())), median)


def live_firings_by_rule(
    property_ids: Iterable[int], since: datetime, until: datetime
) -> list[tuple[str, int, int, float | None]]:
    """Per live rule, in a period: firings applied, refused, and the median seconds from
    the page-load decision to the firing (the dashboards' time to fire)."""
    applied: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    times: dict[str, list[float]] = {}
    rows = LiveFiring.objects.filter(
        property_id__in=list(property_ids), created_at__gte=since, created_at__lt=until
    ).values_list("source_key", "applied", "seconds_to_fire")
    for key, was_applied, seconds in rows.iterator(chunk_size=5000):
        (applied if was_applied else refused)[key] += 1
        if seconds is not None:
            times.setdefault(key, []).append(seconds)
    out = []
    for key in sorted(set(applied) | set(refused)):
        values = sorted(times.get(key, []))
        median = values[len(values) // 2] if values else None
        out.append((key, applied[key], refused[key], median))
    return out
