"""A live plan entry fired in the page (``POST /api/v1/adjustments``).

The report is checked (its token: ``plans.verify``; the entry it names), then applied as a
decision of its own through the same pipeline end as ``decide``: the visitor's consent read
again (``state.VisitorState.visitor``), then the rule counted against its cooldown, caps and
the session's budget and logged, all or nothing, by the same Lua script or SQL
(``VisitorState.apply_and_log``). The log entry is a decision with ``trigger: "page"``, the
page-load decision as its parent and the page signals the firing read; a refusal is logged
as suppressed with its reason. One report per decision and slot is taken: a repeat is
answered what the first got (``LiveFiring``, in the same transaction).
"""

import uuid
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from consent import services as consent_services

from .. import guard_rails
from ..db import insert_returning_new
from ..exceptions import ApplicationError
from ..models import LiveFiring, Property, RuleFires, SourceKind
from ..ruleset import CompiledRule, ruleset_for
from . import plans
from .answers import CONSENT, DecideRequest, DecisionResult, SlotAnswer
from .context import Counters, Decision
from .state import open_state

# A firing refused because the rule is no longer the one offered (edited, paused, deleted,
# or now restricted to page load).
RULE_CHANGED = "rule_changed"


def fire(
    prop: Property,
    report: dict[str, Any],
    now: datetime | None = None,
    *,
    gpc: bool = False,
    ip: str | None = None,
) -> dict[str, Any]:
    """Apply a validated report (``decision_id``, ``slot``, ``variant``, ``token``,
    ``signals``, ``fired_at``): ``{"applied": true}`` or ``{"applied": false, "reason": …}``.
    Refuses (403) a token that is forged, altered, expired, or not the entry reported. A
    Global Privacy Control signal (``gpc``) is recorded first, as on every storefront call."""
    now = now or timezone.now()
    claims = plans.verify(report["token"], prop.pk, now)
    named = (str(report["decision_id"]), report["slot"], report["variant"])
    if named != (claims.decision_id, claims.slot, claims.variant):
        raise ApplicationError(
            "invalid_token",
            "The token is not the one offered with this decision, slot and variant.",
            status=403,
        )
    if gpc:
        consent_services.gpc_apply(property_id=prop.pk, visitor_ids=[claims.visitor_id], ip=ip)
    decision_id = uuid.UUID(claims.decision_id)
    with transaction.atomic():
        row: dict[str, Any] = {
            "property": prop.pk,
            "visitor_id": claims.visitor_id,
            "session_id": claims.session_id,
            "decision_id": decision_id,
            "slot_key": claims.slot,
            "source_key": claims.key,
            "seconds_to_fire": _seconds_to_fire(claims, report, now),
            "created_at": now,
            # Most firings apply: written so, and corrected in the same transaction if not.
            "applied": True,
            "reason": "",
        }
        if not insert_returning_new(LiveFiring, [row], ["decision_id", "slot_key"], "id"):
            # A repeat (a retry, a second tab's copy): the first report's outcome.
            first = LiveFiring.objects.get(decision_id=decision_id, slot_key=claims.slot)
            return _outcome(first.applied, first.reason)
        applied, reason = _apply(prop, claims, report, now)
        if not applied:
            LiveFiring.objects.filter(decision_id=decision_id, slot_key=claims.slot).update(
                applied=False, reason=reason or ""
            )
    return _outcome(applied, reason)


def _seconds_to_fire(claims: plans.Claims, report: dict[str, Any], now: datetime) -> float:
    """From the page-load decision (its token's expiry less the plan's lifetime) to the
    firing (the page's ``fired_at`` when it is plausible, else the report's arrival)."""
    offered = claims.expires_at - plans.PLAN_TTL.total_seconds()
    fired = report.get("fired_at")
    at = fired.timestamp() if isinstance(fired, datetime) else now.timestamp()
    if not offered <= at <= now.timestamp() + 5:  # a page's clock far off: the arrival
        at = now.timestamp()
    return round(max(at - offered, 0.0), 3)


def _outcome(applied: bool, reason: str | None) -> dict[str, Any]:
    return {"applied": True} if applied else {"applied": False, "reason": reason}


def _apply(
    prop: Property, claims: plans.Claims, report: dict[str, Any], now: datetime
) -> tuple[bool, str | None]:
    fired_at = report.get("fired_at")
    context = {"fired_at": fired_at.isoformat()} if isinstance(fired_at, datetime) else {}
    request = DecideRequest(claims.visitor_id, claims.session_id, [claims.slot], context)
    ruleset = ruleset_for(prop.pk)
    d = Decision(
        prop=prop,
        request=request,
        now=now,
        ruleset=ruleset,
        result=DecisionResult(
            uuid.uuid5(uuid.UUID(claims.decision_id), claims.slot), False, {}, [], []
        ),  # fmt: skip
        known=[claims.slot],
        state=open_state(prop, request),
        trigger="page",
        parent_decision_id=claims.decision_id,
        page_signals=report.get("signals") or {},
    )
    assert d.state is not None
    d.consent, _ = d.state.visitor(d)
    if d.consent.suppressed:
        # Erased or opted out: nothing that names them is stored.
        return False, CONSENT
    day_key, week_key = guard_rails.window_keys(now, prop.timezone)
    d.counters = Counters(claims.session_id, day_key, week_key, now, {})
    d.limit = guard_rails.session_limit(prop.max_adjustments_per_session)
    d.attributes = {"visitor": {}, "session": {}, "segments": []}
    candidate = f"{claims.kind}:{claims.key}"
    rule = _offered_rule(ruleset.rules_by_slot.get(claims.slot, []), claims, now)
    reason = None if d.consent.allows("personalization") else CONSENT
    reason = reason or (None if rule is not None else RULE_CHANGED)
    if reason is not None or rule is None:
        d.suppress(claims.slot, candidate, reason or RULE_CHANGED)
    else:
        d.winners[claims.slot] = rule
        d.result.answers[claims.slot] = SlotAnswer(
            claims.slot, rule.variant, {}, SourceKind.RULE, rule.key, rule.version, rule.priority
        )
    d.state.apply_and_log(d)
    if not d.result.logged:
        raise ApplicationError(
            "service_unavailable", "The firing could not be logged; retry shortly.", status=503
        )
    if claims.slot in d.winners:
        return True, None
    return False, next(s["reason"] for s in d.result.suppressed if s["slot"] == claims.slot)


def _offered_rule(
    rules: list[CompiledRule], claims: plans.Claims, now: datetime
) -> CompiledRule | None:
    """The rule the entry was offered for, if it is still the same and may still fire."""
    for rule in rules:
        if rule.key == claims.key:
            same = rule.version == claims.version and rule.variant == claims.variant
            if same and rule.fires != RuleFires.LOAD and rule.live_at(now):
                return rule
    return None
