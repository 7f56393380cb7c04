"""Segment discovery: KMeans over standardized visitor signal vectors, k by silhouette.

A run reads the visitors of a property seen in its window who may be learned from
(:mod:`.privacy`), standardizes their signal vectors (:mod:`.features`), fits KMeans for
each k in the staff-set range, keeps the k with the best silhouette score, and describes
each cluster in plain words from its centroid. A cluster adopted as a segment decides
membership at decision time by the nearest centroid of its run (compiled with the rule
set). A re-run compares itself with the previous finished run and flags drift.
"""

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from functools import partial
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone

from ..conditions import CompiledCondition
from ..config_version import config_bump
from ..exceptions import ApplicationError
from ..models import Cluster, ClusterRun, RunStatus, Segment, Session, TrainingMember, Visitor
from ..services.audit import AuditAction, audit_action
from ..visitor_state import signals_for
from . import features, privacy

logger = logging.getLogger(__name__)

MIN_ROWS = 10
PROJECTION_POINTS = 1500
SILHOUETTE_SAMPLE = 5000
SEED = 0


def _progress(run: ClusterRun, percent: int, message: str = "") -> None:
    run.progress = percent
    fields = ["progress"]
    if message:
        run.message = message
        fields.append("message")
    ClusterRun.objects.filter(pk=run.pk).update(**{f: getattr(run, f) for f in fields})


def settings_problems(k_min: int, k_max: int, window_days: int) -> list[str]:
    """What is wrong with a run's settings, in words for the admin."""
    problems = []
    if k_min < 2:
        problems.append("k starts at 2: one cluster discovers nothing.")
    if k_max < k_min:
        problems.append(f"The k range {k_min}–{k_max} is empty.")
    if k_max > 20:
        problems.append("At most 20 clusters: more cannot be described.")
    if not 1 <= window_days <= 395:
        problems.append("The window is 1 to 395 days.")
    return problems


def data_problems(property_id: int, k_max: int, window_days: int) -> list[str]:
    """A quick look before queueing: enough visitors in the window for this k range?
    (The run checks again on the visitors who may be learned from.)"""
    seen = Visitor.objects.filter(
        property_id=property_id, last_seen__gte=timezone.now() - timedelta(days=window_days)
    ).count()
    if seen < MIN_ROWS:
        return [
            f"Only {seen} visitors in the last {window_days} days; "
            f"clustering needs at least {MIN_ROWS}."
        ]
    if k_max >= seen:
        return [
            f"The k range goes up to {k_max} but only {seen} visitors were seen in the "
            f"window: lower k_max below {seen}."
        ]
    return []


def cluster_run_create(
    *,
    property_id: int,
    k_min: int = 2,
    k_max: int = 6,
    window_days: int = 30,
    drift_share: float = 0.1,
    drift_centroid: float = 1.0,
    user: Any = None,
    enqueue: bool = False,
) -> ClusterRun:
    """Validate the settings and record a queued run; ``enqueue`` runs it in the worker
    once the transaction commits."""
    problems = settings_problems(k_min, k_max, window_days)
    if problems:
        raise ApplicationError("invalid_settings", " ".join(problems))
    run = ClusterRun.objects.create(
        property_id=property_id,
        k_min=k_min,
        k_max=k_max,
        window_days=window_days,
        drift_share=drift_share,
        drift_centroid=drift_centroid,
        created_by=user if getattr(user, "pk", None) else None,
    )
    if enqueue:
        from .tasks import cluster_run_task  # noqa: PLC0415  a service enqueues its own sub-package's task (HackSoft's back-edge)

        transaction.on_commit(partial(cluster_run_task.delay, run.pk))
    return run


