"""What each dashboard page shows: selector output (``dashboard.selectors``, rollups only)
turned into charts (``dashboard.charts``) and the rows behind them (the CSV downloads).

Reads that ``dashboard.selectors`` does not offer live here too, small and bounded:
experiment snapshots (the stored results, never recomputed on a page view) and the
privacy-request queue counts (consent app).
"""

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from django.utils import timezone

from consent.models import PrivacyRequest, RequestKind
from consent.selectors import deadline_flag
from personalization import stats
from personalization.learning.overview import learning_overview
from personalization.models import Experiment, ExperimentSnapshot, Fate, Property, Segment, Survey
from personalization.selectors import ingest_fates, live_firings_by_rule

from . import charts, selectors
from .charts import Chart
from .filters import Filters
from .models import Group, RollupKind

GROUP_LABELS = {g.value: str(g.label) for g in Group}
COMPARED = (Group.PERSONALIZED.value, Group.HOLDOUT.value)
SUPPRESSION_LABELS = {
    "cooldown": "Cooldown",
    "cap": "Frequency cap",
    "budget": "Session budget",
    "conflict": "Conflict",
    "consent": "Consent",
    "holdout": "Holdout",
}
FATE_LABELS = {
    "accepted": "Stored",
    "duplicate": "Duplicate",
    "quarantined": "Quarantined",
    "dropped_no_consent": "Dropped (no consent)",
}


@dataclass
class PageData:
    charts: list[Chart]
    extra: dict[str, Any] = field(default_factory=dict)


# What each rollup is called where a page says it has not run yet.
ROLLUP_NAMES = {
    RollupKind.HOURLY.value: "the hourly rollup",
    RollupKind.RETENTION.value: "the daily retention rollup",
    RollupKind.SURVEYS.value: "the survey rollup",
    RollupKind.SEGMENTS.value: "the segment rollup",
    RollupKind.FATES.value: "the event-fate rollup",
    RollupKind.CONSENT.value: "the consent rollup",
}


@dataclass(frozen=True)
class AsOf:
    """How fresh a page's data is: the watermark of the rollups it reads (input received up
    to then is in them), or, when one has never run, what has not."""

    at: datetime | None
    missing: str = ""


def rollups_as_of(f: Filters, kinds: Sequence[str]) -> AsOf:
    """The oldest watermark of the ``kinds`` of rollup a page reads, for its property."""
    seen = selectors.rollup_freshness(f.properties)
    watermarks: list[datetime] = []
    for kind in kinds:
        watermark = seen.get(kind)
        if watermark is None:
            return AsOf(None, f"{ROLLUP_NAMES.get(kind, f'the {kind} rollup')} has not run")
        watermarks.append(watermark)
    return AsOf(min(watermarks) if watermarks else None)


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _iv(interval: selectors.Interval | None, digits: int = 4) -> tuple[Any, Any, Any]:
    """(estimate, low, high) of an interval, rounded; blanks without data."""
    if interval is None:
        return (None, None, None)
    return (_r(interval.estimate, digits), _r(interval.low, digits), _r(interval.high, digits))


def _pivot(
    rows: Iterable[Sequence[Any]], x: int, series: int, value: int
) -> tuple[list[Any], dict[str, list[Any]]]:
    """Rows → (sorted x values, {series: values aligned on x, None where missing})."""
    cells: dict[str, dict[Any, Any]] = defaultdict(dict)
    xs: set[Any] = set()
    for row in rows:
        cells[str(row[series])][row[x]] = row[value]
        xs.add(row[x])
    ordered = sorted(xs)
    return ordered, {name: [c.get(v) for v in ordered] for name, c in cells.items()}


# --------------------------------------------------------------------------- overview


