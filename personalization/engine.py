"""The decision engine: the hottest path. Reads top to bottom:

load signals → candidates → filters → resolve → log.

Given a visitor, their session and the slots a page asks for, each slot gets an
answer: its default when nothing applies, when the visitor has not consented to
personalization, is in the holdout, or when anything fails. Candidates come from the
compiled rule set; cooldowns, frequency caps and the session budget filter them;
priority (then key) resolves each slot; session stickiness keeps what a slot already
showed (a sticky repeat, marked ``"sticky": true`` in the answer's source: not a new
application, so no cap, cooldown or budget unit counts it, and not listed as
suppressed). Every decision is logged — defaults included — with the signals it read,
the consent record in force and every suppressed candidate with its reason. An
adjustment that cannot be logged is not made.
"""

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import DatabaseError, transaction
from django.utils import timezone

from consent import selectors as consent_selectors
from consent import services as consent_services
from consent.hashing import visitor_key
from consent.selectors import EffectiveConsent

from . import bucketing, guard_rails, hotstate, live
from .attributes import CATALOGUE
from .db import (
    from_db_json,
    insert_with_children,
    rule_counter_apply,
    rule_counter_verdict,
    update_rows,
    upsert_locked,
)
from .exceptions import ApplicationError
from .models import Adjustment, Decision, Property, SessionBudget, Slot, SourceKind
from .ruleset import CompiledRule, CompiledSlot, RuleSet, ruleset_for
from .selectors import visitor_signals_get, visitor_states_get
from .signals import signals_for

logger = logging.getLogger(__name__)

# The guard rails' reasons are defined once, in guard_rails (re-exported here).
COOLDOWN = guard_rails.COOLDOWN
FREQUENCY_CAP = guard_rails.FREQUENCY_CAP
SESSION_BUDGET = guard_rails.SESSION_BUDGET
CONFLICT = "conflict"
CONSENT = "consent"
HOLDOUT = "holdout"


@dataclass(frozen=True)
class DecideRequest:
    visitor_id: str
    session_id: str
    slots: list[str]
    context: dict[str, Any] = field(default_factory=dict)
    gpc: bool = False
    ip: str | None = None


@dataclass
class SlotAnswer:
    slot: str
    variant: str
    content: dict
    kind: str = SourceKind.DEFAULT
    key: str = ""
    version: int | None = None
    priority: int = 0
    # A sticky repeat: the slot keeps what an earlier adjustment of this session showed.
    # Not a new application: no cap, cooldown or budget unit is taken for it.
    sticky: bool = False

    @property
    def is_default(self) -> bool:
        """A logged answer from no rule, experiment or rollout (a control is not a default)."""
        return self.kind == SourceKind.DEFAULT

    def source(self) -> dict[str, Any]:
        source: dict[str, Any] = {"kind": self.kind}
        if self.key:
            source["key"] = self.key
        if self.version is not None:
            source["version"] = self.version
        if self.sticky:
            source["sticky"] = True
        return source


@dataclass
class DecisionResult:
    decision_id: uuid.UUID
    personalized: bool
    answers: dict[str, SlotAnswer]
    suppressed: list[dict[str, str]]
    unknown_slots: list[str]
    holdout: bool = False
    logged: bool = True
    trace: list[str] = field(default_factory=list)
    # Whether the visitor grants personalization (not suppressed): without it every answer is
    # the slot's default (OFREP tells such a default apart: reason DISABLED).
    consented: bool = True

    def as_response(self) -> dict[str, Any]:
        return {
            "decision_id": str(self.decision_id),
            "personalized": self.personalized,
            "slots": {
                key: {"variant": a.variant, "content": a.content, "source": a.source()}
                for key, a in self.answers.items()
            },
            "suppressed": self.suppressed,
            "unknown_slots": self.unknown_slots,
        }


def in_holdout(prop: Property, visitor_id: str) -> bool:
    if prop.holdout_pct <= 0:
        return False
    n = bucketing.hash(f"holdout-{prop.pk}", visitor_id, 2)
    return n is not None and n < prop.holdout_pct / 100


