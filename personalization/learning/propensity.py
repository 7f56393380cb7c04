"""Propensity models: the chance of a goal for a visitor shown each variant of a slot.

The training set is the adjustment log of the model's slot over its window — one row per
logged answer, the signals the decision read (``Decision.signals``) plus the variant
shown — labelled by the goal within its attribution window (the experiments' measure).
Only visitors who may be learned from are used (:mod:`.privacy`). A
``HistGradientBoostingClassifier`` is fitted on three quarters and judged on the held-out
quarter (AUC, Brier score, calibration, permutation importances). A version is promoted
only when it beats the promoted one on the same held-out rows (or, for the first, a
constant prediction); otherwise it is kept and marked.
"""

import hashlib
import io
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from threadpoolctl import threadpool_limits

from consent.faults import fault_pause

from ..config_version import config_bump
from ..exceptions import ApplicationError
from ..hotstate import decision_log_flush
from ..models import (
    Adjustment,
    Decision,
    Event,
    GoalKind,
    GoalMetric,
    ModelVersion,
    PropensityModel,
    TrainingMember,
    VersionStatus,
)
from ..services.audit import AuditAction, audit_action
from ..services.experiments import Exposure, _value_python
from . import features, privacy

logger = logging.getLogger(__name__)

MIN_ROWS_FLOOR = 20
MIN_PER_CLASS = 5
HOLDOUT = 0.25
SEED = 0
CHUNK = 2000
# A training takes seconds to minutes; one still "training" after this has lost its task.
STUCK_AFTER = timedelta(hours=1)


@dataclass
class TrainingSet:
    visitors: list[str]
    x: np.ndarray
    y: np.ndarray
    variants: list[str]
    window_start: datetime
    window_end: datetime


def model_problems(model: PropensityModel) -> list[str]:
    """What makes a model definition untrainable, in words for the admin."""
    problems = []
    goal = model.goal
    if goal.kind != GoalKind.BINARY or goal.metric != GoalMetric.EVENT:
        problems.append(
            f"The goal {goal.key!r} must be binary and count events (e.g. a click on the CTA)."
        )
    if goal.property_id != model.property_id or model.slot.property_id != model.property_id:
        problems.append("The slot and the goal must belong to the model's property.")
    return problems


def row(signals: dict[str, Any], variant: str, variants: list[str]) -> list[float]:
    """One model input: the signal vector and the variant shown, one-hot."""
    return features.vector(signals) + [1.0 if variant == v else 0.0 for v in variants]


def feature_names(variants: list[str]) -> list[str]:
    return list(features.FEATURE_NAMES) + [f"variant={v}" for v in variants]


def training_set(model: PropensityModel, now: datetime | None = None) -> TrainingSet:
    """The slot's logged answers in the window whose goal window has closed, labelled."""
    decision_log_flush()  # decisions still pending in Redis are part of the log
    now = now or timezone.now()
    goal = model.goal
    end = now - timedelta(hours=goal.window_hours)
    start = now - timedelta(days=model.window_days)
    answers = list(
        Adjustment.objects.filter(
            property_id=model.property_id,
            slot_key=model.slot.key,
            created_at__gte=start,
            created_at__lte=end,
            # Page-load answers only: a live entry fired in the page is logged with the page's
            # signals, not the visitor and session features the model reads at decide.
            decision__trigger="load",
        )
        .order_by("created_at", "pk")
        .values_list("visitor_id", "session_id", "variant_key", "created_at", "decision_id")
    )
    allowed = privacy.eligible(model.property_id, (a[0] for a in answers))
    answers = [a for a in answers if a[0] in allowed]
    variants = sorted(
        set(model.slot.variants.values_list("key", flat=True)) | {a[2] for a in answers}
    )
    visitors, rows, labels = [], [], []
    for i in range(0, len(answers), CHUNK):
        chunk = answers[i : i + CHUNK]
        signals = dict(
            Decision.objects.filter(pk__in=[a[4] for a in chunk]).values_list("pk", "signals")
        )
        events: dict[str, list[tuple]] = defaultdict(list)
        for ev in Event.objects.filter(
            property_id=model.property_id,
            visitor_id__in={a[0] for a in chunk},
            type=goal.event_type,
            timestamp__gte=start,
        ).values_list("visitor_id", "type", "timestamp", "session_id", "properties"):
            events[ev[0]].append(ev[1:])
        for vid, sid, variant, at, decision_pk in chunk:
            value = _value_python(goal, Exposure(variant, at, sid), events[vid], [])
            visitors.append(vid)
            rows.append(row(signals.get(decision_pk) or {}, variant, variants))
            labels.append(1 if value > 0 else 0)
    width = len(features.FEATURE_NAMES) + len(variants)
    return TrainingSet(
        visitors=visitors,
        x=np.array(rows, dtype=float).reshape(len(rows), width),
        y=np.array(labels, dtype=int),
        variants=variants,
        window_start=start,
        window_end=end,
    )


