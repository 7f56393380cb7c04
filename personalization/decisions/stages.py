"""The stages of a decision, in the order ``engine.decide`` runs them: each a plain
function over the decision's context (:class:`~.context.Decision`).

load (consent, signals, attributes, holdout, counters) → per slot: candidates → filters →
experiments and rollouts → stickiness → the session's budget, the rule or the model →
explain → apply and log.
"""

from datetime import UTC, datetime

from consent import services as consent_services

from .. import bucketing, guard_rails, live
from ..attributes import CATALOGUE
from ..models import Property, RuleFires, SourceKind
from ..ruleset import CompiledRule, CompiledSlot, RuleSet
from . import plans
from .answers import CONFLICT, CONSENT, HOLDOUT, ModelWin, SlotAnswer
from .content import all_defaults, content, default_answer
from .context import Counters, Decision
from .state import open_state

# A rule's ``fires`` restrictions, as the plain strings compiled rules hold.
LOAD_ONLY = RuleFires.LOAD.value
PAGE_ONLY = RuleFires.PAGE.value


def in_holdout(prop: Property, visitor_id: str) -> bool:
    if prop.holdout_pct <= 0:
        return False
    n = bucketing.hash(f"holdout-{prop.pk}", visitor_id, 2)
    return n is not None and n < prop.holdout_pct / 100


# -- load ------------------------------------------------------------------------------


def honour_gpc(d: Decision) -> None:
    """A Global Privacy Control signal is recorded as an opt-out before anything is read."""
    if d.request.gpc and not d.dry_run:
        consent_services.gpc_apply(
            property_id=d.prop.pk, visitor_ids=[d.request.visitor_id], ip=d.request.ip
        )


def load_visitor(d: Decision) -> bool:
    """The consent in force and, unless the visitor is suppressed, the attributes their
    conditions read. False for a suppressed visitor (erased or opted out): every slot gets
    its default and nothing that names them is stored."""
    if d.state is None:
        d.state = open_state(d.prop, d.request)
    d.consent, signals = d.state.visitor(d)
    consented = d.consent.allows("personalization")
    d.result.consented = consented and not d.consent.suppressed
    if d.consent.suppressed or signals is None:
        d.attributes = {"visitor": {}, "segments": []}
        all_defaults(d)
        d.result.logged = False
        if d.explain:
            d.explain("visitor is on the suppression list (erased or opted out): defaults")
        return False
    d.attributes = CATALOGUE.assemble(d.request, signals, d.ruleset, d.prop, d.now)
    holdout = in_holdout(d.prop, d.request.visitor_id)
    d.result.holdout = holdout
    d.blanket = None if consented else CONSENT
    d.blanket = d.blanket or (HOLDOUT if holdout else None)
    if d.explain:
        d.explain(
            f"consent to personalization: {'yes' if consented else 'no'} "
            f"(policy v{d.consent.policy_version}, record {d.consent.record_id})"
        )
        d.explain(f"holdout ({d.prop.holdout_pct}% of visitors): {'yes' if holdout else 'no'}")
        d.explain(f"segments: {', '.join(d.attributes['segments']) or 'none'}")
    return True


def load_counters(d: Decision) -> None:
    """Each slot's rules in their schedule now, and — when rules may apply (consent, not in
    the holdout) — their counters and the session's budget and sticky slots."""
    d.live_by_slot = {
        s: [r for r in d.ruleset.rules_by_slot.get(s, []) if r.live_at(d.now)] for s in d.known
    }
    day_key, week_key = guard_rails.window_keys(d.now, d.prop.timezone)
    rows: dict = {}
    budget = None
    if d.blanket is None:
        assert d.state is not None
        rules = [r for s in d.known for r in d.live_by_slot[s]]
        rows, budget = d.state.counters(d, rules)
    d.counters = Counters(d.request.session_id, day_key, week_key, d.now, rows)
    d.sticky = dict(budget.sticky) if budget and d.prop.session_stickiness else {}
    d.used = budget.adjustments if budget else 0
    d.limit = guard_rails.session_limit(d.prop.max_adjustments_per_session)


