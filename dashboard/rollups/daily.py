"""Daily rollups: segment sizes, event fates per type, consent opt-in per purpose."""

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock

from django.db import models, transaction
from django.db.models import Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from consent.models import ConsentMethod, ConsentRecord
from personalization.models import Decision, IngestStat

from ..models import ConsentDaily, EventFateDaily, RollupKind, SegmentSizeDaily
from . import state
from .sql import as_date, dialect, fetch


def midnight(day: date) -> datetime:
    return datetime.combine(day, clock.min, tzinfo=UTC)


def days_replace(
    model: type[models.Model],
    property_id: int,
    start: date,
    end: date,
    rows: Sequence[models.Model],
) -> int:
    """Replace a property's rows of days [start, end] in one transaction."""
    with transaction.atomic():
        model._default_manager.filter(
            property_id=property_id, day__gte=start, day__lte=end
        ).delete()
        model._default_manager.bulk_create(rows, batch_size=2000)
    return len(rows)


def _run(
    kind: str,
    property_id: int,
    full: bool,
    source: type[models.Model],
    time_field: str,
    compute: Callable[[int, date, date], int],
    cursored: bool = True,
) -> state.RollupResult:
    """Find the first day new input touches (or every day, ``full``) and recompute to today.

    Input without a growing row id (``cursored=False``: rows updated in place) has the
    late-events lookback recomputed on every run.
    """
    started = time.monotonic()
    now = timezone.now()
    result = state.RollupResult(kind, property_id)
    previous = state.state_get(property_id, kind)
    floor = state.late_cutoff(now)
    result.cursor = state.cursor_for({"input": source})
    upto = result.cursor["input"]
    if full or previous is None:
        first = state.first_at(source, property_id, time_field)
        start = first.date() if first else now.date()
        with transaction.atomic():
            _model_of(kind)._default_manager.filter(property_id=property_id, day__lt=start).delete()
    elif not cursored:
        start = floor.date()
    else:
        earliest = state.earliest_new(
            source,
            property_id,
            time_field,
            previous.cursor.get("input", 0),
            upto,
            floor,
            previous.watermark,
            previous.cursor.get("input_gaps", ()),
        )
        if earliest is None:
            result.skipped = True
            state.state_save(result, now, started)
            return result
        start = earliest.date()
    end = now.date()
    result.start, result.end = midnight(start), midnight(end)
    result.rows = compute(property_id, start, end)
    state.state_save(result, now, started)
    return result


def _model_of(kind: str) -> type[models.Model]:
    return {
        RollupKind.SEGMENTS: SegmentSizeDaily,
        RollupKind.FATES: EventFateDaily,
        RollupKind.CONSENT: ConsentDaily,
    }[RollupKind(kind)]


def segments_compute(property_id: int, start: date, end: date) -> int:
    """Distinct visitors per day whose decisions placed them in each segment."""
    d = dialect()
    join, item = d.unnest(d.array_at("d.signals", "segments"), "s")
    rows = fetch(
        f"""
        SELECT {d.day("d.created_at")}, {d.element_text(item)}, COUNT(DISTINCT d.visitor_id)
        FROM personalization_decision d {join}
        WHERE d.property_id = %s AND d.created_at >= %s AND d.created_at < %s
        GROUP BY 1, 2
        """,
        [property_id, midnight(start), midnight(end + timedelta(days=1))],
    )
    objects = [
        SegmentSizeDaily(
            property_id=property_id, day=as_date(day), segment_key=str(key), size=int(size)
        )
        for day, key, size in rows
        if key
    ]
    return days_replace(SegmentSizeDaily, property_id, start, end, objects)


def fates_compute(property_id: int, start: date, end: date) -> int:
    """Event fates per day and type, summed from the ingest's hourly counts."""
    rows = (
        IngestStat.objects.filter(
            property_id=property_id,
            hour__gte=midnight(start),
            hour__lt=midnight(end + timedelta(days=1)),
        )
        .annotate(day=TruncDate("hour"))
        .values("day", "event_type", "fate")
        .annotate(n=Sum("count"))
    )
    objects = [
        EventFateDaily(
            property_id=property_id,
            day=r["day"],
            event_type=r["event_type"],
            fate=r["fate"],
            count=r["n"],
        )
        for r in rows
    ]
    return days_replace(EventFateDaily, property_id, start, end, objects)


def consent_compute(property_id: int, start: date, end: date) -> int:
    """Per day and purpose: consent records that decided it, and how many granted it.

    The ``purpose=""`` row counts all records and, as ``granted``, the GPC opt-outs.
    """
    counts: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
    records = ConsentRecord.objects.filter(
        property_id=property_id,
        created_at__gte=midnight(start),
        created_at__lt=midnight(end + timedelta(days=1)),
    ).values_list("created_at", "granted", "refused", "method")
    for created_at, granted, refused, method in records.iterator(chunk_size=5000):
        day = created_at.date()
        total = counts[(day, "")]
        total[0] += 1
        total[1] += method == ConsentMethod.GPC
        for purpose in {*(granted or []), *(refused or [])}:
            cell = counts[(day, str(purpose)[:32])]
            cell[0] += 1
            cell[1] += purpose in (granted or [])
    objects = [
        ConsentDaily(property_id=property_id, day=day, purpose=purpose, records=n, granted=g)
        for (day, purpose), (n, g) in counts.items()
    ]
    return days_replace(ConsentDaily, property_id, start, end, objects)


def rollup_segments(*, property_id: int, full: bool = False) -> state.RollupResult:
    return _run(RollupKind.SEGMENTS, property_id, full, Decision, "created_at", segments_compute)


def rollup_fates(*, property_id: int, full: bool = False) -> state.RollupResult:
    # Ingest counts are upserted in place (no new ids): the lookback days are recomputed.
    return _run(
        RollupKind.FATES, property_id, full, IngestStat, "hour", fates_compute, cursored=False
    )


def rollup_consent(*, property_id: int, full: bool = False) -> state.RollupResult:
    return _run(RollupKind.CONSENT, property_id, full, ConsentRecord, "created_at", consent_compute)