def overview(f: Filters) -> PageData:
    daily = selectors.adjustments_daily(f.properties, f.rollup())
    per_day = [
        (row["day"], GROUP_LABELS[row["group"]], row["adjustments"], row["exposures"])
        for row in daily
    ]

    def adjustments_figure(rows: charts.Rows) -> charts.Figure:
        days, series = _pivot(rows, 0, 1, 2)
        return charts.bars(days, series, y_title="Adjustments", stacked=True)

    outcomes = selectors.group_outcomes(f.properties, f.rollup())
    compared = [(g, outcomes[g]) for g in COMPARED if outcomes[g].exposures]
    group_rows = [
        (
            GROUP_LABELS[g],
            o.exposures,
            o.clicks,
            *_iv(o.click_through),
            o.sessions,
            *_iv(o.session_duration, 1),
            o.bounces,
            *_iv(o.bounce_rate),
        )
        for g, o in compared
    ]
    group_columns = [
        "group",
        "exposures",
        "clicks",
        "click_through",
        "click_through_low",
        "click_through_high",
        "sessions",
        "session_seconds_mean",
        "session_seconds_low",
        "session_seconds_high",
        "bounces",
        "bounce_rate",
        "bounce_rate_low",
        "bounce_rate_high",
    ]

    def rates_figure(rows: charts.Rows) -> charts.Figure:
        metrics = ["Click-through", "Bounce rate"]
        values = {str(r[0]): [r[3], r[11]] for r in rows}
        intervals = {str(r[0]): [(r[4], r[5]), (r[12], r[13])] for r in rows}
        return charts.bars(metrics, values, y_title="Share", intervals=intervals, y_format=".0%")

    def duration_figure(rows: charts.Rows) -> charts.Figure:
        names = [str(r[0]) for r in rows]
        return charts.bars(
            names,
            {"Mean session seconds after the answer": [r[7] for r in rows]},
            y_title="Seconds",
            intervals={"Mean session seconds after the answer": [(r[8], r[9]) for r in rows]},
        )

    has_holdout = len(compared) == 2
    holdout_note = (
        ""
        if has_holdout
        else "Only one group has data: the holdout needs traffic before it can be compared."
    )
    return PageData(
        [
            Chart(
                "adjustments",
                "Adjustments per day",
                ["day", "group", "adjustments", "answers"],
                [r for r in per_day if r[2]],
                adjustments_figure,
                empty="No adjustments were served in this period.",
                help="Non-default answers served, per day and visitor group.",
            ),
            Chart(
                "engagement",
                "Click-through and bounce: personalized against holdout",
                group_columns,
                group_rows,
                rates_figure,
                empty="No answers were logged in this period.",
                help="Per logged answer: clicked after it; per session: bounced. "
                "95% Wilson intervals. " + holdout_note,
            ),
            Chart(
                "session-duration",
                "Session duration after the answer: personalized against holdout",
                group_columns,
                group_rows,
                duration_figure,
                empty="No sessions were logged in this period.",
                help="Mean seconds from a session's first answer to its last event, 95% interval.",
            ),
        ]
    )


# --------------------------------------------------------------------------- rules


