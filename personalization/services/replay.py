"""Replay a rule over stored events: what would it have done over the last days?

Each visitor's signals are rebuilt event by event, as they stood at each moment (not
their final values), and the rule is evaluated at every page view — the moment a
storefront asks for a decision. Cooldowns and caps are simulated with in-memory
counters; other active rules of the same slot that would also have matched are counted
as conflicts.

A live rule (its condition reads ``page.*``) is reduced at each page view by what the
server knew then, as decide does (``conditions.compile_partial``); what remains is then
evaluated, event by event until the next page view, on page signals *estimated* from the
recorded events — the stored events are not the tracker's live measurements, and the
report lists each estimate the rule's condition relied on (``PAGE_ESTIMATES``).
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from .. import visitor_state
from ..conditions import compile_condition, compile_partial, condition_paths
from ..models import Event, Rule, RuleFires, RuleStatus

MAX_EVENTS = 200_000

# How each page signal is estimated from the recorded events, and where that falls short.
PAGE_ESTIMATES = {
    "scroll_speed": "the speed the last scroll event recorded (speed_px_s), not the tracker's "
    "one-second window",
    "scroll_depth": "the deepest depth_pct the page view's scroll events recorded",
    "dwell_s": "seconds since the page view, whether or not the page was visible",
    "idle_s": "seconds between two recorded events (moves and keys are not recorded)",
    "section_visible_s": "the visible_ms of the page view's section_view events, summed",
    "clicks": "the page view's recorded click events",
    "rage_clicks": "not recorded: read as 0",
    "exit_intent": "not recorded: read as false",
    "activity_trend": "not recorded: missing (a clause on it does not hold)",
}


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
    # A live rule: how many applications fired in the page, when (seconds after the page
    # view, median), and the estimates its condition relied on.
    live: bool = False
    fired_in_page: int = 0
    median_seconds_to_fire: float | None = None
    approximations: list[str] = field(default_factory=list)


@dataclass
class _PageView:
    """A page view whose rule still waits on the page: what remains, and the estimates."""

    started: datetime
    residual: dict
    last_event: datetime
    page: dict[str, Any] = field(default_factory=dict)

    def observe(self, kind: str, ts: datetime, props: dict) -> None:
        page = self.page
        page["dwell_s"] = (ts - self.started).total_seconds()
        page["idle_s"] = (ts - self.last_event).total_seconds()
        self.last_event = ts
        if kind == "scroll":
            page["scroll_speed"] = props.get("speed_px_s", 0)
            page["scroll_depth"] = max(page.get("scroll_depth", 0), props.get("depth_pct", 0))
        elif kind == "click":
            page["clicks"] = page.get("clicks", 0) + 1
        elif kind == "section_view" and props.get("section"):
            seen = page.setdefault("section_visible_s", {})
            name = str(props["section"])
            seen[name] = seen.get(name, 0) + props.get("visible_ms", 0) / 1000


class _Replay:
    def __init__(self, rule: Rule, days: int) -> None:
        self.rule = rule
        self.report = ReplayReport(days=days)
        self.condition = compile_condition(rule.condition)
        reads = {p.split(".")[1] for p in condition_paths(rule.condition) if p.startswith("page.")}
        self.partial = compile_partial(rule.condition) if reads else None
        self.report.live = self.partial is not None or rule.fires == RuleFires.PAGE
        self.report.approximations = [
            f"page.{name}: {PAGE_ESTIMATES[name]}"
            for name in sorted(reads)
            if name in PAGE_ESTIMATES
        ]
        self.others = [
            (r.key, compile_condition(r.condition))
            for r in Rule.objects.filter(
                property_id=rule.property_id, slot_id=rule.slot_id, status=RuleStatus.ACTIVE
            ).exclude(pk=rule.pk)
        ]
        self.applied: list[datetime] = []
        self.session_count = 0
        self.matched_session = False
        self.waiting: _PageView | None = None
        self.times: list[float] = []

    def visitor(self) -> None:
        self.applied, self.waiting = [], None

    def session(self) -> None:
        self.report.sessions += 1
        if self.matched_session:
            self.report.sessions_matched += 1
        self.matched_session, self.session_count, self.waiting = False, 0, None

    def page_view(self, attrs: dict, ts: datetime) -> None:
        self.report.decision_points += 1
        self.waiting = None
        holds: Any = self.condition(attrs) if self.partial is None else self.partial(attrs)
        if holds is True and self.rule.fires == RuleFires.PAGE:
            holds = {}  # in the page only: fires once the page has loaded
        if holds is False:
            return
        if holds is not True and self.rule.fires != RuleFires.LOAD:
            self.waiting = _PageView(ts, holds, ts)
            self.page_event("page_view", ts, {})
            return
        if holds is True:
            self.apply(attrs, ts)

    def page_event(self, kind: str, ts: datetime, props: dict) -> None:
        """An event of a page view whose live rule waits: does the page part hold now?"""
        view = self.waiting
        if view is None:
            return
        view.observe(kind, ts, props)
        if compile_condition(view.residual)({"page": view.page}):
            self.waiting = None
            if self.apply({}, ts, conflicts=False):
                self.report.fired_in_page += 1
                self.times.append((ts - view.started).total_seconds())

    def apply(self, attrs: dict, ts: datetime, *, conflicts: bool = True) -> bool:
        self.matched_session = True
        if conflicts:
            for key, other in self.others:
                if other(attrs):
                    self.report.conflicts[key] += 1
        reason = _blocked(self.rule, self.applied, self.session_count, ts)
        if reason:
            self.report.suppressed[reason] += 1
            return False
        self.report.applications += 1
        self.applied.append(ts)
        self.session_count += 1
        return True

    def finish(self) -> ReplayReport:
        if self.matched_session:
            self.report.sessions_matched += 1
        if self.times:
            self.times.sort()
            self.report.median_seconds_to_fire = round(self.times[len(self.times) // 2], 1)
        return self.report


def rule_replay(*, rule: Rule, days: int = 7, now: datetime | None = None) -> ReplayReport:
    now = now or timezone.now()
    replay = _Replay(rule, days)
    report = replay.report
    timeout = timedelta(seconds=settings.SESSION_TIMEOUT_SECONDS)
    events = (
        Event.objects.filter(
            property_id=rule.property_id, timestamp__gte=now - timedelta(days=days)
        )
        .order_by("visitor_id", "timestamp")
        .values_list("visitor_id", "session_id", "type", "timestamp", "properties", "context")
    )
    visitor_id = None
    v_state: dict = {}
    s_state: dict | None = None
    session_id = None
    last_ts: datetime | None = None
    for n, (vid, sid, kind, ts, props, context) in enumerate(events.iterator(chunk_size=5000)):
        if n >= MAX_EVENTS:
            report.truncated = True
            break
        report.events += 1
        if vid != visitor_id:
            visitor_id, v_state, s_state = vid, visitor_state.visitor_new(), None
            replay.visitor()
        new_session = (
            s_state is None or sid != session_id or (last_ts is not None and ts - last_ts > timeout)
        )
        if new_session:
            replay.session()
            session_id = sid
            s_state = visitor_state.session_new(ts, context or {})
            visitor_state.visitor_open_session(v_state, s_state, ts)
        assert s_state is not None
        visitor_state.apply_event(v_state, s_state, kind, ts, props or {}, context or {})
        last_ts = ts
        if kind != "page_view":
            replay.page_event(kind, ts, props or {})
            continue
        attrs = {
            **((context or {}).get("attributes") or {}),
            "id": vid,
            "url": (context or {}).get("url", ""),
            "context": context or {},
            **visitor_state.signals_for(v_state, s_state, ts),
        }
        replay.page_view(attrs, ts)
    return replay.finish()


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
