"""The visitor's state and the decision log, behind one interface with two back-ends.

A decision reads the visitor's consent, live signals, rule counters and session budget, and
ends by applying its winners (counting caps and cooldowns, taking budget units, remembering
sticky slots) together with its log entry — all or nothing: an adjustment that cannot be
logged is not made. :class:`VisitorState` does this on the database (SQL reads; counters,
budget and log in one transaction); :class:`RedisState` on Redis (one pipelined read; one
Lua script counting and queueing the log entry), falling back to the database when Redis
does not answer. :func:`open_state` picks the back-end for a decision.

A subclass is the seam for a benchmark or a test that needs other loaders or writes
(``decide(..., state=...)``).
"""

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import DatabaseError, transaction

from consent import selectors as consent_selectors
from consent.hashing import visitor_key
from consent.selectors import EffectiveConsent

from .. import guard_rails, hotstate
from ..db import (
    from_db_json,
    insert_with_children,
    rule_counter_apply,
    rule_counter_verdict,
    update_rows,
    upsert_locked,
)
from ..models import Adjustment, Property, RuleCounter, SessionBudget
from ..models import Decision as DecisionRow
from ..ruleset import CompiledRule
from ..selectors import visitor_signals_get, visitor_states_get
from ..visitor_state import signals_for
from .answers import DecideRequest, ModelWin
from .content import all_defaults, default_answer
from .context import Decision

logger = logging.getLogger(__name__)


class VisitorState:
    """The database back-end: the visitor's state read by SQL, the outcome applied and
    logged in one transaction."""

    def visitor(self, d: Decision) -> tuple[EffectiveConsent, dict | None]:
        """The consent in force and the live signals (None for a suppressed visitor)."""
        request = d.request
        consent = consent_selectors.consent_effective(d.prop.pk, request.visitor_id)
        if consent.suppressed:
            return consent, None
        return consent, visitor_signals_get(d.prop, request.visitor_id, request.session_id, d.now)

    def counters(self, d: Decision, rules: list[CompiledRule]) -> tuple[dict[int, Any], Any]:
        """The visitor's counters for ``rules`` (by rule id) and the session's budget."""
        request = d.request
        budget = SessionBudget.objects.filter(
            property=d.prop, visitor_id=request.visitor_id, session_id=request.session_id
        ).first()
        if not rules:
            return {}, budget
        rows = RuleCounter.objects.filter(
            property=d.prop, visitor_id=request.visitor_id, rule_id__in=[r.id for r in rules]
        )
        return {c.rule_id: c for c in rows}, budget

    def apply_and_log(self, d: Decision) -> None:
        """Count the winners and write the log in one transaction. When the database fails
        the savepoint rolls back counters and budget with the log: nothing is applied, every
        slot gets its default and the decision is not logged."""
        try:
            with transaction.atomic():
                self.apply_and_log_in_transaction(d)
        except DatabaseError:
            logger.exception("decision %s not logged; serving defaults", d.result.decision_id)
            all_defaults(d)
            d.result.logged = False

    def apply_and_log_in_transaction(self, d: Decision) -> None:
        if d.winners:
            request, counters = d.request, d.counters
            assert counters is not None
            blocked = db_apply(
                property_id=d.prop.pk,
                visitor_id=request.visitor_id,
                session_id=request.session_id,
                now=d.now,
                day_key=counters.day_key,
                week_key=counters.week_key,
                limit=d.limit,
                winners=winners(d),
            )
            for slot_key, reason in blocked.items():
                lost_race(d, slot_key, reason)
        decision_row, answers = log_rows(d)
        # The decision and its answers in one statement (one round trip on PostgreSQL).
        insert_with_children(DecisionRow, decision_row, Adjustment, answers, fk="decision")