def dataset(property_id: int, window_days: int) -> tuple[list[str], np.ndarray]:
    """Visitor ids and their signal vectors (latest session) for the window, eligible only."""
    now = timezone.now()
    visitors = dict(
        Visitor.objects.filter(
            property_id=property_id, last_seen__gte=now - timedelta(days=window_days)
        ).values_list("visitor_id", "pk")
    )
    allowed = privacy.eligible(property_id, visitors)
    ids = sorted(allowed)
    pks = [visitors[v] for v in ids]
    states: dict[int, dict] = {}
    latest: dict[int, dict] = {}
    for start in range(0, len(pks), 2000):
        chunk = pks[start : start + 2000]
        states.update(Visitor.objects.filter(pk__in=chunk).values_list("pk", "state"))
        for visitor_pk, state in (
            Session.objects.filter(visitor_id__in=chunk)
            .order_by("visitor_id", "started_at")
            .values_list("visitor_id", "state")
        ):
            latest[visitor_pk] = state  # ordered by start: the last one wins
    rows = [features.vector(signals_for(states[pk], latest.get(pk), now)) for pk in pks]
    return ids, np.array(rows, dtype=float).reshape(len(rows), len(features.FEATURE_NAMES))


def _fit(x: np.ndarray, k_min: int, k_max: int, on_k: Callable[[int], None]) -> tuple[Any, dict]:
    from sklearn.cluster import KMeans  # noqa: PLC0415  scikit-learn loads only where a model is trained or read
    from sklearn.metrics import silhouette_score  # noqa: PLC0415  scikit-learn loads only where a model is trained or read

    scores: dict[str, float] = {}
    best: Any = None
    best_score = -2.0
    distinct = len(np.unique(x, axis=0))
    for k in range(k_min, k_max + 1):
        on_k(k)
        if k >= distinct:
            break  # more clusters than distinct visitors: nothing left to split
        model = KMeans(n_clusters=k, n_init=10, random_state=SEED).fit(x)
        sample = min(len(x), SILHOUETTE_SAMPLE)
        score = float(silhouette_score(x, model.labels_, sample_size=sample, random_state=SEED))
        scores[str(k)] = round(score, 4)
        if score > best_score:
            best, best_score = model, score
    return best, scores


def cluster_run_execute(*, run_id: int) -> ClusterRun:
    """Run (or rerun) a clustering. Bad input ends the run as failed with a clear message."""
    from sklearn.decomposition import PCA  # noqa: PLC0415  scikit-learn loads only where a model is trained or read

    run = ClusterRun.objects.get(pk=run_id)
    run.status, run.started_at, run.progress, run.message = (
        RunStatus.RUNNING,
        timezone.now(),
        0,
        "reading signals",
    )
    run.save(update_fields=["status", "started_at", "progress", "message"])
    try:
        ids, x = dataset(run.property_id, run.window_days)
        if len(ids) < MIN_ROWS:
            raise ApplicationError(
                "too_few_rows",
                f"Only {len(ids)} consenting visitors in the last {run.window_days} days; "
                f"clustering needs at least {MIN_ROWS}.",
            )
        if run.k_max >= len(ids):
            raise ApplicationError(
                "k_too_large",
                f"The k range {run.k_min}–{run.k_max} needs more visitors than the "
                f"{len(ids)} in the window: lower k_max below {len(ids)}.",
            )
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0
        z = (x - mean) / scale
        span = run.k_max - run.k_min + 1

        def on_k(k: int) -> None:
            _progress(run, 10 + int(80 * (k - run.k_min) / span), f"fitting k={k}")

        model, scores = _fit(z, run.k_min, run.k_max, on_k)
        if model is None:
            raise ApplicationError(
                "too_few_distinct",
                f"The visitors' signals are too alike to split into {run.k_min} or more clusters.",
            )
        _progress(run, 92, "describing clusters")
        labels = model.labels_
        centers = model.cluster_centers_
        projection = _projection(PCA, z, labels)
        clusters = []
        for index, center in enumerate(centers):
            size = int((labels == index).sum())
            standardized = [round(float(c), 4) for c in center]
            means = {
                name: round(float(v), 3)
                for name, v in zip(features.FEATURE_NAMES, center * scale + mean, strict=True)
            }
            apart = sorted(range(len(standardized)), key=lambda i: -abs(standardized[i]))[:4]
            clusters.append(
                Cluster(
                    index=index,
                    size=size,
                    share=round(size / len(ids), 4),
                    centroid=standardized,
                    means=means,
                    description=features.describe(standardized)[:300],
                    distinct=[
                        {
                            "signal": features.FEATURE_NAMES[i],
                            "z": standardized[i],
                            "value": means[features.FEATURE_NAMES[i]],
                            "average": round(float(mean[i]), 3),
                        }
                        for i in apart
                    ],
                )
            )
        with transaction.atomic():
            run = ClusterRun.objects.select_for_update().get(pk=run.pk)
            _replace_clusters(run, clusters)
            TrainingMember.objects.filter(cluster_run=run).delete()
            privacy.members_record(run.property_id, ids, run=run)
            run.rows = len(ids)
            run.k = len(centers)
            run.silhouette = scores[str(len(centers))]
            run.silhouettes = scores
            run.features = list(features.FEATURE_NAMES)
            run.scaler_mean = [float(v) for v in mean]
            run.scaler_scale = [float(v) for v in scale]
            run.projection = projection
            run.stale = False
            _drift(run)
            run.status, run.progress = RunStatus.DONE, 100
            run.message = f"{len(centers)} clusters of {len(ids)} visitors"
            run.finished_at = timezone.now()
            run.save()
        _bump_if_adopted(run)
    except ApplicationError as exc:
        _fail(run, exc.message)
    except Exception as exc:  # noqa: BLE001 - a failed run says why; the task does not crash
        logger.exception("clustering run %s failed", run.pk)
        _fail(run, f"Clustering failed: {exc}")
    return ClusterRun.objects.get(pk=run.pk)