# -- per slot --------------------------------------------------------------------------


def resolve_slot(d: Decision, slot_key: str) -> None:
    """The slot's answer: the first stage that answers it wins."""
    slot = d.ruleset.slots[slot_key]
    live_rules = d.live_by_slot[slot_key]
    chosen = filter_candidates(d, slot_key, candidates(d, slot_key, live_rules))
    if serve_test(d, slot, chosen):
        return
    if serve_sticky(d, slot, live_rules, chosen):
        return
    serve_new(d, slot, chosen)


def rule_matches(rule: CompiledRule, attributes: dict, ruleset: RuleSet) -> bool | dict:
    """The rule's condition holds (a rule reading slot metrics waits for its sample, and
    with ``require_interval`` must hold at both ends of the CTR's interval). For a live rule:
    True or False when what the server knows settles it, else what remains of it for the page
    (a condition reading only ``page.*``)."""
    if rule.metric_slots:
        metrics = attributes.get("slot", {})
        if any(metrics.get(s, {}).get("exposures", 0) < rule.min_sample for s in rule.metric_slots):
            return False
        if rule.partial is None and rule.require_interval:
            return all(
                rule.condition(live.with_interval_bound(attributes, bound), ruleset.saved_groups)
                for bound in ("ctr_low", "ctr_high")
            )
    if rule.partial is not None:
        return rule.partial(attributes, ruleset.saved_groups)
    return rule.condition(attributes, ruleset.saved_groups)


def candidates(d: Decision, slot_key: str, live_rules: list[CompiledRule]) -> list[CompiledRule]:
    """The slot's rules in schedule whose condition holds, by priority. A rule whose
    condition still depends on the page (or that fires in the page only) is kept aside as
    an offer for the live plan (``offer_live``)."""
    found: list[CompiledRule] = []
    offers: list[tuple[CompiledRule, dict]] = []
    for rule in live_rules:
        holds = rule_matches(rule, d.attributes, d.ruleset)
        if isinstance(holds, dict):  # what remains depends on the page
            if rule.fires != LOAD_ONLY:
                offers.append((rule, holds))
        elif holds:
            if rule.fires != PAGE_ONLY:
                found.append(rule)
            else:
                offers.append((rule, {}))
    if offers:
        d.offers[slot_key] = offers
    if d.explain:
        holding = {r.id for r in found}
        for r in d.ruleset.rules_by_slot.get(slot_key, []):
            state = "in schedule" if r.live_at(d.now) else "outside its schedule"
            verdict = "holds" if r.id in holding else "does not hold"
            d.explain(
                f"{slot_key}: rule {r.key} (priority {r.priority}, {state}): condition {verdict}"
            )
    return found


def filter_candidates(d: Decision, slot_key: str, found: list[CompiledRule]) -> CompiledRule | None:
    """The first candidate that consent, the holdout, its cooldown and caps let through;
    every other one is suppressed with its reason."""
    assert d.counters is not None
    chosen: CompiledRule | None = None
    for rule in found:
        reason = d.blanket or d.counters.block_reason(rule)
        if reason is None and chosen is not None:
            reason = CONFLICT
        if reason is None:
            chosen = rule
        else:
            d.suppress(slot_key, f"rule:{rule.key}", reason)
    return chosen


def experiment_or_rollout(d: Decision, slot_key: str) -> SlotAnswer | None:
    """The slot's running experiment (first whose condition holds and that buckets the
    visitor), else its active rollout that serves the visitor now."""
    ruleset, visitor_id = d.ruleset, d.request.visitor_id
    for exp in ruleset.experiments_by_slot.get(slot_key, []):
        if exp.condition(d.attributes, ruleset.saved_groups):
            variant = exp.assign(visitor_id)
            if variant is not None:
                return SlotAnswer(
                    slot_key, variant, {}, SourceKind.EXPERIMENT, exp.key, None, exp.priority
                )
    for rollout in ruleset.rollouts_by_slot.get(slot_key, []):
        if rollout.serves(visitor_id, d.now):
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