class RedisState(VisitorState):
    """The Redis back-end: ``hotstate``'s snapshot (consent, signals, counters and budget in
    one round trip; what it misses is read from the database and filled in) and its Lua
    apply, which counts and queues the log entry all or nothing."""

    def __init__(self, snapshot: hotstate.Snapshot, keyed: str) -> None:
        self.snapshot = snapshot
        self.keyed = keyed

    def visitor(self, d: Decision) -> tuple[EffectiveConsent, dict | None]:
        prop, request, snap = d.prop, d.request, self.snapshot
        fill_consent: Any = hotstate.MISSING
        fill_signals: Any = hotstate.MISSING
        row = snap.consent
        if row is hotstate.MISSING:
            row = fill_consent = consent_selectors.latest_rows(prop.pk, [self.keyed])[self.keyed]
        consent = consent_selectors.consent_effective_from_row(prop.pk, row)
        signals = None
        if not consent.suppressed:
            states = snap.signals
            if states is hotstate.MISSING:
                states = fill_signals = visitor_states_get(
                    prop.pk, request.visitor_id, request.session_id
                )
            signals = signals_for(states[1], states[2], d.now)
        hotstate.fill(
            prop.pk,
            request.visitor_id,
            request.session_id,
            self.keyed,
            prop.hot_epoch,
            consent=fill_consent,
            signals=fill_signals,
        )
        return consent, signals

    def counters(self, d: Decision, rules: list[CompiledRule]) -> tuple[dict[int, Any], Any]:
        return self.snapshot.state()

    def apply_and_log(self, d: Decision) -> None:
        """Redis first; the database when Redis does not answer."""
        if not self.apply_and_log_hot(d):
            super().apply_and_log(d)

    def apply_and_log_hot(self, d: Decision) -> bool:
        """Count the winners and queue the log entry in Redis, all or nothing. A winner that
        a concurrent decision blocked falls back to its default and the rest is tried again.
        False when Redis does not answer."""
        request, counters = d.request, d.counters
        assert counters is not None
        while True:
            decision_row, answers = log_rows(d)
            decision_row["decision_id"] = str(d.result.decision_id)
            decision_row["created_at"] = d.now.isoformat()
            for row in answers:
                del row["created_at"]
            try:
                blocked = hotstate.apply_and_log(
                    property_id=d.prop.pk,
                    visitor_id=request.visitor_id,
                    session_id=request.session_id,
                    now=d.now,
                    day_key=counters.day_key,
                    week_key=counters.week_key,
                    limit=d.limit,
                    winners=winners(d),
                    entry=hotstate.log_entry(decision_row, answers),
                )
            except hotstate.Unavailable:
                return False
            if not blocked:
                return True
            for slot_key, reason in blocked.items():
                lost_race(d, slot_key, reason)


def open_state(prop: Property, request: DecideRequest) -> VisitorState:
    """Redis's snapshot when Redis is configured and answers; else the database."""
    if hotstate.client() is None:
        return VisitorState()
    keyed = visitor_key(prop.pk, request.visitor_id)
    try:
        snap = hotstate.snapshot(
            prop.pk, request.visitor_id, request.session_id, keyed, prop.hot_epoch
        )
    except hotstate.Unavailable:
        return VisitorState()
    return RedisState(snap, keyed)


def lost_race(d: Decision, slot_key: str, reason: str) -> None:
    """A concurrent decision took the winner's last cap or budget unit: the slot falls back
    to its default (a firing in the page: the page keeps what it shows, nothing is logged
    as served), and the winner is listed as suppressed."""
    rule = d.winners.pop(slot_key)
    kind = "model" if isinstance(rule, ModelWin) else "rule"
    d.suppress(slot_key, f"{kind}:{rule.key}", reason)
    if d.trigger == "page":
        del d.result.answers[slot_key]
    else:
        d.result.answers[slot_key] = default_answer(d, slot_key)


def sticky_entry(rule: CompiledRule | ModelWin) -> dict[str, Any]:
    """What a session remembers of the rule or model that adjusted a slot (stickiness)."""
    entry: dict[str, Any] = {
        "rule_id": None if isinstance(rule, ModelWin) else rule.id,
        "key": rule.key,
        "version": rule.version,
        "variant": rule.variant,
        "priority": rule.priority,
    }
    if isinstance(rule, ModelWin):
        entry["model"] = rule.key
    return entry


