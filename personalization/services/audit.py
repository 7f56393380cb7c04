"""Configuration actions audit themselves (Zulip's ``do_*`` style).

Each service that changes the state of a rule, experiment, rollout or learned model writes
its audit entry itself, inside its own transaction, with an :class:`AuditAction`. The
admin's hooks (``PropertyScopedAdmin``) record only the raw add, change and delete of a
row; its actions call the service and write nothing more, so each action is one entry
whoever calls it: staff in the admin, the API, a scheduled task or the guardrails (no
user: the entry's actor is "system").
"""

from typing import Any

from django.db import models
from django.db.models import Model

from consent.models import AuditEntry, AuditKind
from consent.services.audit import audit_record


class AuditAction(models.TextChoices):
    """The configuration actions, beside the raw ``<model>.added|changed|deleted`` entries
    of the admin. The values are the entries' ``action`` (as staff see them in the log)."""

    API_KEY_REVOKED = "apikey.revoked", "API key revoked"
    QUARANTINE_REPLAYED = "quarantinedevent.replay", "Quarantined events replayed"
    RULE_PAUSED = "rule.paused", "Rule paused"
    RULE_ACTIVATED = "rule.active", "Rule activated"
    RULE_RESTORED = "rule.restored", "Rule version restored"
    RULE_PAUSED_BY_GUARDRAIL = "rule.guardrail_paused", "Rule paused by its guardrail"
    RULE_PAUSED_ON_CHECK = "guardrailcheck.rule_paused", "Rule paused on a guardrail check"
    EXPERIMENT_STARTED = "experiment.started", "Experiment started"
    EXPERIMENT_STOPPED = "experiment.stopped", "Experiment stopped"
    EXPERIMENT_PROMOTED_TO_RULE = "experiment.promoted_to_a_rule", "Winner promoted to a rule"
    EXPERIMENT_PROMOTED_TO_DEFAULT = (
        "experiment.promoted_to_a_default",
        "Winner promoted to the slot default",
    )
    EXPERIMENT_NEW_PHASE = "experiment.new_phase", "Experiment entered a new phase"
    EXPERIMENT_REALLOCATED = "experiment.reallocated", "Bandit weights reallocated"
    ROLLOUT_KILLED = "rollout.killed", "Rollout killed"
    ROLLOUT_HALTED = "rollout.halted", "Rollout halted by its guardrail"
    CLUSTER_RUN_QUEUED = "clusterrun.queued", "Clustering run queued"
    CLUSTER_ADOPTED = "cluster.adopted", "Cluster adopted as a segment"
    MODEL_TRAINING_STARTED = "propensitymodel.training_started", "Model training started"
    MODEL_VERSION_PROMOTED = "modelversion.promoted", "Model version promoted"
    MODEL_VERSION_RETIRED = "modelversion.retired", "Model version retired"


def audit_action(
    action: AuditAction,
    obj: Model,
    *,
    property_id: int | None,
    user: Any = None,
    details: dict[str, Any] | None = None,
    target: str = "",
) -> AuditEntry:
    """A configuration entry for ``action`` on ``obj``. Call it inside the action's
    transaction: the entry commits, or rolls back, with the change it records."""
    return audit_record(
        kind=AuditKind.CONFIGURATION,
        action=action.value,
        property_id=property_id,
        target=target or f"{obj._meta.label_lower}:{obj.pk}",
        details={"object": str(obj)[:200], **(details or {})},
        user=user,
    )