def rules(f: Filters) -> PageData:
    sources = selectors.source_outcomes(f.properties, f.rollup(), kind="rule")
    served = [s for s in sources if s.outcomes.exposures]
    exposure_rows = [
        (
            s.source_key,
            s.source_version,
            s.slot_key,
            s.variant_key,
            s.outcomes.exposures,
            s.outcomes.clicks,
            *_iv(s.outcomes.click_through),
            _r(s.lift.estimate) if s.lift else None,
            _r(s.lift.ci_low) if s.lift else None,
            _r(s.lift.ci_high) if s.lift else None,
            _r(s.lift.p_value) if s.lift else None,
        )
        for s in served
    ]
    columns = [
        "rule",
        "version",
        "slot",
        "variant",
        "exposures",
        "clicks",
        "click_through",
        "click_through_low",
        "click_through_high",
        "lift",
        "lift_low",
        "lift_high",
        "p_value",
    ]

    def exposures_figure(rows: charts.Rows) -> charts.Figure:
        labels = [f"{r[0]} v{r[1]}" for r in rows]
        return charts.bars(labels, {"Exposures": [r[4] for r in rows]}, y_title="Exposures")

    def lift_figure(rows: charts.Rows) -> charts.Figure:
        shown = [r for r in rows if r[9] is not None]
        return charts.forest(
            [f"{r[0]} v{r[1]} ({r[2]}: {r[3]})" for r in shown],
            [r[9] for r in shown],
            [(r[10], r[11]) for r in shown],
            x_title="Click-through lift against the slot's default",
            colours=[_verdict_colour(r[10], r[11]) for r in shown],
        )

    suppressed = selectors.suppressions(f.properties, f.rollup(), kind="rule")
    reasons = list(SUPPRESSION_LABELS)
    suppression_rows = [
        (row["source_key"], row["slot_key"], *(row[r] for r in reasons))
        for row in suppressed
        if any(row[r] for r in reasons)
    ]

    def suppressions_figure(rows: charts.Rows) -> charts.Figure:
        labels = [str(r[0]) for r in rows]
        series = {SUPPRESSION_LABELS[k]: [r[2 + i] for r in rows] for i, k in enumerate(reasons)}
        return charts.bars(labels, series, y_title="Suppressed candidates", stacked=True)

    return PageData(
        [
            Chart(
                "lift",
                "Click-through lift against the slot's default",
                columns,
                [r for r in exposure_rows if r[9] is not None],
                lift_figure,
                empty="No rule has both exposures and a default to compare with yet.",
                help="Relative lift of each rule version's click-through over the slot's "
                "default answer to personalized visitors, 95% interval. Green: the interval "
                "lies above zero; red: below.",
            ),
            Chart(
                "exposures",
                "Exposures per rule and version",
                columns,
                exposure_rows,
                exposures_figure,
                empty="No rule was applied in this period.",
            ),
            Chart(
                "suppressions",
                "Suppressions per rule, by reason",
                ["rule", "slot", *reasons],
                suppression_rows,
                suppressions_figure,
                empty="No rule was suppressed in this period.",
                help="Times a rule matched but was not applied: cooldown, frequency cap, "
                "session budget, a higher-priority rule (conflict), consent, holdout.",
            ),
            _live_chart(f),
        ],
        {"segment_goals": _segment_goals(f.prop)},
    )


def _live_chart(f: Filters) -> Chart:
    """Live rules: their entries fired in the page, applied or refused, and how long after
    the page-load decision they fired (their applications are in the charts above too)."""
    rows = [
        (key, fired, refused, _r(median))
        for key, fired, refused, median in live_firings_by_rule(
            f.properties.values_list("pk", flat=True), f.since, f.until
        )
    ]

    def figure(rows: charts.Rows) -> charts.Figure:
        return charts.bars(
            [str(r[0]) for r in rows],
            {"Applied": [r[1] for r in rows], "Refused": [r[2] for r in rows]},
            y_title="Firings in the page",
            stacked=True,
        )

    return Chart(
        "live-firings",
        "Live rules: firings in the page, and time to fire",
        ["rule", "applied", "refused", "median_seconds_to_fire"],
        rows,
        figure,
        empty="No live rule fired in a page in this period.",
        help="Plan entries of rules reading page.* signals that fired in the page and were "
        "reported: applied, or refused by the server (cooldown, cap, session budget, consent "
        "withdrawn, rule changed). Applied firings count as adjustments in the charts above. "
        "Time to fire: median seconds from the page-load decision to the firing (in the CSV).",
    )


def _verdict_colour(low: float | None, high: float | None) -> str:
    if low is not None and low > 0:
        return "#009E73"
    if high is not None and high < 0:
        return "#D55E00"
    return "#0072B2"


