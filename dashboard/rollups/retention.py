"""Retention cohorts: visitors by first-seen week, active in each later week.

A visitor is seen when a decision is logged for them. Their group: not consented
unless one of their decisions was made under consent to personalization; else
holdout (held out by their id, so for good) or personalized. Recomputed whole, daily.
"""

import time
from collections import defaultdict

from django.db import transaction
from django.utils import timezone

from ..models import RetentionCohortDaily, RollupKind
from . import state
from .sql import GRANTS_PERSONALIZATION, as_date, dialect, fetch


def _sql() -> str:
    d = dialect()
    return f"""
        WITH firsts AS (
            SELECT d.visitor_id, MIN(d.created_at) AS first_at,
                MAX(CASE WHEN c.id IS NOT NULL AND CAST(c.granted AS TEXT) LIKE %s
                    THEN 1 ELSE 0 END) AS consented,
                MAX(CASE WHEN d.holdout THEN 1 ELSE 0 END) AS held
            FROM personalization_decision d
            LEFT JOIN consent_consentrecord c ON c.id = d.consent_record_id
            WHERE d.property_id = %s
            GROUP BY d.visitor_id
        ), weeks AS (
            SELECT DISTINCT d.visitor_id, {d.week("d.created_at")} AS week
            FROM personalization_decision d WHERE d.property_id = %s
        )
        SELECT {d.week("f.first_at")} AS cohort, w.week,
            CASE WHEN f.consented = 0 THEN 'not_consented'
                WHEN f.held = 1 THEN 'holdout' ELSE 'personalized' END AS grp,
            COUNT(*)
        FROM firsts f JOIN weeks w ON w.visitor_id = f.visitor_id
        GROUP BY 1, 2, 3
    """


def retention_compute(property_id: int) -> int:
    """Replace all cohort rows of a property."""
    active: dict[tuple, int] = {}
    sizes: dict[tuple, int] = defaultdict(int)
    for cohort, week, group, count in fetch(
        _sql(), [GRANTS_PERSONALIZATION, property_id, property_id]
    ):
        cohort_week, weeks_since = as_date(cohort), (as_date(week) - as_date(cohort)).days // 7
        if weeks_since < 0:
            continue
        active[(cohort_week, weeks_since, group)] = int(count)
        if weeks_since == 0:
            sizes[(cohort_week, group)] = int(count)
    rows = [
        RetentionCohortDaily(
            property_id=property_id,
            cohort_week=cohort_week,
            weeks_since=weeks_since,
            group=group,
            cohort_size=sizes[(cohort_week, group)],
            active=count,
        )
        for (cohort_week, weeks_since, group), count in sorted(active.items())
    ]
    with transaction.atomic():
        RetentionCohortDaily.objects.filter(property_id=property_id).delete()
        RetentionCohortDaily.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


def rollup_retention(*, property_id: int, full: bool = True) -> state.RollupResult:
    """Recompute a property's cohorts (always whole: a visitor's group can change)."""
    started = time.monotonic()
    now = timezone.now()
    result = state.RollupResult(RollupKind.RETENTION, property_id)
    result.rows = retention_compute(property_id)
    result.start, result.end = None, now
    state.state_save(result, now, started)
    return result
