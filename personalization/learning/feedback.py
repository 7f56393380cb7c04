"""The feedback loop: rules whose variant does significantly worse than the slot default.

For an active rule with a guardrail goal, visitors whose first answer in the slot (last
30 days, outside the holdout) came from the rule are compared with visitors whose first
answer there was the slot's default, on the goal's value after that answer — the
experiments' measure and their statistics (``stats.compare``, a two-sided test at the
experiments' alpha, after their minimum sample). A significantly worse rule is flagged
(a suggestion to pause it); a rule that may pause itself is paused, and the pause is a new
version in the rule's history carrying the evidence.

The numbers come from the adjustment log and its events (:func:`guardrail_samples`, the
one place to switch to the dashboards' rollups once a goal can be read from them).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import stats
from ..hotstate import decision_log_flush
from ..models import Adjustment, GoalKind, GuardrailCheck, Rule, RuleStatus
from ..services.audit import AuditAction
from ..services.experiments import goal_sums_split
from ..services.rules import rule_status_set

LOOKBACK = timedelta(days=30)
WORSE = "worse"
BETTER = "better"
INCONCLUSIVE = "inconclusive"
TOO_FEW = "too_few"
FLAGGED = "flagged"
PAUSED = "paused"


@dataclass(frozen=True)
class Samples:
    control: tuple[int, float, float]  # users, sum, sum of squares
    served: tuple[int, float, float]


def guardrail_samples(rule: Rule, now: datetime) -> Samples:
    """The rule's visitors and the default's visitors in the slot, with the guardrail goal's
    value after each one's first answer there."""
    decision_log_flush()  # decisions still pending in Redis belong to the evidence
    goal = rule.guardrail
    assert goal is not None
    first: dict[str, tuple[bool, datetime, str]] = {}
    rows = (
        Adjustment.objects.filter(
            property_id=rule.property_id,
            slot_key=rule.slot.key,
            created_at__gte=now - LOOKBACK,
            created_at__lte=now,
            decision__holdout=False,
        )
        .order_by("created_at", "pk")
        .values_list(
            "visitor_id", "source_kind", "source_key", "is_default", "created_at", "session_id"
        )
    )
    for vid, kind, key, is_default, at, sid in rows.iterator(chunk_size=5000):
        if vid in first:
            continue
        if kind == "rule" and key == rule.key:
            first[vid] = (True, at, sid)
        elif is_default:
            first[vid] = (False, at, sid)
    served, control = goal_sums_split(rule.property_id, goal, first, since=now - LOOKBACK)
    return Samples(control, served)


def _summary(kind: str, users: int, total: float, squares: float) -> stats.VariantSummary:
    if kind == "binary":
        return stats.VariantSummary.binary(users, int(round(total)))
    return stats.VariantSummary.continuous(users, total, squares)


def evaluate(
    rule: Rule, samples: Samples, *, min_users: int = stats.DEFAULT_MIN_USERS
) -> tuple[str, dict[str, Any]]:
    """(verdict, evidence) of the rule against the slot default, by ``stats.compare``."""
    goal = rule.guardrail
    assert goal is not None
    kind = "continuous" if goal.kind == GoalKind.CONTINUOUS else "binary"
    control, served = _summary(kind, *samples.control), _summary(kind, *samples.served)
    evidence: dict[str, Any] = {
        "goal": goal.key,
        "inverse": goal.inverse,
        "rule_version": rule.version,
        "served_users": served.users,
        "default_users": control.users,
        "served_mean": served.sum / served.users if served.users else None,
        "default_mean": control.sum / control.users if control.users else None,
        "alpha": stats.DEFAULT_ALPHA,
        "min_users": min_users,
    }
    if not stats.minimum_sample_reached([control, served], min_users):
        return TOO_FEW, evidence
    comparison = stats.compare(control, served)
    evidence.update(
        lift=comparison.lift,
        ci_low=comparison.ci_low,
        ci_high=comparison.ci_high,
        p_value=comparison.p_value,
        reason=comparison.reason,
    )
    if comparison.p_value is None or comparison.lift is None:
        return INCONCLUSIVE, evidence
    if comparison.p_value >= stats.DEFAULT_ALPHA:
        return INCONCLUSIVE, evidence
    harmful = comparison.lift > 0 if goal.inverse else comparison.lift < 0
    return (WORSE if harmful else BETTER), evidence