def _segment_goals(prop: Property) -> list[dict[str, Any]]:
    """Segments with a goal (metric, baseline, target): what each segment aims for."""
    return [
        {"segment": s.name or s.key, "key": s.key, **(s.goal or {})}
        for s in Segment.objects.filter(property=prop).exclude(goal={}).order_by("key")
        if isinstance(s.goal, dict) and s.goal.get("metric")
    ]


# --------------------------------------------------------------------------- experiments


def experiments(f: Filters) -> PageData:
    """Each experiment's snapshot in force at the end of the range, and its history."""
    found = Experiment.objects.filter(property=f.prop).select_related("slot").order_by("key")
    if f.slot:
        found = found.filter(slot__key=f.slot)
    page_charts: list[Chart] = []
    summaries = []
    for experiment in found:
        history = list(
            ExperimentSnapshot.objects.filter(
                experiment=experiment, computed_at__gte=f.since, computed_at__lt=f.until
            )
            .order_by("computed_at")
            .only("computed_at", "results")
        )
        latest = history[-1] if history else None
        results = latest.results if latest else {}
        summaries.append(
            {
                "key": experiment.key,
                "name": experiment.name or experiment.key,
                "status": experiment.get_status_display(),
                "slot": experiment.slot.key,
                "snapshot_at": latest.computed_at if latest else None,
                "srm_p_value": results.get("srm_p_value"),
                "srm_flagged": bool(results.get("srm_flagged")),
                "warnings": results.get("warnings") or [],
                "recommendation": results.get("recommendation"),
                "recommendation_detail": results.get("recommendation_detail"),
                "snapshots": len(history),
            }
        )
        page_charts.append(_forest_chart(experiment, results))
        page_charts.append(_history_chart(experiment, history))
    taken = [s["snapshot_at"] for s in summaries if isinstance(s["snapshot_at"], datetime)]
    as_of = (
        AsOf(max(taken))
        if taken
        else AsOf(None, "no experiment results snapshot has been taken (they are hourly)")
    )
    return PageData(page_charts, {"experiments": summaries, "data_as_of": as_of})


LIFT_COLUMNS = [
    "snapshot_at",
    "goal",
    "role",
    "variant",
    "users",
    "rate",
    "lift",
    "lift_low",
    "lift_high",
    "p_value",
    "p_value_adjusted",
    "chance_to_win",
    "verdict",
]


def _lift_rows(snapshot_at: Any, results: dict[str, Any]) -> list[tuple[Any, ...]]:
    rows = []
    for goal in results.get("goals") or []:
        for v in goal.get("variants") or []:
            lift = v.get("lift") or {}
            if not lift:
                continue  # the control, or a lift that does not exist (reason in the API)
            rows.append(
                (
                    snapshot_at,
                    goal.get("key"),
                    goal.get("role"),
                    v.get("variant"),
                    v.get("users"),
                    _r(v.get("rate")),
                    _r(lift.get("relative")),
                    _r(lift.get("ci_low")),
                    _r(lift.get("ci_high")),
                    _r(v.get("p_value")),
                    _r(v.get("p_value_adjusted")),
                    _r(v.get("chance_to_win")),
                    v.get("verdict"),
                )
            )
    return rows


def _forest_chart(experiment: Experiment, results: dict[str, Any]) -> Chart:
    def figure(rows: charts.Rows) -> charts.Figure:
        return charts.forest(
            [f"{r[1]} ({r[2]}): {r[3]}" for r in rows],
            [r[6] for r in rows],
            [(r[7], r[8]) for r in rows],
            x_title="Relative lift against the control",
            colours=[_verdict_colour(r[7], r[8]) for r in rows],
        )

    return Chart(
        f"forest-{experiment.key}",
        f"{experiment.name or experiment.key}: lift per goal and variant",
        LIFT_COLUMNS,
        _lift_rows(results.get("snapshot_at"), results),
        figure,
        empty="No results snapshot in this period yet (snapshots are taken hourly).",
        help="Latest snapshot in the period; intervals at the experiment's confidence level.",
    )


