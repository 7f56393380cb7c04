"""Rules: every saved change is a new version with who changed what; any version restores."""

from typing import Any

from django.db import transaction
from django.utils.dateparse import parse_datetime

from ..exceptions import ApplicationError
from ..models import Rule, RuleFires, RuleStatus, RuleVersion
from .audit import AuditAction, audit_action

VERSIONED_FIELDS = [
    "key",
    "name",
    "slot_id",
    "variant_id",
    "condition",
    "priority",
    "status",
    "starts_at",
    "ends_at",
    "cooldown_seconds",
    "cap_per_session",
    "cap_per_day",
    "cap_per_week",
    "stickiness_override",
    "fires",
    "min_sample",
    "require_interval",
    "guardrail_id",
    "guardrail_autopause",
]


def rule_snapshot(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in VERSIONED_FIELDS:
        value = getattr(rule, name)
        out[name] = value.isoformat() if hasattr(value, "isoformat") else value
    return out


@transaction.atomic
def rule_save(
    *, rule: Rule, user: Any = None, note: str = "", evidence: dict | None = None
) -> Rule:
    """Save a rule (new or changed) and record the resulting version (with the evidence of
    an automatic change)."""
    previous = None
    if rule.pk is not None:
        last = RuleVersion.objects.filter(rule=rule).order_by("-version").first()
        previous = last.snapshot if last else None
        rule.version = (last.version if last else rule.version) + 1
    snapshot = rule_snapshot(rule)
    if previous is not None and previous == snapshot:
        return rule  # nothing changed: no new version
    rule.updated_by = user if getattr(user, "pk", None) else None
    rule.save()
    changes = sorted(k for k in snapshot if previous is None or previous.get(k) != snapshot[k])
    RuleVersion.objects.create(
        rule=rule,
        version=rule.version,
        snapshot=snapshot,
        changes=changes,
        changed_by=rule.updated_by,
        note=note,
        evidence=evidence or {},
    )
    return rule


@transaction.atomic
def rule_restore(*, rule: Rule, version: int, user: Any = None) -> Rule:
    """Make an earlier version current again, as a new version (history is never rewritten)."""
    old = RuleVersion.objects.filter(rule=rule, version=version).first()
    if old is None:
        raise ApplicationError("unknown_version", f"Rule {rule.key} has no version {version}.")
    # (A version saved before a field existed had its default.)
    for name, value in {"fires": RuleFires.ANY, **old.snapshot}.items():
        if name in ("starts_at", "ends_at") and value:
            value = parse_datetime(value)
        setattr(rule, name, value)
    rule_save(rule=rule, user=user, note=f"restored version {version}")
    audit_action(
        AuditAction.RULE_RESTORED,
        rule,
        property_id=rule.property_id,
        user=user,
        details={"version": version},
    )
    return rule


STATUS_ACTIONS = {
    RuleStatus.PAUSED: AuditAction.RULE_PAUSED,
    RuleStatus.ACTIVE: AuditAction.RULE_ACTIVATED,
}


@transaction.atomic
def rule_status_set(
    *,
    rule: Rule,
    status: str,
    user: Any = None,
    note: str = "",
    evidence: dict | None = None,
    action: AuditAction | None = None,
    audit_on: Any = None,
    details: dict[str, Any] | None = None,
) -> Rule:
    """Pause or activate a rule: a new version, and its audit entry (``action``, by default
    the status's; on ``audit_on`` — a guardrail check, say — instead of the rule). A rule
    already in ``status`` is left as it is: no version, no entry."""
    if rule.status == status:
        return rule
    rule.status = status
    rule_save(rule=rule, user=user, note=note or f"set {status}", evidence=evidence)
    audit_action(
        action or STATUS_ACTIONS[RuleStatus(status)],
        audit_on if audit_on is not None else rule,
        property_id=rule.property_id,
        user=user,
        details=details,
    )
    return rule