def _calendar_keys(prop: Property, now: datetime) -> tuple[str, str]:
    return guard_rails.window_keys(now, prop.timezone)


@dataclass
class _Counters:
    session_key: str
    day_key: str
    week_key: str
    now: datetime
    rows: dict[int, Any]

    def block_reason(self, rule: CompiledRule) -> str | None:
        """The specification's verdict (``guard_rails.verdict``) on the rule's counters."""
        return guard_rails.verdict(
            guard_rails.GuardRails.of(rule),
            self.rows.get(rule.id),
            self.now,
            self.session_key,
            self.day_key,
            self.week_key,
        )


def _attributes(
    request: DecideRequest, signals: dict, ruleset: RuleSet, prop: Property, now: datetime
) -> dict[str, Any]:
    """What the conditions read: each provider of the attribute catalogue adds its part."""
    attributes: dict[str, Any] = {}
    for provide in CATALOGUE.provides:
        provide(attributes, request, signals, ruleset, prop, now)
    return attributes


def _matches(rule: CompiledRule, attributes: dict, ruleset: RuleSet) -> bool:
    if rule.metric_slots:
        metrics = attributes.get("slot", {})
        if any(metrics.get(s, {}).get("exposures", 0) < rule.min_sample for s in rule.metric_slots):
            return False
        if rule.require_interval:
            return all(
                rule.condition(live.with_interval_bound(attributes, bound), ruleset.saved_groups)
                for bound in ("ctr_low", "ctr_high")
            )
    return rule.condition(attributes, ruleset.saved_groups)


def _experiment_or_rollout(
    ruleset: RuleSet, slot_key: str, attributes: dict, visitor_id: str, now: datetime
) -> SlotAnswer | None:
    """The slot's running experiment (first whose condition holds and that buckets the
    visitor), else its active rollout that serves the visitor now."""
    for exp in ruleset.experiments_by_slot.get(slot_key, []):
        if exp.condition(attributes, ruleset.saved_groups):
            variant = exp.assign(visitor_id)
            if variant is not None:
                return SlotAnswer(
                    slot_key, variant, {}, SourceKind.EXPERIMENT, exp.key, None, exp.priority
                )
    for rollout in ruleset.rollouts_by_slot.get(slot_key, []):
        if rollout.serves(visitor_id, now):
            return SlotAnswer(
                slot_key,
                rollout.variant,
                {},
                SourceKind.ROLLOUT,
                rollout.key,
                None,
                rollout.priority,
            )
    return None


def _content(
    slot: CompiledSlot,
    variant: str,
    attributes: dict,
    ruleset: RuleSet,
    prop: Property,
    now: datetime,
) -> dict:
    spec = slot.variants.get(variant)
    if spec is None:
        return {}
    if not spec.strategy:
        return spec.content
    items: list[str] = []
    if spec.strategy == "trending":
        items = live.trending_items(prop.pk, now, spec.limit)
    elif spec.strategy == "recently_viewed":
        items = list(reversed(attributes["visitor"].get("items_viewed", [])))[: spec.limit]
    elif spec.strategy == "popular_in_segment":
        segments = attributes.get("segments") or []
        conditions = dict(ruleset.segments)
        if segments:
            items = live.popular_in_segment(
                prop.pk, segments[0], conditions[segments[0]], now, spec.limit
            )
        if not items:
            items = live.trending_items(prop.pk, now, spec.limit)
    return {**spec.content, "strategy": spec.strategy, "items": items}


def decide(
    prop: Property,
    request: DecideRequest,
    now: datetime | None = None,
    *,
    dry_run: bool = False,
) -> DecisionResult:
    """Decide and log. ``dry_run`` (the admin's "test against a visitor") changes nothing,
    logs nothing and explains every step in ``result.trace``.

    A slot always gets an answer (docs/CONTRACT.md): when anything inside fails — a bug, a model
    that cannot score, live content that cannot be read — every slot gets its default and
    the failure is logged. The database being down stays an error (a 503 with Retry-After),
    and so does a refused request."""
    now = now or timezone.now()
    try:
        return _decide(prop, request, now, dry_run=dry_run)
    except (DatabaseError, ApplicationError):
        raise
    except Exception as exc:
        logger.exception("decision for property %s failed; serving defaults", prop.pk)
        result = _static_defaults(prop, request)
        if dry_run:
            result.trace.append(f"the engine failed ({type(exc).__name__}: {exc}): defaults")
        return result


