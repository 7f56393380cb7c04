from celery import shared_task

# Each sub-package's tasks live beside its code; importing them here registers them with the
# worker (Celery discovers ``<app>.tasks``) and keeps the names the beat schedule uses.
from .hotstate.tasks import decision_log_flush_task
from .learning.tasks import (
    cluster_run_task,
    learning_scheduled_task,
    model_train_task,
    rule_guardrails_task,
)
from .models import Experiment, ExperimentStatus, Property, Rollout, RolloutStatus
from .services.experiments import (
    experiment_reallocate,
    experiment_snapshot,
    rollout_guardrail_check,
)
from .services.ingest import quarantine_replay

__all__ = [
    "cluster_run_task",
    "decision_log_flush_task",
    "experiment_snapshots_task",
    "learning_scheduled_task",
    "model_train_task",
    "replay_quarantine_task",
    "rollout_guardrails_task",
    "rule_guardrails_task",
]

REPLAY_CHUNK = 500


@shared_task(acks_late=True, autoretry_for=(ConnectionError,), retry_backoff=True, max_retries=5)
def replay_quarantine_task(property_id: int, ids: list[int]) -> dict[str, int]:
    """Replay quarantined events in chunks. Idempotent: replayed events are skipped on rerun."""
    prop = Property.objects.get(pk=property_id)
    totals = {"stored": 0, "duplicates": 0, "still_quarantined": 0, "dropped_no_consent": 0}
    for start in range(0, len(ids), REPLAY_CHUNK):
        result = quarantine_replay(prop=prop, ids=ids[start : start + REPLAY_CHUNK])
        for name in totals:
            totals[name] += getattr(result, name)
    return totals


@shared_task(acks_late=True)
def experiment_snapshots_task() -> int:
    """Snapshot the results of every running experiment (hourly). Idempotent per run."""
    count = 0
    for experiment in Experiment.objects.filter(status=ExperimentStatus.RUNNING):
        snapshot = experiment_snapshot(experiment=experiment)
        if experiment.bandit:
            experiment_reallocate(experiment=experiment, results=snapshot.results)
        count += 1
    return count


@shared_task(acks_late=True)
def rollout_guardrails_task() -> int:
    """Check every active rollout's guardrail; halt the ramps that degrade it."""
    return sum(
        rollout_guardrail_check(rollout=r)
        for r in Rollout.objects.filter(status=RolloutStatus.ACTIVE, guardrail__isnull=False)
    )
