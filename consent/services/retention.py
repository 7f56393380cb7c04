"""Retention: each property's periods, and the daily purge over the registry's stores.

The purge deletes in small batches, each its own short transaction, so no table is
locked for long and ingestion carries on meanwhile. Rerunning it removes nothing
more. Each property's run is recorded (``RetentionRun``) with the cut-off per kind
and the rows removed per store.
"""

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .. import registry
from ..exceptions import DomainError
from ..holdings import property_model
from ..models import RetentionPolicy, RetentionRun
from ..selectors import retention_periods
from .audit import audit_record

FIELDS = {
    "raw_events": "raw_events_days",
    "quarantine": "quarantine_days",
    "adjustment_log": "adjustment_log_days",
    "survey_answers": "survey_answers_days",
}


@transaction.atomic
def retention_policy_set(
    *, property_id: int, periods: dict[str, int], user: Any
) -> RetentionPolicy:
    unknown = sorted(set(periods) - set(FIELDS))
    if unknown:
        raise DomainError("invalid_retention", f"Unknown retention kinds: {', '.join(unknown)}.")
    for kind, days in periods.items():
        if not isinstance(days, int) or not 1 <= days <= 3650:
            raise DomainError("invalid_retention", f"{kind}: between 1 and 3650 days.")
    before = retention_periods(property_id)
    after = {**before, **periods}
    policy, _ = RetentionPolicy.objects.update_or_create(
        property_id=property_id,
        defaults={
            **{FIELDS[k]: v for k, v in after.items()},
            "updated_by": user if getattr(user, "pk", None) else None,
        },
    )
    changed = {k: {"from": before[k], "to": after[k]} for k in after if before[k] != after[k]}
    audit_record(
        action="retention.changed",
        property_id=property_id,
        target=f"retention_policy:{policy.pk}",
        details=changed,
        user=user,
    )
    return policy


def _batch_size() -> int:
    return int(getattr(settings, "RETENTION_PURGE_BATCH", 2000))


def retention_purge(*, property_id: int, now: datetime | None = None) -> RetentionRun:
    now = now or timezone.now()
    periods = retention_periods(property_id)
    cutoffs = {kind: now - timedelta(days=days) for kind, days in periods.items()}
    run = RetentionRun.objects.create(
        property_id=property_id,
        started_at=now,
        cutoffs={k: v.isoformat() for k, v in cutoffs.items()},
    )
    removed: dict[str, dict[str, int]] = {}
    for store in registry.stores():
        if store.retention is None or store.time_field is None:
            continue
        manager = store.model._default_manager
        old = manager.filter(
            **{
                store.property_field: property_id,
                f"{store.time_field}__lt": cutoffs[store.retention],
            }
        )
        counts: dict[str, int] = {}
        while True:
            pks = list(old.order_by().values_list("pk", flat=True)[: _batch_size()])
            if not pks:
                break
            with transaction.atomic():
                _, per_model = manager.filter(pk__in=pks).delete()
            for label, n in per_model.items():
                counts[label] = counts.get(label, 0) + n
        if counts:
            removed[store.label] = counts
    run.removed = removed
    run.total = sum(n for counts in removed.values() for n in counts.values())
    run.finished_at = timezone.now()
    run.save(update_fields=["removed", "total", "finished_at"])
    return run


def retention_purge_all(now: datetime | None = None) -> dict[int, int]:
    """Purge every property; returns rows removed per property id."""
    ids = property_model()._default_manager.order_by("pk").values_list("pk", flat=True)
    return {pid: retention_purge(property_id=pid, now=now).total for pid in list(ids)}