def _static_defaults(prop: Property, request: DecideRequest) -> DecisionResult:
    """Every known slot's default as stored (live content left empty); not logged. Read
    from the slots themselves, so this holds when compiling the rule set is what failed."""
    slots = list(dict.fromkeys(request.slots))
    defaults: dict[str, tuple[str, dict]] = {}
    for slot in Slot.objects.filter(property=prop, key__in=slots).prefetch_related("variants"):
        variant = next((v for v in slot.variants.all() if v.key == slot.default_variant), None)
        content: dict = {} if variant is None else dict(variant.content)
        if variant is not None and variant.strategy:
            content.update(strategy=variant.strategy, items=[])
        defaults[slot.key] = (slot.default_variant, content)
    return DecisionResult(
        decision_id=uuid.uuid4(),
        personalized=False,
        answers={k: SlotAnswer(k, *defaults[k]) for k in slots if k in defaults},
        suppressed=[],
        unknown_slots=[k for k in slots if k not in defaults],
        logged=False,
    )


# The one function over the complexity limit (33): the decision pipeline in stages, each a
# function over one decision context, is still to come (issue 16, part 1).
def _decide(  # noqa: C901
    prop: Property, request: DecideRequest, now: datetime, *, dry_run: bool
) -> DecisionResult:
    ruleset = ruleset_for(prop.pk)
    known = [s for s in dict.fromkeys(request.slots) if s in ruleset.slots]
    unknown = [s for s in dict.fromkeys(request.slots) if s not in ruleset.slots]
    result = DecisionResult(
        decision_id=uuid.uuid4(),
        personalized=False,
        answers={},
        suppressed=[],
        unknown_slots=unknown,
    )

    explain = result.trace.append if dry_run else None

    # 1. Load: consent, signals, holdout, counters and the session's budget.
    if request.gpc and not dry_run:
        consent_services.gpc_apply(
            property_id=prop.pk, visitor_ids=[request.visitor_id], ip=request.ip
        )
    loaded = _hot_load(prop, request, now)
    if loaded is None:
        consent = consent_selectors.consent_effective(prop.pk, request.visitor_id)
    else:
        consent, hot_signals, snap = loaded
    consented = consent.allows("personalization")
    result.consented = consented and not consent.suppressed
    if consent.suppressed:
        # An erased or opted-out visitor: defaults, and nothing stored that names them.
        _all_defaults(result, ruleset, known, {"visitor": {}, "segments": []}, prop, now)
        result.logged = False
        if explain:
            explain("visitor is on the suppression list (erased or opted out): defaults")
        return result
    if loaded is None or hot_signals is None:
        signals = visitor_signals_get(prop, request.visitor_id, request.session_id, now)
    else:
        signals = hot_signals
    attributes = _attributes(request, signals, ruleset, prop, now)
    holdout = in_holdout(prop, request.visitor_id)
    result.holdout = holdout
    if explain:
        explain(
            f"consent to personalization: {'yes' if consented else 'no'} "
            f"(policy v{consent.policy_version}, record {consent.record_id})"
        )
        explain(f"holdout ({prop.holdout_pct}% of visitors): {'yes' if holdout else 'no'}")
        explain(f"segments: {', '.join(attributes['segments']) or 'none'}")
    # Each slot's rules in their schedule now, worked out once per decision.
    live_by_slot = {
        s: [r for r in ruleset.rules_by_slot.get(s, []) if r.live_at(now)] for s in known
    }
    rules = [r for s in known for r in live_by_slot[s]]
    day_key, week_key = _calendar_keys(prop, now)
    hot = loaded is not None or hotstate.client() is not None
    rows: dict[int, Any] = {}
    budget: Any = None
    if consented and not holdout:
        if loaded is None:
            rows, budget, hot = _state_load(prop, request, rules)
        else:
            rows, budget = snap.state()  # type: ignore[assignment]
    counters = _Counters(
        session_key=request.session_id, day_key=day_key, week_key=week_key, now=now, rows=rows
    )
    sticky: dict[str, dict] = dict(budget.sticky) if budget and prop.session_stickiness else {}
    used = budget.adjustments if budget else 0
    limit = guard_rails.session_limit(prop.max_adjustments_per_session)

    # 2. Candidates, 3. filters, 4. resolution — per slot, in the order asked.
    winners: dict[str, CompiledRule | ModelWin] = {}
    for slot_key in known:
        slot = ruleset.slots[slot_key]
        live = live_by_slot[slot_key]
        candidates = [r for r in live if _matches(r, attributes, ruleset)]
        if explain:
            holding = {r.id for r in candidates}
            for r in ruleset.rules_by_slot.get(slot_key, []):
                state = "in schedule" if r.live_at(now) else "outside its schedule"
                verdict = "holds" if r.id in holding else "does not hold"
                explain(
                    f"{slot_key}: rule {r.key} (priority {r.priority}, {state}): "
                    f"condition {verdict}"
                )
        blanket = None if consented else CONSENT
        blanket = blanket or (HOLDOUT if holdout else None)
        chosen: CompiledRule | None = None
        for rule in candidates:
            reason = blanket or counters.block_reason(rule)
            if reason is None and chosen is not None:
                reason = CONFLICT
            if reason is None:
                chosen = rule
                continue
            result.suppressed.append(
                {"slot": slot_key, "candidate": f"rule:{rule.key}", "reason": reason}
            )
        test = _experiment_or_rollout(ruleset, slot_key, attributes, request.visitor_id, now)
        if test is not None and blanket is not None:
            result.suppressed.append(
                {"slot": slot_key, "candidate": f"{test.kind}:{test.key}", "reason": blanket}
            )
            test = None
        if test is not None and (chosen is None or test.priority >= chosen.priority):
            if chosen is not None:
                result.suppressed.append(
                    {"slot": slot_key, "candidate": f"rule:{chosen.key}", "reason": CONFLICT}
                )
            test.content = _content(slot, test.variant, attributes, ruleset, prop, now)
            result.answers[slot_key] = test
            if explain:
                explain(f"{slot_key}: {test.kind} {test.key} assigns {test.variant}")
            continue
        if test is not None:
            result.suppressed.append(
                {"slot": slot_key, "candidate": f"{test.kind}:{test.key}", "reason": CONFLICT}
            )
        held = sticky.get(slot_key)
        active_ids = {r.id for r in live}
        displaces = chosen is not None and (
            chosen.stickiness_override and held is not None and chosen.priority > held["priority"]
        )
        # What the session showed: a rule still active, or the model the slot still serves.
        held_model = held is not None and bool(slot.model) and held.get("model") == slot.model
        keep_held = (
            held is not None
            and (held.get("rule_id") in active_ids or held_model)
            and (chosen is None or chosen.id != held.get("rule_id"))
            and not displaces
        )
        if keep_held:
            assert held is not None
            # A sticky repeat is served, not suppressed: whatever the held rule's cooldown,
            # caps or rank say now concerns new applications only.
            _unsuppress(result, slot_key, live, held)
            if chosen is not None:
                result.suppressed.append(
                    {"slot": slot_key, "candidate": f"rule:{chosen.key}", "reason": CONFLICT}
                )
            result.answers[slot_key] = SlotAnswer(
                slot_key,
                held["variant"],
                _content(slot, held["variant"], attributes, ruleset, prop, now),
                SourceKind.MODEL if held_model else SourceKind.RULE,
                held["key"],
                held["version"],
                held["priority"],
                sticky=True,
            )
            continue
        if chosen is not None and held and held.get("rule_id") == chosen.id:
            result.answers[slot_key] = SlotAnswer(
                slot_key,
                chosen.variant,
                _content(slot, chosen.variant, attributes, ruleset, prop, now),
                SourceKind.RULE,
                chosen.key,
                chosen.version,
                chosen.priority,
                sticky=True,
            )
            continue
        spent = guard_rails.budget_verdict(used, limit)
        if chosen is not None and spent is not None:
            result.suppressed.append(
                {"slot": slot_key, "candidate": f"rule:{chosen.key}", "reason": spent}
            )
            chosen = None
        if chosen is not None:
            used += 1
            winners[slot_key] = chosen
            result.answers[slot_key] = SlotAnswer(
                slot_key,
                chosen.variant,
                _content(slot, chosen.variant, attributes, ruleset, prop, now),
                SourceKind.RULE,
                chosen.key,
                chosen.version,
                chosen.priority,
            )
        else:
            model = _model_answer(slot, attributes) if blanket is None else None
            if model is not None and spent is None:
                used += 1
                model.content = _content(slot, model.variant, attributes, ruleset, prop, now)
                result.answers[slot_key] = model
                # Applied like a rule's answer: a unit of the session's budget, and kept
                # for the session (stickiness).
                winners[slot_key] = ModelWin(model.key, model.version, model.variant)
            else:
                result.answers[slot_key] = _default_answer(slot, attributes, ruleset, prop, now)

    if explain:
        for item in result.suppressed:
            explain(f"{item['slot']}: {item['candidate']} suppressed ({item['reason']})")
        for answer in result.answers.values():
            if answer.sticky:
                explain(
                    f"{answer.slot}: serves {answer.variant} ({answer.kind} {answer.key}, "
                    "sticky): kept from earlier in this session, a repeat and not a new "
                    "application (caps, cooldowns and the session budget do not count it)"
                )
            else:
                explain(
                    f"{answer.slot}: serves {answer.variant} ({answer.kind} {answer.key})".strip()
                )
    if dry_run:
        result.logged = False
        result.personalized = any(not a.is_default for a in result.answers.values())
        return result

    # 5. Apply atomically and log; an adjustment that cannot be logged is not made.
    # With Redis: one Lua script, the log queued there; without it (or while it is away):
    # counters, budget and the log in one database transaction.
    args = (prop, request, result, winners, counters, limit, now, consent.record_id, attributes)
    if not (hot and _apply_and_log_hot(*args)):
        try:
            with transaction.atomic():
                _apply_and_log(*args)
        except DatabaseError:
            # The savepoint rolled back counters and budget with the log: nothing applied.
            logger.exception("decision %s not logged; serving defaults", result.decision_id)
            _all_defaults(result, ruleset, known, attributes, prop, now)
            result.logged = False
    result.personalized = any(not a.is_default for a in result.answers.values())
    return result


