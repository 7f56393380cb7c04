"""Hourly adjustment rollup: exposures, attributed outcomes and suppressions.

Attribution: an event counts for an adjustment when it carries the adjustment's
``decision_id``, or when it carries none, is a goal event (click, conversion,
purchase) of the same visitor, and falls inside the slot's attribution window after
the adjustment. Session figures (duration after the exposure, bounce) are taken on
the slot's first exposure in each session.

Incremental runs re-aggregate the whole hours that new adjustments, decisions and
events can touch (``_touched_spans``), and replace those rows in one transaction per
chunk: a rerun changes nothing.
"""

import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Case, DateTimeField, F, Max, Q, QuerySet, When
from django.db.models.functions import Trunc
from django.utils import timezone

from personalization.models import Adjustment, Decision, Event

from ..models import (
    OUTCOME_FIELDS,
    SUPPRESSION_COLUMNS,
    AdjustmentHourly,
    AttributionWindow,
    RollupKind,
)
from . import state
from .sql import (
    GRANTS_PERSONALIZATION,
    Dialect,
    as_datetime,
    dialect,
    fetch,
    group_sql,
    insert_rows,
)

CLICK_TYPES = ("click",)
CONVERSION_TYPES = ("conversion", "purchase")
REVENUE_TYPE = "purchase"
# A new event can lengthen the session of an exposure made this long before it.
SESSION_LOOKBACK = timedelta(hours=2)
# Full runs and long catch-ups are cut into chunks of this many hours (one transaction each).
CHUNK_HOURS = 24
Key = tuple[datetime, str, str, str, int, str, bool, str, str, str]