def serve_test(d: Decision, slot: CompiledSlot, chosen: CompiledRule | None) -> bool:
    """An experiment or rollout answers the slot unless a rule of higher priority holds."""
    test = experiment_or_rollout(d, slot.key)
    if test is None:
        return False
    candidate = f"{test.kind}:{test.key}"
    if d.blanket is not None:
        d.suppress(slot.key, candidate, d.blanket)
        return False
    if chosen is not None and test.priority < chosen.priority:
        d.suppress(slot.key, candidate, CONFLICT)
        return False
    if chosen is not None:
        d.suppress(slot.key, f"rule:{chosen.key}", CONFLICT)
    test.content = content(d, slot, test.variant)
    d.result.answers[slot.key] = test
    if d.explain:
        d.explain(f"{slot.key}: {test.kind} {test.key} assigns {test.variant}")
    return True


def rule_answer(d: Decision, slot: CompiledSlot, rule: CompiledRule, sticky: bool) -> SlotAnswer:
    return SlotAnswer(
        slot.key,
        rule.variant,
        content(d, slot, rule.variant),
        SourceKind.RULE,
        rule.key,
        rule.version,
        rule.priority,
        sticky=sticky,
    )


def serve_sticky(
    d: Decision, slot: CompiledSlot, live_rules: list[CompiledRule], chosen: CompiledRule | None
) -> bool:
    """Session stickiness: the slot keeps what an earlier adjustment of this session showed
    (a rule still in schedule, or the model the slot still serves) — a sticky repeat, not a
    new application — unless a rule that overrides stickiness and outranks it holds."""
    held = d.sticky.get(slot.key)
    if held is None:
        return False
    if chosen is not None and held.get("rule_id") == chosen.id:
        d.result.answers[slot.key] = rule_answer(d, slot, chosen, sticky=True)
        return True
    held_model = bool(slot.model) and held.get("model") == slot.model
    # A rule that fires in the page only is never served at page load, not even as a
    # repeat: its page part must hold again in the new page (a pop-up shown on exit intent
    # is not shown at once on the next page).
    page_load_ids = {r.id for r in live_rules if r.fires != PAGE_ONLY}
    still_there = held_model or held.get("rule_id") in page_load_ids
    displaced = (
        chosen is not None and chosen.stickiness_override and chosen.priority > held["priority"]
    )
    if not still_there or displaced:
        return False
    # A sticky repeat is served, not suppressed: whatever the held rule's cooldown, caps or
    # rank say now concerns new applications only.
    held_names = {f"rule:{r.key}" for r in live_rules if r.id == held.get("rule_id")}
    d.result.suppressed = [
        s for s in d.result.suppressed if s["slot"] != slot.key or s["candidate"] not in held_names
    ]
    if chosen is not None:
        d.suppress(slot.key, f"rule:{chosen.key}", CONFLICT)
    d.result.answers[slot.key] = SlotAnswer(
        slot.key,
        held["variant"],
        content(d, slot, held["variant"]),
        SourceKind.MODEL if held_model else SourceKind.RULE,
        held["key"],
        held["version"],
        held["priority"],
        sticky=True,
    )
    return True


def model_answer(slot: CompiledSlot, attributes: dict) -> SlotAnswer | None:
    """The slot's model's best variant, when the slot serves one and it is not the default."""
    if not slot.model:
        return None
    score = attributes.get("model", {}).get(slot.model)
    if score is None or score["best"] == slot.default or score["best"] not in slot.variants:
        return None
    return SlotAnswer(
        slot.key, score["best"], {}, SourceKind.MODEL, slot.model, score["version"], 0
    )