def _unsuppress(
    result: DecisionResult, slot_key: str, live: list[CompiledRule], held: dict
) -> None:
    """Take the held rule off the slot's suppressed list: it is served (a sticky repeat)."""
    held_id = held.get("rule_id")
    names = {f"rule:{r.key}" for r in live if r.id == held_id} if held_id is not None else set()
    if names:
        result.suppressed = [
            s for s in result.suppressed if s["slot"] != slot_key or s["candidate"] not in names
        ]


@dataclass(frozen=True)
class ModelWin:
    """A model-served answer being applied: it takes a unit of the session's budget and is
    remembered for stickiness, like a rule's; it has no cooldown or caps of its own."""

    key: str
    version: int | None
    variant: str
    cooldown_s: int = 0
    cap_session: int | None = None
    cap_day: int | None = None
    cap_week: int | None = None
    priority: int = 0

    @property
    def id(self) -> str:
        """The winner's name in the Lua apply: never a rule id (digits), so no counters."""
        return f"m:{self.key}"


def _model_answer(slot: CompiledSlot, attributes: dict) -> SlotAnswer | None:
    """The slot's model's best variant, when the slot serves one and it is not the default."""
    if not slot.model:
        return None
    score = attributes.get("model", {}).get(slot.model)
    if score is None or score["best"] == slot.default or score["best"] not in slot.variants:
        return None
    return SlotAnswer(
        slot.key, score["best"], {}, SourceKind.MODEL, slot.model, score["version"], 0
    )