def rule_guardrail_check(
    *, rule: Rule, now: datetime | None = None, min_users: int = stats.DEFAULT_MIN_USERS
) -> GuardrailCheck | None:
    """Check one rule; record the check when its verdict changed or an action was taken.
    Returns the recorded check (None when nothing new)."""
    if rule.guardrail_id is None or rule.status != RuleStatus.ACTIVE:
        return None
    now = now or timezone.now()
    verdict, evidence = evaluate(rule, guardrail_samples(rule, now), min_users=min_users)
    with transaction.atomic():
        locked = Rule.objects.select_for_update().get(pk=rule.pk)
        action = ""
        if verdict == WORSE:
            action = FLAGGED
            if locked.guardrail_autopause and locked.status == RuleStatus.ACTIVE:
                rule_status_set(  # no user: the audit entry's actor is "system"
                    rule=locked,
                    status=RuleStatus.PAUSED,
                    note=f"paused by its guardrail ({evidence['goal']} significantly worse)",
                    evidence={"action": "paused by guardrail", **evidence},
                    action=AuditAction.RULE_PAUSED_BY_GUARDRAIL,
                    details=evidence,
                )
                action = PAUSED
        last = GuardrailCheck.objects.filter(rule=locked).first()
        if not action and last is not None and last.verdict == verdict:
            return None
        if action == FLAGGED and last is not None and last.action == FLAGGED:
            return None  # still flagged: one suggestion, not one an hour
        check = GuardrailCheck.objects.create(
            rule=locked, verdict=verdict, action=action, evidence=evidence
        )
    rule.refresh_from_db()
    return check


@transaction.atomic
def rule_pause_on_check(*, check: GuardrailCheck, user: Any = None) -> bool:
    """Staff pause a rule on its guardrail's suggestion (the check's evidence goes into the
    rule's history). False when the rule is no longer active."""
    rule = Rule.objects.select_for_update().get(pk=check.rule_id)
    if rule.status != RuleStatus.ACTIVE:
        return False
    rule_status_set(
        rule=rule,
        status=RuleStatus.PAUSED,
        user=user,
        note="paused on its guardrail's suggestion",
        evidence={"action": "paused by staff on guardrail", **check.evidence},
        action=AuditAction.RULE_PAUSED_ON_CHECK,
        audit_on=check,
        details={"rule": rule.key},
    )
    check.rule = rule
    return True


def guardrails_check_all(*, now: datetime | None = None) -> dict[str, int]:
    """Check every active rule with a guardrail; counts per action."""
    counts = {FLAGGED: 0, PAUSED: 0, "checked": 0}
    rules = Rule.objects.filter(status=RuleStatus.ACTIVE, guardrail__isnull=False).select_related(
        "slot", "guardrail"
    )
    for rule in rules:
        counts["checked"] += 1
        check = rule_guardrail_check(rule=rule, now=now)
        if check is not None and check.action:
            counts[check.action] += 1
    return counts


def flagged_rules(property_ids: Any) -> list[GuardrailCheck]:
    """The latest check of each rule whose last verdict flagged it, still active."""
    latest: dict[int, GuardrailCheck] = {}
    for check in GuardrailCheck.objects.filter(rule__property_id__in=property_ids).select_related(
        "rule"
    ):
        latest.setdefault(check.rule_id, check)
    return [
        c for c in latest.values() if c.action == FLAGGED and c.rule.status == RuleStatus.ACTIVE
    ]