def serve_new(d: Decision, slot: CompiledSlot, chosen: CompiledRule | None) -> None:
    """A new application — the rule, else the slot's model — if the session's budget has a
    unit left; else the slot's default."""
    spent = guard_rails.budget_verdict(d.used, d.limit)
    if chosen is not None and spent is not None:
        d.suppress(slot.key, f"rule:{chosen.key}", spent)
        chosen = None
    if chosen is not None:
        d.used += 1
        d.winners[slot.key] = chosen
        d.result.answers[slot.key] = rule_answer(d, slot, chosen, sticky=False)
        return
    model = model_answer(slot, d.attributes) if d.blanket is None else None
    if model is None or spent is not None:
        d.result.answers[slot.key] = default_answer(d, slot.key)
        return
    # Applied like a rule's answer: a unit of the session's budget, kept for the session.
    d.used += 1
    model.content = content(d, slot, model.variant)
    d.result.answers[slot.key] = model
    d.winners[slot.key] = ModelWin(model.key, model.version, model.variant)


def offer_live(d: Decision, slot_key: str) -> None:
    """The slot's live plan entries: each live rule whose page part remains and that
    consent, the holdout, its cooldown and caps, the session's budget and the slot's
    page-load answer still allow (an entry never outranks a page-load answer of higher or
    equal priority, nor a sticky one it may not displace)."""
    offers = d.offers.get(slot_key)
    if not offers or d.blanket is not None:
        return
    assert d.counters is not None
    answer = d.result.answers[slot_key]
    slot = d.ruleset.slots[slot_key]
    spent = guard_rails.budget_verdict(d.used, d.limit)
    for rule, when in offers:
        reason = spent or d.counters.block_reason(rule)
        if reason is None and not answer.is_default and rule.priority <= answer.priority:
            reason = "outranked"
        if reason is None and answer.sticky and not rule.stickiness_override:
            reason = "sticky"
        if reason is not None:
            if d.explain:
                d.explain(f"{slot_key}: live rule {rule.key} not offered to the page ({reason})")
            continue
        d.result.live.append(plan_entry(d, slot, rule, when))
        if d.explain:
            d.explain(f"{slot_key}: live rule {rule.key} offered to the page: {rule.variant} "
                      f"fires in the page when {when or 'the page loads'}")  # fmt: skip


def plan_entry(d: Decision, slot: CompiledSlot, rule: CompiledRule, when: dict) -> dict:
    claims = plans.Claims(
        d.prop.pk,
        str(d.result.decision_id),
        d.request.visitor_id,
        d.request.session_id,
        slot.key,
        SourceKind.RULE,
        rule.key,
        rule.version,
        rule.variant,
        plans.expiry(d.now),
    )
    return {
        "slot": slot.key,
        "variant": rule.variant,
        "content": content(d, slot, rule.variant),
        "when": when,
        "priority": rule.priority,
        "source": {"kind": SourceKind.RULE.value, "key": rule.key, "version": rule.version},
        "max_fires": 1,
        "token": claims.token(),
        "expires_at": datetime.fromtimestamp(claims.expires_at, UTC).isoformat(),
    }


# -- the end ---------------------------------------------------------------------------


def explain_answers(d: Decision) -> None:
    if not d.explain:
        return
    for item in d.result.suppressed:
        d.explain(f"{item['slot']}: {item['candidate']} suppressed ({item['reason']})")
    for answer in d.result.answers.values():
        if answer.sticky:
            d.explain(
                f"{answer.slot}: serves {answer.variant} ({answer.kind} {answer.key}, "
                "sticky): kept from earlier in this session, a repeat and not a new "
                "application (caps, cooldowns and the session budget do not count it)"
            )
        else:
            d.explain(
                f"{answer.slot}: serves {answer.variant} ({answer.kind} {answer.key})".strip()
            )


def apply_and_log(d: Decision) -> None:
    """Apply atomically and log (``state``); an adjustment that cannot be logged is not
    made. A dry run changes nothing and logs nothing."""
    if d.dry_run:
        d.result.logged = False
        return
    assert d.state is not None
    d.state.apply_and_log(d)