def _default_answer(
    slot: CompiledSlot, attributes: dict, ruleset: RuleSet, prop: Property, now: datetime
) -> SlotAnswer:
    """The slot's default, with live content filled in like any other answer."""
    return SlotAnswer(
        slot.key, slot.default, _content(slot, slot.default, attributes, ruleset, prop, now)
    )


def _all_defaults(
    result: DecisionResult,
    ruleset: RuleSet,
    known: list[str],
    attributes: dict,
    prop: Property,
    now: datetime,
) -> None:
    for slot_key in known:
        result.answers[slot_key] = _default_answer(
            ruleset.slots[slot_key], attributes, ruleset, prop, now
        )


def _hot_load(
    prop: Property, request: DecideRequest, now: datetime
) -> tuple[EffectiveConsent, dict | None, hotstate.Snapshot] | None:
    """With Redis: the visitor's consent, signals (None for a suppressed visitor: not
    read), counters and budget in one pipelined round trip; what Redis misses is read from
    the database and filled in (one more round trip). None without Redis (or while it is
    away): the caller reads the database."""
    if hotstate.client() is None:
        return None
    keyed = visitor_key(prop.pk, request.visitor_id)
    try:
        snap = hotstate.snapshot(
            prop.pk, request.visitor_id, request.session_id, keyed, prop.hot_epoch
        )
    except hotstate.Unavailable:
        return None
    fill_consent: Any = hotstate.MISSING
    fill_signals: Any = hotstate.MISSING
    row = snap.consent
    if row is hotstate.MISSING:
        row = fill_consent = consent_selectors.latest_rows(prop.pk, [keyed])[keyed]
    consent = consent_selectors.consent_effective_from_row(prop.pk, row)
    signals = None
    if not consent.suppressed:
        states = snap.signals
        if states is hotstate.MISSING:
            states = fill_signals = visitor_states_get(
                prop.pk, request.visitor_id, request.session_id
            )
        signals = signals_for(states[1], states[2], now)
    hotstate.fill(
        prop.pk,
        request.visitor_id,
        request.session_id,
        keyed,
        prop.hot_epoch,
        consent=fill_consent,
        signals=fill_signals,
    )
    return consent, signals, snap