def _in(values: Iterable[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)  # constants of this module, never input


def _device(d: Dialect) -> str:
    """The session's device type (from its user agent), else the visitor's latest."""
    session = d.json_text("d.signals", "session", "device_type")
    visitor = d.json_text("d.signals", "visitor", "device_type")
    return f"COALESCE(NULLIF({session}, ''), {visitor}, '')"


def _outcome_columns(d: Dialect) -> dict[str, str]:
    """Per exposure, aggregates over its visitor's events ``e``: name → SQL expression."""
    ts = d.scan("e.timestamp")
    attributed = (
        "(e.decision_id = d.decision_id OR (e.decision_id IS NULL AND "
        + d.within_seconds(ts, "a.created_at", "x_window")
        + "))"
    )
    after = f"e.session_id = a.session_id AND {ts} >= a.created_at"
    revenue = d.to_float(d.json_text("e.properties", "revenue"))
    return {
        "clicked": f"MAX(CASE WHEN e.type IN ({_in(CLICK_TYPES)}) AND {attributed} "
        "THEN 1 ELSE 0 END)",
        "converted": f"MAX(CASE WHEN e.type IN ({_in(CONVERSION_TYPES)}) AND {attributed} "
        "THEN 1 ELSE 0 END)",
        "revenue": f"SUM(CASE WHEN e.type = '{REVENUE_TYPE}' AND {attributed} "
        f"THEN {revenue} ELSE 0 END)",
        "last_at": f"MAX(CASE WHEN {after} THEN {ts} END)",
        "views": f"SUM(CASE WHEN {after} AND e.type = 'page_view' THEN 1 ELSE 0 END)",
    }


def _exposures_sql(d: Dialect) -> str:
    same_visitor = "e.property_id = a.property_id AND e.visitor_id = a.visitor_id"
    columns = _outcome_columns(d)
    if d.pg:
        # One pass over the visitor's events per exposure (LATERAL); SQLite has no LATERAL
        # and runs one correlated subquery per column over the same events instead.
        outcome_select = ", ".join(f"COALESCE(o.{name}, 0) AS {name}" for name in columns)
        outcome_select = outcome_select.replace("COALESCE(o.last_at, 0)", "o.last_at")
        lateral = (
            "LEFT JOIN LATERAL (SELECT "
            + ", ".join(f"{expr} AS {name}" for name, expr in columns.items())
            + f" FROM personalization_event e WHERE {same_visitor}) o ON TRUE"
        )
    else:
        outcome_select = ", ".join(
            f"(SELECT {expr} FROM personalization_event e WHERE {same_visitor}) AS {name}"
            for name, expr in columns.items()
        )
        lateral = ""
    inner = f"""
        SELECT {d.hour("a.created_at")} AS hour, a.slot_key, a.source_kind, a.source_key,
            COALESCE(a.source_version, 0) AS source_version, a.variant_key, a.is_default,
            {_device(d)} AS device_type,
            {group_sql("c", "d")} AS grp,
            {d.array_at("d.signals", "segments")} AS segments,
            {outcome_select},
            CASE WHEN EXISTS (SELECT 1 FROM personalization_adjustment p
                WHERE p.property_id = a.property_id AND p.visitor_id = a.visitor_id
                AND p.session_id = a.session_id AND p.slot_key = a.slot_key
                AND ({d.scan("p.created_at")} < a.created_at
                    OR ({d.scan("p.created_at")} = a.created_at AND p.id < a.id)))
                THEN 0 ELSE 1 END AS first_in_session,
            a.created_at AS created_at
        FROM (
            SELECT a.*, COALESCE(w.seconds, %s) AS x_window
            FROM personalization_adjustment a
            LEFT JOIN dashboard_attributionwindow w
                ON w.property_id = a.property_id AND w.slot_key = a.slot_key
            WHERE a.property_id = %s AND a.created_at >= %s AND a.created_at < %s
        ) a
        JOIN personalization_decision d ON d.id = a.decision_id
        LEFT JOIN consent_consentrecord c ON c.id = d.consent_record_id
        {lateral}
    """
    seconds = f"COALESCE({d.seconds_between('x.last_at', 'x.created_at')}, 0)"
    dims = (
        "x.hour, x.slot_key, x.source_kind, x.source_key, x.source_version, "
        "x.variant_key, x.is_default, x.device_type, x.grp"
    )
    sums = f"""COUNT(*), SUM(COALESCE(x.clicked, 0)), SUM(COALESCE(x.converted, 0)),
            SUM(COALESCE(x.revenue, 0)), SUM(COALESCE(x.revenue, 0) * COALESCE(x.revenue, 0)),
            SUM(x.first_in_session),
            SUM(CASE WHEN x.first_in_session = 1 THEN {seconds} ELSE 0 END),
            SUM(CASE WHEN x.first_in_session = 1 THEN {seconds} * {seconds} ELSE 0 END),
            SUM(CASE WHEN x.first_in_session = 1 AND COALESCE(x.views, 0) <= 1
                THEN 1 ELSE 0 END)"""
    join, item = d.unnest("x.segments", "s")
    segment = d.element_text(item)
    # MATERIALIZED: each exposure's subqueries run once, not once per aggregate using them.
    # Rows for all visitors (segment "") and, again, per segment the decision placed the
    # visitor in (a visitor may be in several; an empty or null element is none: its rows
    # would land on the all-visitors key).
    return f"""
        WITH x AS MATERIALIZED ({inner})
        SELECT {dims}, '' AS segment_key, {sums} FROM x GROUP BY {dims}
        UNION ALL
        SELECT {dims}, {segment}, {sums} FROM x {join} WHERE {segment} <> ''
        GROUP BY {dims}, {segment}
    """


def _suppressions_sql(d: Dialect) -> str:
    join, item = d.unnest("d.suppressed", "s")
    seg_join, seg_item = d.unnest(d.array_at("d.signals", "segments"), "g")
    columns = f"""{d.hour("d.created_at")}, {d.element_text(item, "slot")},
            {d.element_text(item, "candidate")}, {d.element_text(item, "reason")},
            {_device(d)}, {group_sql("c", "d")}"""
    source = """FROM personalization_decision d
        LEFT JOIN consent_consentrecord c ON c.id = d.consent_record_id"""
    where = "WHERE d.property_id = %s AND d.created_at >= %s AND d.created_at < %s"
    return f"""
        SELECT {columns}, '', COUNT(*) {source} {join} {where}
        GROUP BY 1, 2, 3, 4, 5, 6
        UNION ALL
        SELECT {columns}, {d.element_text(seg_item)}, COUNT(*) {source} {join} {seg_join}
        {where} AND {d.element_text(seg_item)} <> ''
        GROUP BY 1, 2, 3, 4, 5, 6, 7
    """


def _aggregate(property_id: int, start: datetime, end: datetime) -> list[AdjustmentHourly]:
    """The hourly rows of [start, end), computed from adjustments, decisions and events."""
    d = dialect()
    rows: dict[Key, dict[str, Any]] = {}
    window = settings.DASHBOARD_ATTRIBUTION_WINDOW
    exposures = fetch(_exposures_sql(d), [GRANTS_PERSONALIZATION, window, property_id, start, end])
    for r in exposures:
        segment = str(r[9] or "")[:64]
        key: Key = (
            as_datetime(r[0]),
            r[1],
            r[2],
            r[3],
            int(r[4]),
            r[5],
            bool(r[6]),
            str(r[7])[:16],
            r[8],
            segment,
        )
        rows[key] = dict(zip(OUTCOME_FIELDS, (float(v or 0) for v in r[10:]), strict=True))
    range_args = [property_id, start, end]
    suppressed = fetch(
        _suppressions_sql(d),
        [GRANTS_PERSONALIZATION, *range_args, GRANTS_PERSONALIZATION, *range_args],
    )
    for hour, slot, candidate, reason, device, group, segment, count in suppressed:
        kind, _, key_name = str(candidate).partition(":")
        column = SUPPRESSION_COLUMNS.get(str(reason))
        if column is None:
            continue
        key = (
            as_datetime(hour),
            str(slot),
            kind,
            key_name,
            0,
            "",
            False,
            str(device)[:16],
            group,
            str(segment or "")[:64],
        )
        row = rows.setdefault(key, {})
        row[column] = row.get(column, 0) + int(count)
    objects = []
    for key, values in rows.items():
        hour, slot, kind, key_name, version, variant, is_default, device, group, segment = key
        fields = {
            name: (int(v) if name not in ("revenue", "revenue_sq") and "seconds" not in name else v)
            for name, v in values.items()
        }
        objects.append(
            AdjustmentHourly(
                property_id=property_id,
                hour=hour,
                slot_key=slot,
                source_kind=kind,
                source_key=key_name,
                source_version=version,
                variant_key=variant,
                is_default=is_default,
                device_type=device,
                group=group,
                segment_key=segment,
                **fields,
            )
        )
    return objects


def hourly_replace(property_id: int, start: datetime, end: datetime) -> int:
    """Recompute the hours [start, end) of a property and replace their rows atomically."""
    objects = _aggregate(property_id, start, end)
    with transaction.atomic():
        AdjustmentHourly.objects.filter(
            property_id=property_id, hour__gte=start, hour__lt=end
        ).delete()
        insert_rows(AdjustmentHourly, objects)
    return len(objects)


def _chunks(start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    step = timedelta(hours=CHUNK_HOURS)
    while start < end:
        yield start, min(start + step, end)
        start += step


def _windows(property_id: int) -> list[Any]:
    """The attribution windows rows are computed with, as stored in the run's cursor: when
    they differ from the last run's (a window added, changed or removed in the admin, or
    the default setting changed), every hour is recomputed."""
    custom = AttributionWindow.objects.filter(property_id=property_id).values_list(
        "slot_key", "seconds"
    )
    return [settings.DASHBOARD_ATTRIBUTION_WINDOW, sorted([k, n] for k, n in custom)]


def _longest_window(windows: list[Any]) -> timedelta:
    """The longest of the windows ``_windows`` read."""
    default, custom = windows
    return timedelta(seconds=max([default, *(seconds for _, seconds in custom)]))


def _decided_hours(property_id: int, found: tuple[QuerySet, Q], floor: datetime) -> set[datetime]:
    """The hours of the decisions that new events carrying a decision id point at."""
    rows, counts = found
    carried = sorted(
        {
            d
            for d in rows.annotate(
                carried=Case(When(counts, then=F("decision_id")), default=None)
            ).values_list("carried", flat=True)
            if d is not None
        }
    )
    # The ids go in as lists, in chunks: each selects its decisions through the unique
    # index (as a subquery the planner may scan days of decisions by time instead), and
    # the time condition sits in the expression for the same reason.
    hour = Trunc("created_at", "hour", output_field=DateTimeField(), tzinfo=UTC)
    hours: set[datetime] = set()
    for at in range(0, len(carried), 1000):
        hours.update(
            as_datetime(h)
            for h in Decision.objects.filter(
                property_id=property_id, decision_id__in=carried[at : at + 1000]
            )
            .annotate(decided=Case(When(created_at__gte=floor, then=hour), default=None))
            .values_list("decided", flat=True)
            .distinct()
            if h is not None
        )
    return hours


def _session_hours(property_id: int, found: tuple[QuerySet, Q]) -> set[datetime]:
    """The hours of the exposures whose session new events lengthen: made in the session
    of a new event, at or before it (a session can last longer than SESSION_LOOKBACK)."""
    rows, counts = found
    latest = {
        (r["visitor_id"], r["session_id"]): as_datetime(r["last"])
        for r in rows.values("visitor_id", "session_id").annotate(
            last=Max(Case(When(counts, then=F("timestamp")), default=None))
        )
        if r["last"] is not None
    }
    visitors = sorted({v for v, _ in latest})
    hours: set[datetime] = set()
    for at in range(0, len(visitors), 500):
        chunk = visitors[at : at + 500]
        members = set(chunk)
        sessions = {s for v, s in latest if v in members}
        made = Adjustment.objects.filter(
            property_id=property_id, visitor_id__in=chunk, session_id__in=sessions
        ).values_list("visitor_id", "session_id", "created_at")
        for visitor, session, created in made:
            last = latest.get((visitor, session))
            if last is not None and created <= last:
                hours.add(state.hour_floor(created))
    return hours


def _merged(spans: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """The union of half-open spans, as sorted disjoint spans."""
    out: list[tuple[datetime, datetime]] = []
    for start, end in sorted(spans):
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _touched_spans(
    property_id: int, previous: Any, cursor: dict[str, Any], now: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The hours new input can change, as disjoint spans.

    New adjustments and decisions change their own hour and, through "first exposure in
    the session", later ones: from the earliest to now. A new event changes the outcomes
    of exposures up to the attribution window plus the session reach before it: only
    those hours, so a late event does not recompute every hour since. An event carrying
    a decision id also changes its decision's hour, however long before, and an event
    the hours of the earlier exposures in its session, however long the session.
    """
    floor = state.late_cutoff(now)
    done = previous.cursor
    reach = _longest_window(cursor["windows"]) + SESSION_LOOKBACK
    lowest = state.hour_floor(floor - reach)
    since = previous.watermark
    logged = [
        found
        for model, name in ((Adjustment, "adjustment"), (Decision, "decision"))
        if (
            found := state.earliest_new(
                model,
                property_id,
                "created_at",
                done.get(name, 0),
                cursor[name],
                floor,
                since,
                done.get(f"{name}_gaps", ()),
            )
        )
        is not None
    ]
    spans = [(state.hour_floor(min(logged)), end)] if logged else []
    hour = timedelta(hours=1)
    events = state.new_rows(
        Event,
        property_id,
        "timestamp",
        done.get("event", 0),
        cursor["event"],
        floor,
        since,
        done.get("event_gaps", ()),
    )
    if events is not None:
        for h in state.new_hours(events, "timestamp"):
            spans.append((state.hour_floor(h - reach), h + hour))
        for h in _decided_hours(property_id, events, floor) | _session_hours(property_id, events):
            spans.append((h, h + hour))
    return _merged((max(start, lowest), min(stop, end)) for start, stop in spans)


def rollup_hourly(
    *, property_id: int, full: bool = False, progress: state.Progress | None = None
) -> state.RollupResult:
    """Fold new adjustments, decisions and events of a property into the hourly rollup.

    ``full`` recomputes every hour from the first adjustment or decision (and drops rows
    of hours before it); so does a change of the property's attribution windows.
    """
    started = time.monotonic()
    now = timezone.now()
    result = state.RollupResult(RollupKind.HOURLY, property_id)
    cursor = state.cursor_for({"adjustment": Adjustment, "decision": Decision, "event": Event})
    cursor["windows"] = _windows(property_id)
    end = state.hour_floor(now) + timedelta(hours=1)
    previous = state.state_get(property_id, RollupKind.HOURLY)
    windows = cursor["windows"]
    # A state from before windows were recorded counts as computed with today's windows.
    changed = previous is not None and previous.cursor.get("windows", windows) != windows
    if full or previous is None or changed:
        # A decision without answers still has suppression rows: from the earliest of both.
        firsts = [
            first
            for model in (Adjustment, Decision)
            if (first := state.first_at(model, property_id, "created_at")) is not None
        ]
        start = state.hour_floor(min(firsts)) if firsts else end
        with transaction.atomic():
            # Hours before the first input (or all, when none is left) hold nothing.
            AdjustmentHourly.objects.filter(property_id=property_id, hour__lt=start).delete()
        spans = [(start, end)]
    else:
        spans = _touched_spans(property_id, previous, cursor, now, end)
        if not spans:
            result.skipped = True
            result.cursor = cursor
            state.state_save(result, now, started)
            return result
    result.start, result.end = spans[0][0], spans[-1][1]
    result.hours = sum(int((stop - start) / timedelta(hours=1)) for start, stop in spans)
    for span_start, span_end in spans:
        for chunk_start, chunk_end in _chunks(span_start, span_end):
            result.rows += hourly_replace(property_id, chunk_start, chunk_end)
            if progress:
                progress(f"hourly {chunk_start:%Y-%m-%d %H:00} → {chunk_end:%Y-%m-%d %H:00}")
    result.cursor = cursor
    state.state_save(result, now, started)
    return result