def _history_chart(experiment: Experiment, history: list[ExperimentSnapshot]) -> Chart:
    rows = [r for s in history for r in _lift_rows(s.computed_at, s.results) if r[2] == "primary"]

    def figure(rows: charts.Rows) -> charts.Figure:
        series: dict[str, list[tuple[Any, float | None]]] = defaultdict(list)
        intervals: dict[str, list[tuple[float | None, float | None]]] = defaultdict(list)
        for r in rows:
            name = f"{r[1]}: {r[3]}"
            series[name].append((r[0], r[6]))
            intervals[name].append((r[7], r[8]))
        return charts.lines(
            series, y_title="Lift (primary goal)", intervals=intervals, y_format=".0%"
        )

    return Chart(
        f"history-{experiment.key}",
        f"{experiment.name or experiment.key}: snapshot history",
        LIFT_COLUMNS,
        rows,
        figure,
        empty="No snapshots with results in this period.",
        help="The primary goal's lift at each snapshot, with its interval.",
    )


# --------------------------------------------------------------------------- retention


def retention(f: Filters) -> PageData:
    cohorts = selectors.retention_cohorts(f.properties, f.rollup())
    cells = selectors.retention_cells(cohorts, min(f.end, timezone.now().date()))
    pooled: dict[tuple[date, int], list[int]] = defaultdict(lambda: [0, 0])
    by_group: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for (week, since, group), (size, active) in cells.items():
        for cell in (pooled[(week, since)], by_group[(group, since)]):
            cell[0] += size
            cell[1] += active
    heat_rows = [
        (week, since, size, active, _r(active / size if size else 0.0))
        for (week, since), (size, active) in sorted(pooled.items())
    ]

    def heatmap_figure(rows: charts.Rows) -> charts.Figure:
        weeks = sorted({r[0] for r in rows})
        since = sorted({r[1] for r in rows})
        cell = {(r[0], r[1]): r for r in rows}
        z = [[cell[(w, s)][4] if (w, s) in cell else None for s in since] for w in weeks]
        text = [[f"{cell[(w, s)][4]:.0%}" if (w, s) in cell else "" for s in since] for w in weeks]
        sizes = {r[0]: r[2] for r in rows if r[1] == 0}
        return charts.heatmap(
            [f"week {s}" for s in since],
            [f"{w:%Y-%m-%d} (n={sizes.get(w, 0)})" for w in weeks],
            z,
            x_title="Weeks since first seen",
            y_title="Cohort (week first seen)",
            cell_text=text,
        )

    order = list(GROUP_LABELS)
    curve_rows = [
        (
            GROUP_LABELS[group],
            since,
            size,
            active,
            *_iv(selectors.proportion_interval(size, active)),
        )
        for (group, since), (size, active) in sorted(
            by_group.items(), key=lambda item: (order.index(item[0][0]), item[0][1])
        )
        if since > 0
    ]

    def curves_figure(rows: charts.Rows) -> charts.Figure:
        series: dict[str, list[tuple[Any, float | None]]] = defaultdict(list)
        intervals: dict[str, list[tuple[float | None, float | None]]] = defaultdict(list)
        for r in rows:
            series[str(r[0])].append((r[1], r[4]))
            intervals[str(r[0])].append((r[5], r[6]))
        return charts.lines(
            series,
            y_title="Share active",
            x_title="Weeks since first seen",
            intervals=intervals,
            y_format=".0%",
        )

    return PageData(
        [
            Chart(
                "cohorts",
                "Cohort retention",
                ["cohort_week", "weeks_since", "cohort_size", "active", "retention"],
                heat_rows,
                heatmap_figure,
                empty="No cohorts yet: retention is computed daily from the decision log.",
                help="Share of each week's new visitors active again N weeks later (all visitors).",
            ),
            Chart(
                "curves",
                "Retention curves: personalized against holdout",
                ["group", "weeks_since", "cohort_size", "active", "retention", "low", "high"],
                curve_rows,
                curves_figure,
                empty="No visitor has come back in a later week yet.",
                help="Pooled over the cohorts that reached each week, 95% Wilson intervals.",
            ),
        ]
    )