def _fail(run: ClusterRun, message: str) -> None:
    ClusterRun.objects.filter(pk=run.pk).update(
        status=RunStatus.FAILED, message=message, finished_at=timezone.now()
    )


def _projection(pca_class: Any, z: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """A sample of visitors on the first two principal axes (no ids: points and labels)."""
    pca = pca_class(n_components=2, random_state=SEED).fit(z)
    rng = np.random.default_rng(SEED)
    pick = rng.choice(len(z), size=min(len(z), PROJECTION_POINTS), replace=False)
    xy = pca.transform(z[np.sort(pick)])
    return {
        "x": [round(float(v), 3) for v in xy[:, 0]],
        "y": [round(float(v), 3) for v in xy[:, 1]],
        "cluster": [int(labels[i]) for i in np.sort(pick)],
        "explained": [round(float(v), 4) for v in pca.explained_variance_ratio_],
    }


def _replace_clusters(run: ClusterRun, clusters: list[Cluster]) -> None:
    """Swap a run's clusters, keeping each adopted segment on its nearest new centroid."""
    old = list(Cluster.objects.filter(run=run).prefetch_related("segments"))
    for c in clusters:
        c.run = run
    for c in old:
        c.index = 1000 + c.index  # free the indexes for the new clusters
        c.save(update_fields=["index"])
    created = Cluster.objects.bulk_create(clusters)
    for c in old:
        adopted = list(c.segments.all())
        if adopted:
            target = _nearest(created, c.centroid)
            Segment.objects.filter(pk__in=[s.pk for s in adopted]).update(cluster=target)
    Cluster.objects.filter(pk__in=[c.pk for c in old]).delete()


def _nearest(clusters: list[Cluster], centroid: list[float]) -> Cluster:
    point = np.array(centroid)
    return min(clusters, key=lambda c: float(((np.array(c.centroid) - point) ** 2).sum()))


def _drift(run: ClusterRun) -> None:
    """Compare with the previous finished run of the property: matched by nearest centroid,
    a share or centroid moving beyond the run's thresholds flags drift."""
    previous = (
        ClusterRun.objects.filter(property_id=run.property_id, status=RunStatus.DONE)
        .exclude(pk=run.pk)
        .filter(created_at__lte=run.created_at)
        .order_by("-created_at", "-pk")
        .first()
    )
    run.previous = previous
    if previous is None or previous.features != run.features:
        run.drift, run.drifted = {}, False
        return
    # Both runs in the previous run's units, so a centroid shift is in standard deviations.
    prev_clusters = list(previous.clusters.all())
    mean, scale = np.array(run.scaler_mean), np.array(run.scaler_scale)
    p_mean, p_scale = np.array(previous.scaler_mean), np.array(previous.scaler_scale)
    moves = []
    for c in Cluster.objects.filter(run=run):
        raw = np.array(c.centroid) * scale + mean
        in_previous = ((raw - p_mean) / p_scale).tolist()
        match = _nearest(prev_clusters, in_previous)
        shift = float(np.sqrt(((np.array(match.centroid) - in_previous) ** 2).mean()))
        moves.append(
            {
                "cluster": c.index,
                "matched": match.index,
                "share": c.share,
                "previous_share": match.share,
                "share_change": round(c.share - match.share, 4),
                "centroid_shift": round(shift, 4),
            }
        )
    drifted = len(prev_clusters) != run.k or any(
        abs(m["share_change"]) > run.drift_share or m["centroid_shift"] > run.drift_centroid
        for m in moves
    )
    run.drift = {"previous": previous.pk, "k_before": len(prev_clusters), "clusters": moves}
    run.drifted = drifted


def _bump_if_adopted(run: ClusterRun) -> None:
    if Segment.objects.filter(cluster__run=run).exists():
        config_bump(run.property_id)


@transaction.atomic
def cluster_adopt(*, cluster: Cluster, key: str, name: str = "", user: Any = None) -> Segment:
    """Make a cluster a segment: membership by nearest centroid of its run at decision time."""
    run = cluster.run
    if run.status != RunStatus.DONE:
        raise ApplicationError("run_not_done", "Only a finished run's clusters can be adopted.")
    if Segment.objects.filter(property_id=run.property_id, key=key).exists():
        raise ApplicationError("segment_exists", f"A segment {key!r} already exists.")
    segment = Segment.objects.create(
        property_id=run.property_id,
        key=key,
        name=name or cluster.description[:120],
        cluster=cluster,
    )
    audit_action(
        AuditAction.CLUSTER_ADOPTED,
        cluster,
        property_id=run.property_id,
        user=user,
        details={"segment": segment.key},
    )
    return segment


class _Centroids:
    """A run's scaler and centroids: the nearest cluster of a visitor's attributes."""

    def __init__(self, run_id: int, mean: list, scale: list, centroids: list) -> None:
        self.memo = f"_nearest_{run_id}"
        self.mean = np.array(mean)
        self.scale = np.array(scale)
        self.centroids = np.array(centroids)

    def nearest(self, attributes: Mapping[str, Any]) -> int:
        memo = attributes.get(self.memo)
        if memo is not None:
            return int(memo)
        point = (np.array(features.vector(dict(attributes))) - self.mean) / self.scale
        index = int(((self.centroids - point) ** 2).sum(axis=1).argmin())
        if isinstance(attributes, dict):
            attributes[self.memo] = index  # several segments of one run: compute once
        return index


def memberships(segments: list[Segment]) -> dict[int, CompiledCondition]:
    """Compiled membership of each segment adopted from a cluster (one query)."""
    wanted = {s.cluster_id for s in segments if s.cluster_id is not None}
    if not wanted:
        return {}
    out: dict[int, CompiledCondition] = {}
    runs: dict[int, _Centroids | None] = {}
    rows = Cluster.objects.filter(pk__in=wanted).select_related("run")
    for cluster in rows:
        run = cluster.run
        if run.pk not in runs:
            ok = run.features == list(features.FEATURE_NAMES) and run.scaler_mean
            centroids = [
                c.centroid for c in sorted(Cluster.objects.filter(run=run), key=lambda c: c.index)
            ]
            runs[run.pk] = (
                _Centroids(run.pk, run.scaler_mean, run.scaler_scale, centroids) if ok else None
            )
        compiled = runs[run.pk]
        index = cluster.index

        def matcher(
            attributes: Mapping[str, Any],
            groups: Any,
            c: _Centroids | None = compiled,
            i: int = index,
        ) -> bool:
            return c is not None and c.nearest(attributes) == i

        out[cluster.pk] = CompiledCondition(
            {"$nearestCentroid": {"run": run.pk, "cluster": index}}, matcher
        )
    return out
