"""Scores at decision time: ``model.<key>.score`` and a slot's best variant.

The rule set compiles which models its conditions and slots read and which version of
each is promoted (:func:`compiled_models`); a process loads a version's artifact once
(cached by its digest) and predicts one row per variant of the model's slot. What a
condition reads, per model key:

* ``model.<key>.score`` — the predicted chance of the goal with the slot's default variant;
* ``model.<key>.variants.<variant>`` — the chance with each variant;
* ``model.<key>.best`` — the variant with the highest chance; ``model.<key>.version``.

A model without a promoted version, or whose artifact cannot be read, has no entry, and
every clause that reads it does not hold (:func:`guard`) — never an error in ``decide``.
"""

import logging
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from ..conditions import namespace_keys
from ..models import ModelVersion, PropensityModel, VersionStatus
from . import features
from .propensity import artifact_load

logger = logging.getLogger(__name__)

PREFIX = "model."


@dataclass(frozen=True)
class CompiledModel:
    key: str
    version: int
    version_id: int
    digest: str
    variants: tuple[str, ...]
    default: str


def referenced(condition: Any) -> set[str]:
    """Model keys a condition reads (``model.<key>.…``), at any depth."""
    return namespace_keys(condition, "model")


def guard(condition: Any) -> Any:
    """The condition with every clause on a model path made to fail when the score is
    missing (the language otherwise reads a missing number as 0). Unchanged otherwise."""
    if not referenced(condition):
        return condition
    return _guard(condition)


def _guard(node: Any) -> Any:
    if not isinstance(node, Mapping):
        return node
    out: dict[str, Any] = {}
    extra: list[dict[str, Any]] = []
    for key, value in node.items():
        if key in ("$and", "$or", "$nor") and isinstance(value, list):
            out[key] = [_guard(v) for v in value]
        elif key == "$not":
            out[key] = _guard(value)
        elif isinstance(key, str) and key.startswith(PREFIX):
            extra.append({key: {"$exists": True}})
            extra.append({key: value})
        else:
            out[key] = value
    if not extra:
        return out
    return {"$and": [*extra, out]} if out else {"$and": extra}


def model_key_problems(property_id: int, condition: Any) -> list[str]:
    """A condition's model keys the property does not have, in words for the admin."""
    keys = referenced(condition)
    if not keys:
        return []
    known = set(
        PropensityModel.objects.filter(property_id=property_id).values_list("key", flat=True)
    )
    return [
        f'model "{key}" does not exist for this property'
        + (f" (models: {', '.join(sorted(known))})" if known else " (it has no models yet)")
        for key in sorted(keys - known)
    ]


def compiled_models(property_id: int, keys: Iterable[str]) -> dict[str, CompiledModel]:
    """The promoted version of each model key (one query); keys without one are absent."""
    wanted = set(keys)
    if not wanted:
        return {}
    out: dict[str, CompiledModel] = {}
    rows = (
        ModelVersion.objects.filter(
            model__property_id=property_id,
            model__key__in=wanted,
            status=VersionStatus.PROMOTED,
        )
        .exclude(digest="")
        .select_related("model__slot")
        .only("pk", "version", "digest", "variants", "model__key", "model__slot__default_variant")
    )
    for v in rows:
        out[v.model.key] = CompiledModel(
            key=v.model.key,
            version=v.version,
            version_id=v.pk,
            digest=v.digest,
            variants=tuple(v.variants),
            default=v.model.slot.default_variant,
        )
    return out


class Forest:
    """A fitted binary ``HistGradientBoostingClassifier`` as plain lists, walked in Python.

    scikit-learn's own ``predict_proba`` validates its input and starts an OpenMP team on
    every call: on one row per variant that costs far more than the trees (and stalls when
    the cores are busy). The trees themselves are a few comparisons each.
    """

    def __init__(self, estimator: Any) -> None:
        self.baseline = float(np.ravel(estimator._baseline_prediction)[0])
        self.trees: list[tuple[list, ...]] = []
        for (predictor,) in estimator._predictors:
            nodes = predictor.nodes
            if nodes["is_categorical"].any():
                raise ValueError("categorical splits are not supported")
            self.trees.append(
                (
                    nodes["is_leaf"].astype(bool).tolist(),
                    nodes["feature_idx"].tolist(),
                    nodes["num_threshold"].tolist(),
                    nodes["left"].tolist(),
                    nodes["right"].tolist(),
                    nodes["value"].tolist(),
                    nodes["missing_go_to_left"].astype(bool).tolist(),
                )
            )

    def predict_one(self, row: list[float]) -> float:
        raw = self.baseline
        for leaf, feature, threshold, left, right, value, missing_left in self.trees:
            node = 0
            while not leaf[node]:
                x = row[feature[node]]
                if x != x:  # NaN
                    node = left[node] if missing_left[node] else right[node]
                else:
                    node = left[node] if x <= threshold[node] else right[node]
            raw += value[node]
        return 1.0 / (1.0 + math.exp(-raw))


def forest_from(estimator: Any, width: int) -> Forest:
    """The estimator's trees as a :class:`Forest`, checked against its own predictions."""
    forest = Forest(estimator)
    probe = np.random.default_rng(0).random((4, width)) * 10
    with threadpool_limits(1):
        expected = estimator.predict_proba(probe)[:, 1]
    got = [forest.predict_one(r) for r in probe.tolist()]
    if not np.allclose(expected, got, atol=1e-9):
        raise ValueError("the compiled trees disagree with the estimator")
    return forest


_forests: dict[str, Forest | None] = {}
_lock = threading.Lock()
_MISSING = object()


def _forest(model: CompiledModel) -> Forest | None:
    """The version's trees, loaded once per process and cached by digest (None when the
    artifact cannot be read: no score, never an error)."""
    found = _forests.get(model.digest, _MISSING)
    if found is not _MISSING:
        return found  # type: ignore[return-value]
    forest = None
    try:
        raw = (
            ModelVersion.objects.filter(pk=model.version_id, digest=model.digest)
            .values_list("artifact", flat=True)
            .first()
        )
        if raw:
            loaded = artifact_load(raw)
            forest = forest_from(loaded["estimator"], len(loaded["features"]))
    except Exception:  # noqa: BLE001 - an unreadable artifact means no score, not a crash
        logger.exception("model %s v%s could not be loaded", model.key, model.version)
    with _lock:
        _forests[model.digest] = forest
    return forest


def scores(models: Mapping[str, CompiledModel], attributes: Mapping[str, Any]) -> dict[str, Any]:
    """What ``model.<key>`` reads for this visitor, for every compiled model."""
    out: dict[str, Any] = {}
    for key, model in models.items():
        try:
            forest = _forest(model)
            if forest is None:
                continue
            base = features.vector(dict(attributes))
            onehot = [0.0] * len(model.variants)
            by_variant: dict[str, float] = {}
            for i, variant in enumerate(model.variants):
                onehot[i] = 1.0
                by_variant[variant] = round(forest.predict_one(base + onehot), 6)
                onehot[i] = 0.0
            best = max(model.variants, key=lambda v: by_variant[v])
            out[key] = {
                "score": by_variant.get(model.default, by_variant[best]),
                "variants": by_variant,
                "best": best,
                "version": model.version,
            }
        except Exception:  # noqa: BLE001 - a failing model is a missing score
            logger.exception("model %s could not score", key)
    return out