# --------------------------------------------------------------------------- feedback

SCORE_COLUMNS = [
    "survey",
    "question",
    "type",
    "exposure",
    "answers",
    "mean",
    "mean_low",
    "mean_high",
    "nps",
    "nps_low",
    "nps_high",
    "not_exposed_answers",
    "not_exposed_mean",
    "not_exposed_low",
    "not_exposed_high",
    "difference",
    "difference_low",
    "difference_high",
    "p_value",
]


def _score_row(row: selectors.ScoreRow, everyone: selectors.ScoreRow | None) -> tuple[Any, ...]:
    """One exposure against the answers not exposed to it: both means with intervals, and
    the difference with Welch's interval (personalization.stats)."""
    difference: tuple[Any, Any, Any, Any] = (None, None, None, None)
    if everyone is not None and row.mean and row.complement_mean and row.complement_answers > 1:
        exposed = _summary(row.answers, row.mean)
        rest = _summary(row.complement_answers, row.complement_mean)
        welch = stats.welch_t_test(rest, exposed)
        if not isinstance(welch, stats.Unavailable):
            difference = (
                _r(welch.difference, 3),
                _r(welch.ci_low, 3),
                _r(welch.ci_high, 3),
                _r(welch.p_value),
            )
    return (
        row.survey_key,
        row.question_key,
        row.question_type,
        row.label,
        row.answers,
        *_iv(row.mean, 3),
        *_iv(row.nps, 1),
        row.complement_answers,
        *_iv(row.complement_mean, 3),
        *difference,
    )


def _summary(n: int, mean: selectors.Interval) -> stats.VariantSummary:
    """Sufficient statistics back from a mean and its normal interval (n, Σx, Σx²)."""
    half = (mean.high - mean.low) / 2
    sd = half / selectors.Z95 * n**0.5
    total = mean.estimate * n
    return stats.VariantSummary.continuous(n, total, sd * sd * (n - 1) + total * total / n)


def feedback(f: Filters) -> PageData:
    scores = selectors.survey_scores(f.properties, f.rollup())
    by_question: dict[tuple[str, str], list[selectors.ScoreRow]] = defaultdict(list)
    for row in scores:
        by_question[(row.survey_key, row.question_key)].append(row)
    page_charts: list[Chart] = []
    for (survey_key, question_key), rows in by_question.items():
        everyone = next((r for r in rows if r.exposure_kind == "all"), None)
        table = [_score_row(r, everyone) for r in rows if r.exposure_kind != "all"]
        kind = rows[0].question_type
        page_charts.append(
            Chart(
                f"scores-{survey_key}-{question_key}",
                f"{survey_key} · {question_key} ({kind.upper()}): score by exposure",
                SCORE_COLUMNS,
                table,
                _scores_figure,
                help="Mean score of visitors shown each adjustment before answering, against "
                "those not shown it; 95% intervals. The CSV adds the NPS and the difference "
                "with Welch's interval.",
            )
        )
    correlations = selectors.survey_seen_correlation(f.properties, f.rollup())
    summaries = []
    for item in correlations:
        buckets = [(b["bucket"], b["n"], *_iv(b["mean"], 3)) for b in item["buckets"]]
        r = item["correlation"]
        summaries.append({**item, "r": _iv(r, 3) if r else None})
        page_charts.append(
            Chart(
                f"seen-{item['survey_key']}-{item['question_key']}",
                f"{item['survey_key']} · {item['question_key']}: adjustments seen before answering",
                ["adjustments_seen", "answers", "mean_score", "mean_low", "mean_high"],
                buckets,
                _seen_figure,
                help=(
                    f"Pearson r = {r.estimate:.2f} (95% interval {r.low:.2f} to {r.high:.2f}), "
                    f"n = {item['n']}."
                    if r
                    else "Too few answers for a correlation."
                ),
            )
        )
    if not page_charts:
        page_charts.append(
            Chart(
                "scores",
                "Survey scores by exposure",
                SCORE_COLUMNS,
                [],
                empty="No NPS or rating answers in this period.",
            )
        )
    return PageData(
        page_charts,
        {
            "correlations": summaries,
            "free_text": selectors.recent_free_text(f.properties, f.rollup(), limit=15),
            "surveys": Survey.objects.filter(property=f.prop).count(),
        },
    )