def check_trainable(data: TrainingSet, min_rows: int) -> None:
    """Refuse, in words, a training set too small or with one class only."""
    needed = max(min_rows, MIN_ROWS_FLOOR)
    n = len(data.y)
    if n < needed:
        raise ApplicationError(
            "too_few_rows", f"Only {n} logged answers in the window; training needs {needed}."
        )
    positives = int(data.y.sum())
    if positives == 0 or positives == n:
        which = "no visitor reached" if positives == 0 else "every visitor reached"
        raise ApplicationError(
            "one_class", f"All {n} rows have the same outcome ({which} the goal): nothing to learn."
        )
    if min(positives, n - positives) < MIN_PER_CLASS:
        raise ApplicationError(
            "too_few_outcomes",
            f"Only {min(positives, n - positives)} rows of the rarer outcome; "
            f"training needs {MIN_PER_CLASS} of each.",
        )


def fit(data: TrainingSet) -> dict[str, Any]:
    """Fit on three quarters, measure on the held-out quarter."""
    from sklearn.calibration import calibration_curve  # noqa: PLC0415  scikit-learn loads only where a model is trained or read
    from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: PLC0415  scikit-learn loads only where a model is trained or read
    from sklearn.inspection import permutation_importance  # noqa: PLC0415  scikit-learn loads only where a model is trained or read
    from sklearn.metrics import brier_score_loss, roc_auc_score  # noqa: PLC0415  scikit-learn loads only where a model is trained or read
    from sklearn.model_selection import train_test_split  # noqa: PLC0415  scikit-learn loads only where a model is trained or read

    x_train, x_test, y_train, y_test = train_test_split(
        data.x, data.y, test_size=HOLDOUT, random_state=SEED, stratify=data.y
    )
    # Shallow, regularised trees: training sets are hundreds of rows, not millions.
    clf = HistGradientBoostingClassifier(
        max_iter=100, learning_rate=0.1, max_depth=3, min_samples_leaf=20, random_state=SEED
    )
    with threadpool_limits(1):  # one worker, one core: OpenMP teams only contend here
        clf.fit(x_train, y_train)
        p = clf.predict_proba(x_test)[:, 1]
    auc = float(roc_auc_score(y_test, p)) if len(set(y_test)) == 2 else None
    observed, predicted = calibration_curve(y_test, p, n_bins=5, strategy="quantile")
    names = feature_names(data.variants)
    with threadpool_limits(1):
        importance = permutation_importance(
            clf, x_test, y_test, scoring="roc_auc", n_repeats=5, random_state=SEED
        )
    grouped: dict[str, float] = defaultdict(float)
    for name, value in zip(names, importance.importances_mean, strict=True):
        grouped["variant" if name.startswith("variant=") else name] += float(value)
    return {
        "estimator": clf,
        "x_test": x_test,
        "y_test": y_test,
        "auc": auc,
        "brier": float(brier_score_loss(y_test, p)),
        "calibration": [
            {"predicted": round(float(a), 4), "observed": round(float(b), 4)}
            for a, b in zip(predicted, observed, strict=True)
        ],
        "importances": sorted(
            ({"feature": k, "importance": round(v, 5)} for k, v in grouped.items()),
            key=lambda d: -d["importance"],
        ),
    }


