from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from .models import Property
from .services.ingest import quarantine_replay

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
    from .models import Experiment, ExperimentStatus
    from .services.experiments import experiment_reallocate, experiment_snapshot

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
    from .models import Rollout, RolloutStatus
    from .services.experiments import rollout_guardrail_check

    return sum(
        rollout_guardrail_check(rollout=r)
        for r in Rollout.objects.filter(status=RolloutStatus.ACTIVE, guardrail__isnull=False)
    )


@shared_task(acks_late=True)
def decision_log_flush_task() -> int:
    """Copy the decisions pending in Redis into the database. Idempotent by decision_id;
    runs every few seconds from the beat and when a decision finds many pending."""
    from .hotstate import decision_log_flush

    return decision_log_flush()


# --- learning: clustering, propensity models, the feedback loop ---------------------------

LEARNING_TRANSIENT = (ConnectionError, OperationalError, InterfaceError)


@shared_task(acks_late=True, autoretry_for=LEARNING_TRANSIENT, retry_backoff=True, max_retries=3)
def cluster_run_task(run_id: int) -> dict[str, Any]:
    """Run a queued clustering (progress on the run). Rerunning recomputes it in place."""
    from .learning.clustering import cluster_run_execute

    run = cluster_run_execute(run_id=run_id)
    return {"run": run.pk, "status": run.status, "k": run.k, "drifted": run.drifted}


@shared_task(acks_late=True, autoretry_for=LEARNING_TRANSIENT, retry_backoff=True, max_retries=3)
def model_train_task(version_id: int) -> dict[str, Any]:
    """Train a model version; a version already trained is left as it is."""
    from .learning.propensity import version_train

    version = version_train(version_id=version_id)
    return {"version": version.pk, "status": version.status, "auc": version.auc}


@shared_task(acks_late=True, autoretry_for=LEARNING_TRANSIENT, retry_backoff=True, max_retries=3)
def learning_scheduled_task() -> dict[str, int]:
    """Daily: re-run each property's latest clustering (flagging drift) and retrain the
    scheduled models. Idempotent per day: what already ran in the last 12 hours is skipped.
    A version left "training" by a lost task is trained now, not left so forever."""
    from datetime import timedelta

    from django.utils import timezone

    from .learning import maintenance, propensity
    from .learning.clustering import cluster_run_execute
    from .models import ClusterRun, ModelVersion

    recent = timezone.now() - timedelta(hours=12)
    counts = {"runs": 0, "versions": 0, "resumed": 0}
    for version_id in propensity.versions_stuck():
        propensity.version_train(version_id=version_id)
        counts["resumed"] += 1
    for run in maintenance.latest_runs():
        if ClusterRun.objects.filter(property_id=run.property_id, created_at__gte=recent).exists():
            continue
        cluster_run_execute(run_id=maintenance.cluster_rerun(run=run).pk)
        counts["runs"] += 1
    for model in maintenance.scheduled_models():
        if ModelVersion.objects.filter(model=model, created_at__gte=recent).exists():
            continue
        if propensity.model_problems(model):
            continue
        propensity.version_train(version_id=propensity.version_start(model=model).pk)
        counts["versions"] += 1
    return counts


@shared_task(acks_late=True, autoretry_for=LEARNING_TRANSIENT, retry_backoff=True, max_retries=3)
def rule_guardrails_task() -> dict[str, int]:
    """Hourly: flag (or pause, when allowed) rules doing significantly worse than the default."""
    from .learning.feedback import guardrails_check_all

    return guardrails_check_all()