def _scores_figure(rows: charts.Rows) -> charts.Figure:
    labels = [str(r[3]) for r in rows]
    return charts.bars(
        labels,
        {"Exposed": [r[5] for r in rows], "Not exposed": [r[12] for r in rows]},
        y_title="Mean score",
        intervals={
            "Exposed": [(r[6], r[7]) for r in rows],
            "Not exposed": [(r[13], r[14]) for r in rows],
        },
    )


def _seen_figure(rows: charts.Rows) -> charts.Figure:
    name = "Mean score"
    return charts.bars(
        [str(r[0]) for r in rows],
        {name: [r[2] for r in rows]},
        y_title="Mean score",
        intervals={name: [(r[3], r[4]) for r in rows]},
    )


# --------------------------------------------------------------------------- segments


def segments(f: Filters) -> PageData:
    rows = [
        (r["day"], r["segment_key"], r["size"])
        for r in selectors.segment_sizes(f.properties, f.rollup())
    ]

    def figure(rows: charts.Rows) -> charts.Figure:
        series: dict[str, list[tuple[Any, float | None]]] = defaultdict(list)
        for day, segment, size in rows:
            series[str(segment)].append((day, size))
        return charts.lines(series, y_title="Visitors in the segment")

    return PageData(
        [
            Chart(
                "sizes",
                "Segment sizes per day",
                ["day", "segment", "visitors"],
                rows,
                figure,
                empty="No visitor was placed in a segment in this period.",
                help="Distinct visitors per day whose decisions placed them in the segment.",
            )
        ],
        extra={"learning": learning_overview(f.properties)},
    )


# --------------------------------------------------------------------------- data quality


def data_quality(f: Filters) -> PageData:
    rows = [
        (r["day"], r["event_type"], r["fate"], r["count"])
        for r in selectors.event_fates_daily(f.properties, f.rollup())
    ]

    def fates_figure(rows: charts.Rows) -> charts.Figure:
        totals: dict[tuple[Any, str], int] = defaultdict(int)
        for day, _, fate, count in rows:
            totals[(day, FATE_LABELS.get(fate) or str(fate))] += count
        days, series = _pivot([(d, k, n) for (d, k), n in totals.items()], 0, 1, 2)
        return charts.bars(days, series, y_title="Events", stacked=True)

    def problems_figure(rows: charts.Rows) -> charts.Figure:
        seen: dict[tuple[Any, str], list[int]] = defaultdict(lambda: [0, 0])
        for day, kind, fate, count in rows:
            cell = seen[(day, kind)]
            cell[0] += count
            cell[1] += 0 if fate in ("accepted", "duplicate") else count
        series: dict[str, list[tuple[Any, float | None]]] = defaultdict(list)
        for (day, kind), (total, problems) in sorted(seen.items()):
            series[kind].append((day, problems / total if total else None))
        return charts.lines(series, y_title="Share quarantined or dropped", y_format=".0%")

    columns = ["day", "event_type", "fate", "events"]
    return PageData(
        [
            Chart(
                "fates",
                "Event fates per day",
                columns,
                rows,
                fates_figure,
                empty="No events were received in this period.",
            ),
            Chart(
                "problems",
                "Quarantined or dropped, per event type",
                columns,
                rows,
                problems_figure,
                empty="No events were received in this period.",
                help="Per day and type, the share of events quarantined (invalid) or dropped "
                "for lack of consent.",
            ),
        ],
        {"fate_rows": _fate_table(f), "fates": Fate.choices},
    )