def artifact_dump(estimator: Any, names: list[str], variants: list[str]) -> tuple[bytes, str]:
    import joblib  # noqa: PLC0415  scikit-learn loads only where a model is trained or read

    buffer = io.BytesIO()
    joblib.dump({"estimator": estimator, "features": names, "variants": variants}, buffer)
    raw = buffer.getvalue()
    return raw, hashlib.sha256(raw).hexdigest()


def artifact_load(raw: bytes | memoryview) -> dict[str, Any]:
    import joblib  # noqa: PLC0415  scikit-learn loads only where a model is trained or read

    return dict(joblib.load(io.BytesIO(bytes(raw))))


def _baseline_auc(current: ModelVersion | None, fitted: dict, variants: list[str]) -> float:
    """The promoted version's AUC on the new held-out rows (its own, if inputs differ)."""
    from sklearn.metrics import roc_auc_score  # noqa: PLC0415  scikit-learn loads only where a model is trained or read

    if current is None:
        return 0.5  # a constant prediction
    if current.artifact and list(current.variants) == variants:
        try:
            loaded = artifact_load(current.artifact)
            if loaded["features"] == feature_names(variants):
                with threadpool_limits(1):
                    p = loaded["estimator"].predict_proba(fitted["x_test"])[:, 1]
                return float(roc_auc_score(fitted["y_test"], p))
        except Exception:  # noqa: BLE001 - an unreadable artifact compares by its stored AUC
            logger.exception("model version %s could not be reloaded", current.pk)
    return float(current.auc or 0.5)


def data_problems(model: PropensityModel) -> list[str]:
    """A quick look before queueing: enough logged answers in the window at all?
    (Training checks again on the rows of visitors who may be learned from.)"""
    now = timezone.now()
    rows = Adjustment.objects.filter(
        property_id=model.property_id,
        slot_key=model.slot.key,
        created_at__gte=now - timedelta(days=model.window_days),
        created_at__lte=now - timedelta(hours=model.goal.window_hours),
    ).count()
    needed = max(model.min_rows, MIN_ROWS_FLOOR)
    if rows < needed:
        return [
            f"Only {rows} logged answers of the slot {model.slot.key!r} in the window "
            f"(whose goal window has closed); training needs {needed}."
        ]
    return []


def version_start(
    *, model: PropensityModel, user: Any = None, enqueue: bool = False
) -> ModelVersion:
    """Record a new version in training; ``enqueue`` trains it in the worker on commit."""
    problems = model_problems(model)
    if problems:
        raise ApplicationError("invalid_model", " ".join(problems))
    with transaction.atomic():
        PropensityModel.objects.select_for_update().get(pk=model.pk)
        last = model.versions.aggregate(n=Max("version"))["n"] or 0
        version = ModelVersion.objects.create(
            model=model,
            version=last + 1,
            created_by=user if getattr(user, "pk", None) else None,
        )
        audit_action(
            AuditAction.MODEL_TRAINING_STARTED,
            model,
            property_id=model.property_id,
            user=user,
            details={"version": version.version},
        )
        if enqueue:
            from .tasks import model_train_task  # noqa: PLC0415  a service enqueues its own sub-package's task (HackSoft's back-edge)

            transaction.on_commit(partial(model_train_task.delay, version.pk))
    return version


def _set(version: ModelVersion, **values: Any) -> None:
    for k, v in values.items():
        setattr(version, k, v)
    ModelVersion.objects.filter(pk=version.pk).update(**values)


