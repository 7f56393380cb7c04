"""Services that compute the dashboard rollups (they write; ``dashboard.selectors`` reads).

Each ``rollup_*`` function handles one property and one kind, is incremental by
default (watermarks in ``RollupState``), idempotent, and replaces whole hours or days
in a transaction. ``rollups_run`` runs the frequent kinds for a set of properties.
"""

from collections.abc import Iterable

from consent.faults import fault_pause
from personalization.models import Property

from .daily import rollup_consent, rollup_fates, rollup_segments
from .hourly import hourly_replace, rollup_hourly
from .retention import rollup_retention
from .state import Progress, RollupResult
from .surveys import rollup_surveys, seen_bucket


def rollups_run(
    *,
    property_ids: Iterable[int] | None = None,
    full: bool = False,
    retention: bool = False,
    progress: Progress | None = None,
) -> list[RollupResult]:
    """Run the hourly, survey, segment, fate and consent rollups (and retention when
    asked) for the given properties, or all of them."""
    ids = (
        list(property_ids)
        if property_ids is not None
        else list(Property.objects.order_by("pk").values_list("pk", flat=True))
    )
    results: list[RollupResult] = []
    for property_id in ids:
        steps = [
            lambda pid=property_id: rollup_hourly(property_id=pid, full=full, progress=progress),
            lambda pid=property_id: rollup_surveys(property_id=pid, full=full),
            lambda pid=property_id: rollup_segments(property_id=pid, full=full),
            lambda pid=property_id: rollup_fates(property_id=pid, full=full),
            lambda pid=property_id: rollup_consent(property_id=pid, full=full),
        ]
        if retention:
            steps.append(lambda pid=property_id: rollup_retention(property_id=pid))
        for step in steps:
            result = step()
            results.append(result)
            if progress:
                progress(f"property {property_id}: {result.describe()}")
            fault_pause("DASHBOARD_FAULT_PAUSE_SECONDS")
    return results


__all__ = [
    "RollupResult",
    "hourly_replace",
    "rollup_consent",
    "rollup_fates",
    "rollup_hourly",
    "rollup_retention",
    "rollup_segments",
    "rollup_surveys",
    "rollups_run",
    "seen_bucket",
]
