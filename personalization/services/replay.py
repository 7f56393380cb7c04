"""Replay a rule over stored events: what would it have done over the last days?

Each visitor's signals are rebuilt event by event, as they stood at each moment (not
their final values), and the rule is evaluated at every page view — the moment a
storefront asks for a decision. Cooldowns and caps are simulated with in-memory
counters; other active rules of the same slot that would also have matched are counted
as conflicts.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from .. import visitor_state
from ..conditions import compile_condition
from ..models import Event, Rule, RuleStatus

MAX_EVENTS = 200_000


@dataclass
class ReplayReport:
    days: int
    events: int = 0
    sessions: int = 0
    decision_points: int = 0
    sessions_matched: int = 0
    applications: int = 0
    suppressed: Counter[str] = field(default_factory=Counter)
    conflicts: Counter[str] = field(default_factory=Counter)
    truncated: bool = False


def rule_replay(*, rule: Rule, days: int = 7, now: datetime | None = None) -> ReplayReport:
    now = now or timezone.now()
    report = ReplayReport(days=days)
    condition = compile_condition(rule.condition)
    others = [
        (r.key, compile_condition(r.condition))
        for r in Rule.objects.filter(
            property_id=rule.property_id, slot_id=rule.slot_id, status=RuleStatus.ACTIVE
        ).exclude(pk=rule.pk)
    ]
    timeout = timedelta(seconds=settings.SESSION_TIMEOUT_SECONDS)
    events = (
        Event.objects.filter(
            property_id=rule.property_id, timestamp__gte=now - timedelta(days=days)
        )
        .order_by("visitor_id", "timestamp")
        .values_list("visitor_id", "session_id", "type", "timestamp", "properties", "context")
    )
    visitor_key = None
    v_state: dict = {}
    s_state: dict | None = None
    session_id = None
    last_ts: datetime | None = None
    matched_session = False
    applied: list[datetime] = []
    session_count = 0
    for n, (vid, sid, kind, ts, props, context) in enumerate(events.iterator(chunk_size=5000)):
        if n >= MAX_EVENTS:
            report.truncated = True
            break
        report.events += 1
        if vid != visitor_key:
            visitor_key, v_state, s_state, applied = vid, visitor_state.visitor_new(), None, []
        new_session = (
            s_state is None or sid != session_id or (last_ts is not None and ts - last_ts > timeout)
        )
        if new_session:
            report.sessions += 1
            if matched_session:
                report.sessions_matched += 1
            matched_session = False
            session_count = 0
            session_id = sid
            s_state = visitor_state.session_new(ts, context or {})
            visitor_state.visitor_open_session(v_state, s_state, ts)
        assert s_state is not None
        visitor_state.apply_event(v_state, s_state, kind, ts, props or {}, context or {})
        last_ts = ts
        if kind != "page_view":
            continue
        report.decision_points += 1
        attrs = {
            **((context or {}).get("attributes") or {}),
            "id": vid,
            "url": (context or {}).get("url", ""),
            "context": context or {},
            **visitor_state.signals_for(v_state, s_state, ts),
        }
        if not condition(attrs):
            continue
        matched_session = True
        for key, other in others:
            if other(attrs):
                report.conflicts[key] += 1
        reason = _blocked(rule, applied, session_count, ts)
        if reason:
            report.suppressed[reason] += 1
            continue
        report.applications += 1
        applied.append(ts)
        session_count += 1
    if matched_session:
        report.sessions_matched += 1
    return report


def _blocked(rule: Rule, applied: list[datetime], session_count: int, ts: datetime) -> str | None:
    if (
        applied
        and rule.cooldown_seconds
        and ts - applied[-1] < timedelta(seconds=rule.cooldown_seconds)
    ):
        return "cooldown"
    if rule.cap_per_session is not None and session_count >= rule.cap_per_session:
        return "frequency_cap"
    if rule.cap_per_day is not None and (
        sum(1 for t in applied if t.date() == ts.date()) >= rule.cap_per_day
    ):
        return "frequency_cap"
    if rule.cap_per_week is not None and (
        sum(1 for t in applied if t.isocalendar()[:2] == ts.isocalendar()[:2]) >= rule.cap_per_week
    ):
        return "frequency_cap"
    return None
