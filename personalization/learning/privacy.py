"""Who may be learned from, and what an erasure does to what was learned.

Only visitors who granted both ``analytics`` and ``personalization`` are used, and never
one on the suppression list (erased or opted out) or excluded from training. Each run and
model version records its visitors (``TrainingMember``, a registered visitor-data store);
erasing a visitor deletes those rows and marks what they trained as stale, and the
retention purge's next run of the property retrains it without them
(:func:`retrain_stale`, hooked to the consent app's ``RetentionRun``).
"""

import logging
from collections.abc import Iterable

from django.db.models import Q

from consent import selectors as consent_selectors
from consent.hashing import visitor_key

from ..models import ClusterRun, ModelVersion, TrainingMember

logger = logging.getLogger(__name__)

PURPOSES = ("analytics", "personalization")
BATCH = 5000


def eligible(property_id: int, visitor_ids: Iterable[str]) -> set[str]:
    """The visitors among these who may be used for training or clustering."""
    ids = list(dict.fromkeys(visitor_ids))
    excluded = consent_selectors.training_excluded_keys(property_id)
    out: set[str] = set()
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        consents = consent_selectors.consents_effective(property_id, chunk)
        for vid in chunk:
            c = consents.get(vid)
            if c is None or c.suppressed or not all(c.allows(p) for p in PURPOSES):
                continue
            if excluded and visitor_key(property_id, vid) in excluded:
                continue
            out.add(vid)
    return out


def members_record(
    property_id: int,
    visitor_ids: Iterable[str],
    *,
    run: ClusterRun | None = None,
    version: ModelVersion | None = None,
) -> None:
    TrainingMember.objects.bulk_create(
        [
            TrainingMember(
                property_id=property_id,
                visitor_key=visitor_key(property_id, v),
                cluster_run=run,
                model_version=version,
            )
            for v in visitor_ids
        ],
        batch_size=2000,
    )


def training_erase(property_id: int, visitor_id: str) -> dict[str, int]:
    """The training-set store's eraser: forget the visitor's membership and mark every run
    and model version trained on them stale (retrained without them by retention)."""
    rows = TrainingMember.objects.filter(
        property_id=property_id, visitor_key=visitor_key(property_id, visitor_id)
    )
    runs = set(rows.exclude(cluster_run=None).values_list("cluster_run_id", flat=True))
    versions = set(rows.exclude(model_version=None).values_list("model_version_id", flat=True))
    ClusterRun.objects.filter(pk__in=runs).update(stale=True)
    ModelVersion.objects.filter(pk__in=versions).update(stale=True)
    deleted, _ = rows.delete()
    return {TrainingMember._meta.label: deleted}


def stale_for(property_id: int) -> tuple[list[ClusterRun], list[ModelVersion]]:
    """What must be retrained: stale runs and stale versions that are in use or adopted."""
    runs = list(ClusterRun.objects.filter(property_id=property_id, stale=True))
    versions = list(
        ModelVersion.objects.filter(model__property_id=property_id, stale=True).filter(
            Q(status="promoted") | Q(status="kept")
        )
    )
    return runs, versions