def _state_load(
    prop: Property, request: DecideRequest, rules: list[CompiledRule]
) -> tuple[dict[int, Any], Any, bool]:
    """The counters of the visitor and the session's budget, and whether they came from
    Redis (one round trip) or, without it, from the database (two queries)."""
    if hotstate.client() is not None:
        try:
            hot_rows, hot_budget = hotstate.state_get(
                prop.pk, request.visitor_id, request.session_id
            )
            return hot_rows, hot_budget, True
        except hotstate.Unavailable:
            pass
    from .models import RuleCounter

    counters = RuleCounter.objects.filter(
        property=prop, visitor_id=request.visitor_id, rule_id__in=[r.id for r in rules]
    )
    budget = SessionBudget.objects.filter(
        property=prop, visitor_id=request.visitor_id, session_id=request.session_id
    ).first()
    return ({c.rule_id: c for c in counters} if rules else {}), budget, False


def _apply_and_log_hot(
    prop: Property,
    request: DecideRequest,
    result: DecisionResult,
    winners: dict[str, CompiledRule | ModelWin],
    counters: _Counters,
    limit: int | None,
    now: datetime,
    consent_record_id: int | None,
    attributes: dict,
) -> bool:
    """Count the winners and queue the log entry in Redis, all or nothing. A winner that a
    concurrent decision blocked falls back to its default and the rest is tried again.
    False when Redis does not answer: the caller uses the database path."""
    while True:
        decision_row, answers = _log_rows(prop, request, result, now, consent_record_id, attributes)
        decision_row["decision_id"] = str(result.decision_id)
        decision_row["created_at"] = now.isoformat()
        for row in answers:
            del row["created_at"]
        try:
            blocked = hotstate.apply_and_log(
                property_id=prop.pk,
                visitor_id=request.visitor_id,
                session_id=request.session_id,
                now=now,
                day_key=counters.day_key,
                week_key=counters.week_key,
                limit=limit,
                winners=[_winner(slot_key, rule) for slot_key, rule in winners.items()],
                entry=hotstate.log_entry(decision_row, answers),
            )
        except hotstate.Unavailable:
            return False
        if not blocked:
            return True
        for slot_key, reason in blocked.items():
            _lost_race(result, winners, slot_key, reason, attributes, prop, now)