def version_train(*, version_id: int, force_promote: bool = False) -> ModelVersion:
    """Train a version; promote it if it beats the promoted one. Bad data fails the version
    with a clear message, never an exception. ``force_promote``: replace a promoted version
    that may no longer be used (trained on an erased visitor) whatever the comparison."""
    version = ModelVersion.objects.select_related("model__goal", "model__slot").get(pk=version_id)
    if version.status != VersionStatus.TRAINING:
        return version  # already trained: a retried task changes nothing
    model = version.model
    try:
        _set(version, progress=10, message="reading the adjustment log")
        data = training_set(model)
        _set(version, rows=len(data.y), positives=int(data.y.sum()))
        check_trainable(data, model.min_rows)
        _set(version, progress=40, message="fitting")
        fault_pause("LEARNING_FAULT_PAUSE_SECONDS")
        fitted = fit(data)
        _set(version, progress=80, message="comparing with the promoted version")
        names = feature_names(data.variants)
        raw, digest = artifact_dump(fitted["estimator"], names, data.variants)
        with transaction.atomic():
            # A duplicate delivery (or a stale version resumed) that another run finished
            # first: the first result stands.
            mine = ModelVersion.objects.select_for_update().filter(
                pk=version.pk, status=VersionStatus.TRAINING
            )
            if not mine.exists():
                version.refresh_from_db()
                return version
            current = (
                ModelVersion.objects.select_for_update()
                .filter(model=model, status=VersionStatus.PROMOTED)
                .exclude(pk=version.pk)
                .first()
            )
            baseline = _baseline_auc(current, fitted, data.variants)
            auc = fitted["auc"]
            wins = auc is not None and auc > baseline
            promote = wins or (force_promote and auc is not None and auc > 0.5)
            verdict = (
                f"held-out AUC {auc:.3f} against {baseline:.3f}"
                if auc is not None
                else "no held-out AUC (one class in the held-out rows)"
            )
            if promote and current is not None:
                current.status = VersionStatus.RETIRED
                current.save(update_fields=["status"])
            _set(
                version,
                status=VersionStatus.PROMOTED if promote else VersionStatus.KEPT,
                progress=100,
                message=("promoted: " if promote else "kept, not promoted: ") + verdict,
                window_start=data.window_start,
                window_end=data.window_end,
                auc=auc,
                baseline_auc=baseline,
                brier=fitted["brier"],
                calibration=fitted["calibration"],
                importances=fitted["importances"],
                features=names,
                variants=data.variants,
                artifact=raw,
                digest=digest,
                stale=False,
            )
            TrainingMember.objects.filter(model_version=version).delete()
            privacy.members_record(model.property_id, set(data.visitors), version=version)
            if promote:
                _promoted(version, current, verdict)
    except ApplicationError as exc:
        _set(version, status=VersionStatus.FAILED, message=exc.message, progress=100)
    except Exception as exc:  # noqa: BLE001 - a failed training says why; the task goes on
        logger.exception("training of model version %s failed", version.pk)
        _set(version, status=VersionStatus.FAILED, message=f"Training failed: {exc}", progress=100)
    version.refresh_from_db()
    return version


def _promoted(version: ModelVersion, replaced: ModelVersion | None, verdict: str) -> None:
    """In the promotion's transaction: serving processes reload, and the log says so."""
    config_bump(version.model.property_id)
    audit_action(
        AuditAction.MODEL_VERSION_PROMOTED,
        version,
        property_id=version.model.property_id,
        details={
            "version": version.version,
            "replaced": replaced.version if replaced is not None else None,
            "verdict": verdict,
        },
    )


def versions_stuck(older_than: timedelta = STUCK_AFTER) -> list[int]:
    """Versions still "training" long after they started: their task was lost (a worker
    killed and the message gone with its broker). Training them again finishes them."""
    return list(
        ModelVersion.objects.filter(
            status=VersionStatus.TRAINING, created_at__lt=timezone.now() - older_than
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def version_retire(*, version: ModelVersion, reason: str) -> None:
    """Stop a version scoring and drop its artifact (e.g. trained on an erased visitor)."""
    was_promoted = version.status == VersionStatus.PROMOTED
    with transaction.atomic():
        _set(version, status=VersionStatus.RETIRED, artifact=None, message=reason)
        TrainingMember.objects.filter(model_version=version).delete()
        if was_promoted:
            config_bump(version.model.property_id)
        audit_action(
            AuditAction.MODEL_VERSION_RETIRED,
            version,
            property_id=version.model.property_id,
            details={"version": version.version, "was_promoted": was_promoted, "reason": reason},
        )