def _fate_table(f: Filters) -> list[Any]:
    """The hourly ingest counters since the range's start, up to now (live, before the
    daily rollup has run): the table under the charts."""
    return ingest_fates(f.properties, f.since)


# --------------------------------------------------------------------------- consent


def consent(f: Filters) -> PageData:
    daily = selectors.consent_daily(f.properties, f.rollup())
    purpose_rows = [
        (r["day"], r["purpose"], r["records"], r["granted"], _r(r["rate"]))
        for r in daily
        if r["purpose"]
    ]
    gpc_rows = [
        (r["day"], r["records"], r["granted"], _r(r["rate"])) for r in daily if not r["purpose"]
    ]

    def opt_in_figure(rows: charts.Rows) -> charts.Figure:
        series: dict[str, list[tuple[Any, float | None]]] = defaultdict(list)
        for day, purpose, _, _, rate in rows:
            series[str(purpose)].append((day, rate))
        return charts.lines(series, y_title="Share granting", y_format=".0%")

    def gpc_figure(rows: charts.Rows) -> charts.Figure:
        return charts.lines(
            {"GPC share": [(r[0], r[3]) for r in rows]},
            y_title="Share of consent records from GPC",
            y_format=".0%",
        )

    queue = _request_queue(f.prop)

    def requests_figure(rows: charts.Rows) -> charts.Figure:
        kinds = [str(r[0]) for r in rows]
        return charts.bars(
            kinds,
            {
                "On time": [r[1] - r[2] - r[3] for r in rows],
                "Due within 7 days": [r[2] for r in rows],
                "Overdue": [r[3] for r in rows],
            },
            y_title="Open requests",
            stacked=True,
        )

    return PageData(
        [
            Chart(
                "opt-in",
                "Opt-in per purpose",
                ["day", "purpose", "records", "granted", "rate"],
                purpose_rows,
                opt_in_figure,
                empty="No consent was recorded in this period.",
                help="Of the consent records written each day, the share granting each purpose.",
            ),
            Chart(
                "gpc",
                "Global Privacy Control share",
                ["day", "records", "gpc", "share"],
                gpc_rows,
                gpc_figure,
                empty="No consent was recorded in this period.",
                help="Share of each day's consent records that were a GPC opt-out.",
            ),
            Chart(
                "requests",
                "Open data-subject requests",
                ["kind", "open", "due_soon", "overdue"],
                [r for r in queue if r[1]],
                requests_figure,
                empty="No data-subject request is open.",
                help="As of today, whatever the date range.",
            ),
        ],
        {
            "request_totals": {
                "open": sum(r[1] for r in queue),
                "due_soon": sum(r[2] for r in queue),
                "overdue": sum(r[3] for r in queue),
            }
        },
    )


def _request_queue(prop: Property) -> list[tuple[str, int, int, int]]:
    """Per request kind: open, due within 7 days, overdue (today, UTC)."""
    counts: dict[str, list[int]] = {k.value: [0, 0, 0] for k in RequestKind}
    today = timezone.now().date()
    open_requests = PrivacyRequest.objects.filter(property=prop).only("kind", "status", "due_date")
    for request in open_requests:
        if not request.is_open:
            continue
        cell = counts.setdefault(request.kind, [0, 0, 0])
        cell[0] += 1
        flag = deadline_flag(request, today)
        cell[1] += flag == "due_soon"
        cell[2] += flag == "overdue"
    labels = {k.value: str(k.label) for k in RequestKind}
    return [(labels.get(kind, kind), *cell) for kind, cell in counts.items()]  # type: ignore[misc]


Builder = Callable[[Filters], PageData]
__all__ = [
    "Builder",
    "PageData",
    "consent",
    "data_quality",
    "experiments",
    "feedback",
    "overview",
    "retention",
    "rules",
    "segments",
]