def _lost_race(
    result: DecisionResult,
    winners: dict[str, CompiledRule | ModelWin],
    slot_key: str,
    reason: str,
    attributes: dict,
    prop: Property,
    now: datetime,
) -> None:
    """A concurrent decision took the winner's last cap or budget unit: the slot falls back
    to its default, and the winner is listed as suppressed."""
    rule = winners.pop(slot_key)
    kind = "model" if isinstance(rule, ModelWin) else "rule"
    result.suppressed.append(
        {"slot": slot_key, "candidate": f"{kind}:{rule.key}", "reason": reason}
    )
    ruleset = ruleset_for(prop.pk)
    result.answers[slot_key] = _default_answer(
        ruleset.slots[slot_key], attributes, ruleset, prop, now
    )


def _sticky_entry(rule: CompiledRule | ModelWin) -> dict[str, Any]:
    """What a session remembers of the rule or model that adjusted a slot (stickiness)."""
    if isinstance(rule, ModelWin):
        return {
            "rule_id": None,
            "model": rule.key,
            "key": rule.key,
            "version": rule.version,
            "variant": rule.variant,
            "priority": rule.priority,
        }
    return {
        "rule_id": rule.id,
        "key": rule.key,
        "version": rule.version,
        "variant": rule.variant,
        "priority": rule.priority,
    }


def _apply_and_log(
    prop: Property,
    request: DecideRequest,
    result: DecisionResult,
    winners: dict[str, CompiledRule | ModelWin],
    counters: _Counters,
    limit: int | None,
    now: datetime,
    consent_record_id: int | None,
    attributes: dict,
) -> None:
    if winners:
        blocked = db_apply(
            property_id=prop.pk,
            visitor_id=request.visitor_id,
            session_id=request.session_id,
            now=now,
            day_key=counters.day_key,
            week_key=counters.week_key,
            limit=limit,
            winners=[_winner(slot_key, rule) for slot_key, rule in winners.items()],
        )
        for slot_key, reason in blocked.items():
            _lost_race(result, winners, slot_key, reason, attributes, prop, now)
    decision_row, answers = _log_rows(prop, request, result, now, consent_record_id, attributes)
    # The decision and its answers in one statement (one round trip on PostgreSQL).
    insert_with_children(Decision, decision_row, Adjustment, answers, fk="decision")


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


def _winner(slot_key: str, rule: CompiledRule | ModelWin) -> hotstate.Winner:
    return hotstate.Winner(
        slot_key,
        rule.id,
        rule.cooldown_s,
        rule.cap_session,
        rule.cap_day,
        rule.cap_week,
        _sticky_entry(rule),
    )


def _log_rows(
    prop: Property,
    request: DecideRequest,
    result: DecisionResult,
    now: datetime,
    consent_record_id: int | None,
    attributes: dict,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The decision's log row and its answers' rows, keyed by field name."""
    decision_row = dict(
        decision_id=result.decision_id,
        property=prop.pk,
        visitor_id=request.visitor_id,
        session_id=request.session_id,
        created_at=now,
        personalized=any(not a.is_default for a in result.answers.values()),
        holdout=result.holdout,
        consent_record_id=consent_record_id,
        signals={
            "session": attributes["session"],
            "visitor": attributes["visitor"],
            "segments": attributes["segments"],
        },
        context=request.context,
        suppressed=result.suppressed,
    )
    answers = [
        dict(
            property=prop.pk,
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
