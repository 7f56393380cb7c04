"""Learning's background work: clustering runs, model training, the daily maintenance and
the rules' guardrails (registered through ``personalization.tasks``; names kept)."""

from datetime import timedelta
from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from ..models import ClusterRun, ModelVersion
from . import maintenance, propensity
from .clustering import cluster_run_execute
from .feedback import guardrails_check_all

LEARNING_TRANSIENT = (ConnectionError, OperationalError, InterfaceError)


@shared_task(
    name="personalization.tasks.cluster_run_task",
    acks_late=True,
    autoretry_for=LEARNING_TRANSIENT,
    retry_backoff=True,
    max_retries=3,
)
def cluster_run_task(run_id: int) -> dict[str, Any]:
    """Run a queued clustering (progress on the run). Rerunning recomputes it in place."""
    run = cluster_run_execute(run_id=run_id)
    return {"run": run.pk, "status": run.status, "k": run.k, "drifted": run.drifted}


@shared_task(
    name="personalization.tasks.model_train_task",
    acks_late=True,
    autoretry_for=LEARNING_TRANSIENT,
    retry_backoff=True,
    max_retries=3,
)
def model_train_task(version_id: int) -> dict[str, Any]:
    """Train a model version; a version already trained is left as it is."""
    version = propensity.version_train(version_id=version_id)
    return {"version": version.pk, "status": version.status, "auc": version.auc}


@shared_task(
    name="personalization.tasks.learning_scheduled_task",
    acks_late=True,
    autoretry_for=LEARNING_TRANSIENT,
    retry_backoff=True,
    max_retries=3,
)
def learning_scheduled_task() -> dict[str, int]:
    """Daily: re-run each property's latest clustering (flagging drift) and retrain the
    scheduled models. Idempotent per day: what already ran in the last 12 hours is skipped.
    A version left "training" by a lost task is trained now, not left so forever."""
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


@shared_task(
    name="personalization.tasks.rule_guardrails_task",
    acks_late=True,
    autoretry_for=LEARNING_TRANSIENT,
    retry_backoff=True,
    max_retries=3,
)
def rule_guardrails_task() -> dict[str, int]:
    """Hourly: flag (or pause, when allowed) rules doing significantly worse than the default."""
    return guardrails_check_all()
