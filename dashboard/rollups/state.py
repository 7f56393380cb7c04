"""Watermarks: per property and rollup kind, which input rows are already folded in."""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Case, F, Min, Q, When
from django.db.models.functions import Trunc
from django.utils import timezone

from ..models import RollupState
from .sql import as_datetime

Progress = Callable[[str], None]
# Ids are taken from a sequence before commit, so a short transaction can land a row with
# a smaller id after a larger one; new input is looked for this many ids back.
ID_SLACK = 1000
SLACK_TIME = timedelta(minutes=10)


@dataclass
class RollupResult:
    kind: str
    property_id: int
    start: datetime | None = None
    end: datetime | None = None
    rows: int = 0
    hours: int = 0  # hourly rollup: how many clock hours were recomputed
    seconds: float = 0.0
    skipped: bool = False
    cursor: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kind = str(self.kind)  # a RollupKind member prints as its value

    def describe(self) -> str:
        if self.skipped:
            return f"{self.kind}: nothing new"
        span = f"{self.start:%Y-%m-%d %H:%M} → {self.end:%Y-%m-%d %H:%M}" if self.start else ""
        return f"{self.kind}: {self.rows} rows {span} in {self.seconds:.2f}s"


def late_cutoff(now: datetime) -> datetime:
    """Input stamped before this is not folded in by an incremental run (``--full`` is)."""
    return now - timedelta(hours=settings.DASHBOARD_LATE_EVENTS_HOURS)


def state_get(property_id: int, kind: str) -> RollupState | None:
    return RollupState.objects.filter(property_id=property_id, kind=kind).first()


def max_id(model: type[models.Model]) -> int:
    """The newest row id of an input table (ids only grow)."""
    return model._default_manager.order_by("-pk").values_list("pk", flat=True).first() or 0


def cursor_for(inputs: dict[str, type[models.Model]]) -> dict[str, Any]:
    """Per input table, the newest row id and the ids missing among the ``ID_SLACK`` before
    it (``<name>_gaps``): ids taken by transactions not committed yet (or rolled back).
    The next run looks at rows that have since appeared with those ids whatever their
    time, so an input committed just after a run read the newest id is never missed."""
    cursor: dict[str, Any] = {}
    for name, model in inputs.items():
        upto = max_id(model)
        low = max(0, upto - ID_SLACK)
        present = set(
            model._default_manager.filter(pk__gt=low, pk__lte=upto).values_list("pk", flat=True)
        )
        cursor[name] = upto
        gaps = [i for i in range(low + 1, upto + 1) if i not in present]
        if gaps:
            cursor[f"{name}_gaps"] = gaps
    return cursor


def first_at(model: type[models.Model], property_id: int, time_field: str) -> datetime | None:
    """The earliest ``time_field`` of a property's input rows (where a full run starts)."""
    return (
        model._default_manager.filter(property_id=property_id)
        .order_by(time_field)
        .values_list(time_field, flat=True)
        .first()
    )


def new_rows(
    model: type[models.Model],
    property_id: int,
    time_field: str,
    after_id: int,
    upto_id: int,
    floor: datetime,
    since: datetime,
    gaps: Sequence[int] = (),
) -> tuple[models.QuerySet, Q] | None:
    """The rows to look at for input added since ``after_id``, and the condition a row
    of them must meet to count (None when nothing was added).

    ``gaps``: ids the previous run found missing below ``after_id`` (``cursor_for``); rows
    that now have them committed late and count like new ones. The row-id range alone
    selects the rows (a primary-key range scan over the few rows added since the last
    run); callers put the condition inside their aggregate or expression, so that the
    planner cannot prefer the property's time index, whose range spans days of rows.
    """
    rows = model._default_manager.filter(property_id=property_id, pk__lte=upto_id)
    late = [g for g in gaps if g <= after_id]
    if not rows.filter(pk__gt=after_id).exists() and not (
        late and rows.filter(pk__in=late).exists()
    ):
        return None
    stamped = f"{time_field}__gte"
    recent = Q(pk__gt=after_id, **{stamped: floor})
    slack = Q(**{stamped: max(floor, since - SLACK_TIME)})
    committed_late = Q(pk__in=late, **{stamped: floor}) if late else Q(pk__in=[])
    low = min([after_id - ID_SLACK, *late])
    return rows.filter(pk__gt=max(0, low)), recent | slack | committed_late


def earliest_new(
    model: type[models.Model],
    property_id: int,
    time_field: str,
    after_id: int,
    upto_id: int,
    floor: datetime,
    since: datetime,
    gaps: Sequence[int] = (),
) -> datetime | None:
    """The earliest ``time_field`` among a property's rows added since ``after_id``
    (None when there is none).

    Rows stamped before ``floor`` (later than the late-events lookback) are ignored. The
    ``ID_SLACK`` ids before ``after_id`` are looked at again for rows stamped after the
    previous run began (``since``): rows that committed after it with a smaller id.
    """
    found = new_rows(model, property_id, time_field, after_id, upto_id, floor, since, gaps)
    if found is None:
        return None
    rows, counts = found
    return rows.aggregate(earliest=Min(Case(When(counts, then=F(time_field)), default=None)))[
        "earliest"
    ]


def new_hours(found: tuple[models.QuerySet, Q], time_field: str) -> set[datetime]:
    """The clock hours of ``time_field`` among the rows ``new_rows`` found that count."""
    rows, counts = found
    hour = Trunc(time_field, "hour", output_field=models.DateTimeField(), tzinfo=UTC)
    hours = (
        rows.annotate(new_hour=Case(When(counts, then=hour), default=None))
        .values_list("new_hour", flat=True)
        .distinct()
    )
    return {as_datetime(h) for h in hours if h is not None}


def state_save(result: RollupResult, now: datetime, started: float) -> None:
    result.seconds = time.monotonic() - started
    RollupState.objects.update_or_create(
        property_id=result.property_id,
        kind=result.kind,
        defaults={
            "watermark": now,
            "cursor": result.cursor,
            "last_run_at": timezone.now(),
            "last_duration_ms": int(result.seconds * 1000),
            "last_rows": result.rows,
        },
    )


def hour_floor(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)