def winners(d: Decision) -> list[hotstate.Winner]:
    return [
        hotstate.Winner(
            slot_key,
            rule.id,
            rule.cooldown_s,
            rule.cap_session,
            rule.cap_day,
            rule.cap_week,
            sticky_entry(rule),
        )
        for slot_key, rule in d.winners.items()
    ]


def db_apply(
    *,
    property_id: int,
    visitor_id: str,
    session_id: str,
    now: datetime,
    day_key: str,
    week_key: str,
    limit: int | None,
    winners: Sequence[hotstate.Winner],
) -> dict[str, str]:
    """The database's counterpart of ``hotstate.apply_and_log``'s counting, inside the
    caller's transaction: count each winner unless the guard rails (``guard_rails``) refuse
    it now, budget first. Returns the refused winners (slot → reason); the others are
    counted, their unit of the session's budget taken and their slots made sticky.

    Exact under concurrency: the session's budget row is created-or-locked first (decisions
    of one session take turns), and each rule's counters are taken by one conditional
    upsert (``db.rule_counter_apply``)."""
    ((budget_pk, used, sticky_raw),) = upsert_locked(
        SessionBudget,
        [
            {
                "property": property_id,
                "visitor_id": visitor_id,
                "session_id": session_id,
                "adjustments": 0,
                "sticky": {},
                "revision": 0,
                "updated_at": now,
            }
        ],
        conflict=["property", "visitor_id", "session_id"],
        touch="updated_at",
        returning=["id", "adjustments", "sticky"],
    )
    sticky = from_db_json(sticky_raw)
    blocked: dict[str, str] = {}
    for w in winners:
        spent = guard_rails.budget_verdict(used, limit)
        reason = spent
        if isinstance(w.rule_id, int):  # (a model's answer "m:<key>": only the budget)
            # The rule's cooldown and caps first, then the budget (guard_rails.step): with
            # the budget spent, only their verdict is read, nothing is counted.
            take = rule_counter_verdict if spent else rule_counter_apply
            reason = (
                take(
                    property_id=property_id,
                    visitor_id=visitor_id,
                    rule_id=w.rule_id,
                    session_key=session_id,
                    day_key=day_key,
                    week_key=week_key,
                    now=now,
                    rails=guard_rails.GuardRails.of(w),
                )
                or spent
            )
        if reason is not None:
            blocked[w.slot] = reason
            continue
        used += 1
        sticky[w.slot] = w.sticky
    update_rows(
        SessionBudget,
        [{"pk": budget_pk, "adjustments": used, "sticky": sticky, "updated_at": now}],
        ["adjustments", "sticky", "updated_at"],
    )
    return blocked


def log_rows(d: Decision) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The decision's log row and its answers' rows, keyed by field name."""
    request, result, now, attributes = d.request, d.result, d.now, d.attributes
    assert d.consent is not None
    decision_row = dict(
        decision_id=result.decision_id,
        property=d.prop.pk,
        visitor_id=request.visitor_id,
        session_id=request.session_id,
        created_at=now,
        personalized=any(not a.is_default for a in result.answers.values()),
        holdout=result.holdout,
        consent_record_id=d.consent.record_id,
        signals=(
            {"page": d.page_signals}
            if d.page_signals is not None
            else {
                "session": attributes["session"],
                "visitor": attributes["visitor"],
                "segments": attributes["segments"],
            }
        ),
        context=request.context,
        suppressed=result.suppressed,
        trigger=d.trigger,
        parent_decision_id=d.parent_decision_id,
    )
    answers = [
        dict(
            property=d.prop.pk,
            visitor_id=request.visitor_id,
            session_id=request.session_id,
            created_at=now,
            slot_key=a.slot,
            variant_key=a.variant,
            source_kind=str(a.kind),
            source_key=a.key,
            source_version=a.version,
            is_default=a.is_default,
        )
        for a in result.answers.values()
    ]
    return decision_row, answers
