"""Scheduled learning work: daily re-runs (drift) and retraining, and retraining what was
learned from a visitor erased since, within the retention purge's next run."""

import logging
from typing import Any

from django.db import transaction

from ..models import ClusterRun, ModelVersion, PropensityModel, RunStatus, VersionStatus
from ..services.audit import AuditAction, audit_action
from . import clustering, privacy, propensity

logger = logging.getLogger(__name__)


def cluster_rerun(*, run: ClusterRun, user: Any = None, enqueue: bool = False) -> ClusterRun:
    """A new run with the same settings; it compares itself with the latest finished run."""
    with transaction.atomic():
        new = clustering.cluster_run_create(
            property_id=run.property_id,
            k_min=run.k_min,
            k_max=run.k_max,
            window_days=run.window_days,
            drift_share=run.drift_share,
            drift_centroid=run.drift_centroid,
            user=user,
            enqueue=enqueue,
        )
        audit_action(
            AuditAction.CLUSTER_RUN_QUEUED,
            new,
            property_id=run.property_id,
            user=user,
            details={"rerun_of": run.pk},
        )
    return new


def latest_runs() -> list[ClusterRun]:
    """Each property's latest finished run (what a scheduled re-run repeats)."""
    latest: dict[int, ClusterRun] = {}
    for run in ClusterRun.objects.filter(status=RunStatus.DONE).order_by("-created_at", "-pk"):
        latest.setdefault(run.property_id, run)
    return list(latest.values())


def scheduled_models() -> list[PropensityModel]:
    return list(PropensityModel.objects.filter(scheduled=True).select_related("goal", "slot"))


def stale_retrain(*, property_id: int) -> dict[str, int]:
    """Retrain, without the erased visitors, every clustering run and promoted model version
    trained on one; a version that cannot be retrained is retired (it stops scoring)."""
    runs, versions = privacy.stale_for(property_id)
    done = {"runs": 0, "versions": 0, "retired": 0}
    for run in runs:
        # In place: the adopted segments move to the nearest new centroid.
        result = clustering.cluster_run_execute(run_id=run.pk)
        if result.status == RunStatus.DONE:
            done["runs"] += 1
        else:
            # Nothing may stay learned from the erased visitor: drop what the run held.
            result.clusters.all().delete()
            ClusterRun.objects.filter(pk=run.pk).update(
                stale=False, projection={}, scaler_mean=[], scaler_scale=[]
            )
    for old in versions:
        if old.status == VersionStatus.PROMOTED:
            new = propensity.version_start(model=old.model)
            trained = propensity.version_train(version_id=new.pk, force_promote=True)
            done["versions"] += trained.status == VersionStatus.PROMOTED
        old = ModelVersion.objects.get(pk=old.pk)
        propensity.version_retire(
            version=old, reason="retired: trained on a visitor erased since; retrained without"
        )
        done["retired"] += 1
    return done


def on_retention_run(sender: type, instance: Any, **kwargs: Any) -> None:
    """The consent app's retention run of a property has finished: retrain what is stale.

    Connected to ``consent.RetentionRun`` post_save (the consent app imports nothing of ours).
    """
    if instance.finished_at is None:
        return
    try:
        stale_retrain(property_id=instance.property_id)
    except Exception:  # noqa: BLE001 - the purge itself has succeeded; retried next run
        logger.exception("retraining after retention failed for property %s", instance.property_id)
