"""Reads the dashboard pages call. They read rollup tables only, never raw events.

Every function takes ``properties`` (a queryset of the properties the viewer may see,
from ``consent.tenancy.properties_for``) and, where it applies, ``DashboardFilters``.
Rows are plain dataclasses or dicts, ready for a Plotly figure function or a CSV.

Filters: ``start``/``end`` are inclusive dates (UTC days); ``slot``, ``device_type`` and
``segment`` narrow the hourly rollup (its rows are kept for all visitors and again per
segment the decision placed the visitor in) and ``segment`` narrows ``segment_sizes``;
retention, surveys, fates and consent are not split by segment.
"""

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db.models import QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from personalization.models import (
    Adjustment,
    Property,
    QuestionType,
    SurveyQuestion,
    SurveyResponse,
)
from personalization.stats import FrequentistResult, VariantSummary, relative_lift

from .models import (
    OUTCOME_FIELDS,
    AdjustmentHourly,
    ConsentDaily,
    EventFateDaily,
    ExposureKind,
    Group,
    RetentionCohortDaily,
    RollupState,
    SegmentSizeDaily,
    SurveyScoreDaily,
    SurveySeenDaily,
)

Z95 = 1.959963984540054
SUPPRESSION_REASONS = ("cooldown", "cap", "budget", "conflict", "consent", "holdout")
SUPPRESSION_FIELDS = tuple(f"suppressed_{r}" for r in SUPPRESSION_REASONS)


@dataclass(frozen=True)
class DashboardFilters:
    start: date
    end: date
    slot: str = ""
    device_type: str = ""
    segment: str = ""

    @classmethod
    def last_days(cls, days: int = 28, **kwargs: Any) -> "DashboardFilters":
        today = datetime.now(UTC).date()
        return cls(start=today - timedelta(days=days - 1), end=today, **kwargs)

    @property
    def start_at(self) -> datetime:
        return datetime.combine(self.start, time.min, tzinfo=UTC)

    @property
    def end_at(self) -> datetime:
        """Exclusive upper bound: midnight after ``end``."""
        return datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=UTC)


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


def proportion_interval(n: int, k: int) -> Interval | None:
    """Wilson score interval of k successes in n (None without data)."""
    if n <= 0:
        return None
    p = k / n
    denom = 1 + Z95 * Z95 / n
    centre = (p + Z95 * Z95 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 * Z95 / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(n: int, total: float, total_sq: float) -> Interval | None:
    """Normal interval of a mean from n, Σx and Σx² (None without data)."""
    if n <= 0:
        return None
    mean = total / n
    var = max(0.0, (total_sq - total * total / n) / (n - 1)) if n > 1 else 0.0
    half = Z95 * math.sqrt(var / n)
    return Interval(mean, mean - half, mean + half)


def correlation_interval(n: int, r: float) -> Interval | None:
    """Fisher-z interval of a Pearson correlation (None below 4 pairs)."""
    if n < 4 or not -1 < r < 1:
        return None if n < 4 else Interval(r, r, r)
    z = math.atanh(r)
    half = Z95 / math.sqrt(n - 3)
    return Interval(r, math.tanh(z - half), math.tanh(z + half))


@dataclass
class Outcomes:
    """Summed outcomes of hourly rows, with the rates pages show and their intervals."""

    exposures: int = 0
    clicks: int = 0
    conversions: int = 0
    revenue: float = 0.0
    revenue_sq: float = 0.0
    sessions: int = 0
    session_seconds: float = 0.0
    session_seconds_sq: float = 0.0
    bounces: int = 0
    suppressed: dict[str, int] = field(default_factory=dict)

    def add(self, row: dict[str, Any]) -> None:
        for name in OUTCOME_FIELDS:
            setattr(self, name, getattr(self, name) + (row.get(name) or 0))
        for reason in SUPPRESSION_REASONS:
            value = row.get(f"suppressed_{reason}") or 0
            self.suppressed[reason] = self.suppressed.get(reason, 0) + value

    @property
    def click_through(self) -> Interval | None:
        return proportion_interval(self.exposures, self.clicks)

    @property
    def conversion(self) -> Interval | None:
        return proportion_interval(self.exposures, self.conversions)

    @property
    def bounce_rate(self) -> Interval | None:
        return proportion_interval(self.sessions, self.bounces)

    @property
    def session_duration(self) -> Interval | None:
        return mean_interval(self.sessions, self.session_seconds, self.session_seconds_sq)

    @property
    def revenue_per_exposure(self) -> Interval | None:
        return mean_interval(self.exposures, self.revenue, self.revenue_sq)

    def summary(self, metric: str) -> VariantSummary:
        """``click_through``/``conversion`` (binary) or ``revenue`` as stats input."""
        if metric == "click_through":
            return VariantSummary.binary(self.exposures, self.clicks)
        if metric == "conversion":
            return VariantSummary.binary(self.exposures, self.conversions)
        if metric == "revenue":
            return VariantSummary.continuous(self.exposures, self.revenue, self.revenue_sq)
        raise ValueError(f"unknown metric {metric!r}")


def _hourly(properties: QuerySet[Property], filters: DashboardFilters) -> QuerySet:
    rows = AdjustmentHourly.objects.filter(
        property__in=properties,
        hour__gte=filters.start_at,
        hour__lt=filters.end_at,
        segment_key=filters.segment,
    )
    if filters.slot:
        rows = rows.filter(slot_key=filters.slot)
    if filters.device_type:
        rows = rows.filter(device_type=filters.device_type)
    return rows


def _sums(*extra: str) -> dict[str, Sum]:
    return {name: Sum(name) for name in (*OUTCOME_FIELDS, *SUPPRESSION_FIELDS, *extra)}


def adjustments_daily(
    properties: QuerySet[Property], filters: DashboardFilters
) -> list[dict[str, Any]]:
    """Overview: per day and group, exposures, adjustments (non-default exposures), outcomes.

    Keys: day, group, exposures, adjustments, clicks, conversions, revenue, sessions,
    session_seconds, session_seconds_sq, bounces (plus revenue_sq, suppressed_*).
    """
    rows = (
        _hourly(properties, filters)
        .annotate(day=TruncDate("hour"))
        .values("day", "group", "is_default")
        .annotate(**_sums())
        .order_by("day", "group")
    )
    merged: dict[tuple[date, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["day"], row["group"])
        out = merged.setdefault(
            key,
            {"day": row["day"], "group": row["group"], "adjustments": 0}
            | dict.fromkeys((*OUTCOME_FIELDS, *SUPPRESSION_FIELDS), 0),
        )
        for name in (*OUTCOME_FIELDS, *SUPPRESSION_FIELDS):
            out[name] += row[name] or 0
        if not row["is_default"]:
            out["adjustments"] += row["exposures"] or 0
    return [merged[k] for k in sorted(merged)]


def group_outcomes(
    properties: QuerySet[Property], filters: DashboardFilters
) -> dict[str, Outcomes]:
    """Overview: outcomes per group (personalized, holdout, not consented) with intervals."""
    result = {g.value: Outcomes() for g in Group}
    for row in _hourly(properties, filters).values("group").annotate(**_sums()):
        result[row["group"]].add(row)
    return result


@dataclass
class SourceRow:
    """Rules / experiments page: one source × version × variant in a slot."""

    slot_key: str
    source_kind: str
    source_key: str
    source_version: int
    variant_key: str
    outcomes: Outcomes
    lift: FrequentistResult | None = None  # click-through against the slot's default

    @property
    def label(self) -> str:
        version = f" v{self.source_version}" if self.source_version else ""
        return f"{self.source_key}{version} → {self.variant_key}"


def source_outcomes(
    properties: QuerySet[Property], filters: DashboardFilters, kind: str = "rule"
) -> list[SourceRow]:
    """Per slot, source (of ``kind``: rule / experiment / rollout), version and variant:
    exposures, outcomes, and the click-through lift against the slot's default answers
    of consented, non-holdout visitors, with its interval (None when not computable).

    A suppressed candidate has no version: its suppressions are reported on a row with
    ``source_version=0`` and ``variant_key=""`` (zero exposures).
    """
    base = _hourly(properties, filters)
    rows = (
        base.filter(source_kind=kind)
        .values("slot_key", "source_kind", "source_key", "source_version", "variant_key")
        .annotate(**_sums())
        .order_by("slot_key", "source_key", "source_version", "variant_key")
    )
    defaults: dict[str, Outcomes] = defaultdict(Outcomes)
    for row in (
        base.filter(is_default=True, group=Group.PERSONALIZED)
        .values("slot_key")
        .annotate(**_sums())
    ):
        defaults[row["slot_key"]].add(row)
    result = []
    for row in rows:
        outcomes = Outcomes()
        outcomes.add(row)
        item = SourceRow(
            row["slot_key"],
            row["source_kind"],
            row["source_key"],
            row["source_version"],
            row["variant_key"],
            outcomes,
        )
        control = defaults.get(row["slot_key"])
        if control is not None and outcomes.exposures:
            lift = relative_lift(
                control.summary("click_through"), outcomes.summary("click_through")
            )
            item.lift = lift if isinstance(lift, FrequentistResult) else None
        result.append(item)
    return result


def suppressions(
    properties: QuerySet[Property], filters: DashboardFilters, kind: str = "rule"
) -> list[dict[str, Any]]:
    """Per slot and source key: suppressions by reason (cooldown, cap, budget, conflict,
    consent, holdout), over all versions. Keys: slot_key, source_key, and the reasons."""
    rows = (
        _hourly(properties, filters)
        .filter(source_kind=kind)
        .values("slot_key", "source_key")
        .annotate(**{r: Sum(f"suppressed_{r}") for r in SUPPRESSION_REASONS})
        .order_by("slot_key", "source_key")
    )
    return [{k: (v or 0) for k, v in row.items()} for row in rows]


def retention_cohorts(
    properties: QuerySet[Property], filters: DashboardFilters
) -> list[dict[str, Any]]:
    """Cohort heatmap and curves: cohort_week, weeks_since, group, cohort_size, active,
    rate (active / cohort_size), for cohorts first seen between the filter's dates."""
    rows = (
        RetentionCohortDaily.objects.filter(
            property__in=properties,
            cohort_week__gte=filters.start - timedelta(days=filters.start.weekday()),
            cohort_week__lte=filters.end,
        )
        .values("cohort_week", "weeks_since", "group")
        .annotate(cohort_size=Sum("cohort_size"), active=Sum("active"))
        .order_by("cohort_week", "weeks_since", "group")
    )
    return [
        {**row, "rate": row["active"] / row["cohort_size"] if row["cohort_size"] else 0.0}
        for row in rows
    ]


def retention_cells(
    cohorts: list[dict[str, Any]], today: date
) -> dict[tuple[date, int, str], tuple[int, int]]:
    """(cohort week, weeks since, group) → (cohort size, active) for every week a cohort has
    reached. The rollup keeps no row for a week nobody came back in: that is a 0, and the
    cohort still counts in the denominator (else curves would only pool cohorts that returned)."""
    sizes: dict[tuple[date, str], int] = {}
    active: dict[tuple[date, int, str], int] = {}
    for row in cohorts:
        sizes[(row["cohort_week"], row["group"])] = row["cohort_size"]
        active[(row["cohort_week"], row["weeks_since"], row["group"])] = row["active"]
    cells = {}
    for (week, group), size in sizes.items():
        reached = (today - week).days // 7
        for since in range(reached + 1):
            cells[(week, since, group)] = (size, active.get((week, since, group), 0))
    return cells


def retention_curves(
    properties: QuerySet[Property], filters: DashboardFilters
) -> dict[str, list[dict[str, Any]]]:
    """Per group: weeks_since → pooled retention over every cohort that has reached that
    week (a week nobody came back in counts as 0), with a Wilson interval."""
    pooled: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    today = min(filters.end, timezone.now().date())
    for (_, since, group), (size, active) in retention_cells(
        retention_cohorts(properties, filters), today
    ).items():
        cell = pooled[(group, since)]
        cell[0] += size
        cell[1] += active
    curves: dict[str, list[dict[str, Any]]] = {g.value: [] for g in Group}
    for (group, weeks), (size, active) in sorted(pooled.items(), key=lambda i: i[0]):
        curves[group].append(
            {
                "weeks_since": weeks,
                "cohort_size": size,
                "active": active,
                "rate": proportion_interval(size, active),
            }
        )
    return curves


@dataclass
class ScoreRow:
    survey_key: str
    question_key: str
    question_type: str
    exposure_kind: str
    exposure_key: str
    variant_key: str
    answers: int
    mean: Interval | None
    nps: Interval | None  # NPS questions: promoters − detractors share, in −100…100
    complement_answers: int  # answers not exposed to this (``all`` minus this row)
    complement_mean: Interval | None
    total: float = 0.0  # Σscore and Σscore² of this row, for tests between rows
    total_sq: float = 0.0

    @property
    def label(self) -> str:
        if self.exposure_kind in (ExposureKind.ALL, ExposureKind.NONE):
            return str(ExposureKind(self.exposure_kind).label)
        variant = f" / {self.variant_key}" if self.variant_key else ""
        return f"{self.exposure_kind} {self.exposure_key}{variant}"


def _nps_interval(n: int, promoters: int, detractors: int) -> Interval | None:
    if n <= 0:
        return None
    p, d = promoters / n, detractors / n
    score = p - d
    var = (p + d - score * score) / n
    half = Z95 * math.sqrt(max(0.0, var))
    return Interval(100 * score, 100 * (score - half), 100 * (score + half))


def survey_scores(
    properties: QuerySet[Property], filters: DashboardFilters, survey_key: str = ""
) -> list[ScoreRow]:
    """Feedback page: mean score (and NPS) per question by exposure, each with the same
    figures for the answers not exposed to it, and intervals."""
    rows = SurveyScoreDaily.objects.filter(
        property__in=properties, day__gte=filters.start, day__lte=filters.end
    )
    if survey_key:
        rows = rows.filter(survey_key=survey_key)
    grouped = (
        rows.values(
            "survey_key",
            "question_key",
            "question_type",
            "exposure_kind",
            "exposure_key",
            "variant_key",
        )
        .annotate(
            n=Sum("answers"),
            s=Sum("total"),
            ss=Sum("total_sq"),
            pro=Sum("promoters"),
            det=Sum("detractors"),
        )
        .order_by("survey_key", "question_key", "exposure_kind", "exposure_key", "variant_key")
    )
    data = list(grouped)
    totals = {
        (r["survey_key"], r["question_key"]): r
        for r in data
        if r["exposure_kind"] == ExposureKind.ALL
    }
    result = []
    for r in data:
        everyone = totals.get((r["survey_key"], r["question_key"]), r)
        cn = everyone["n"] - r["n"]
        is_nps = r["question_type"] == "nps"
        result.append(
            ScoreRow(
                r["survey_key"],
                r["question_key"],
                r["question_type"],
                r["exposure_kind"],
                r["exposure_key"],
                r["variant_key"],
                r["n"],
                mean_interval(r["n"], r["s"], r["ss"]),
                _nps_interval(r["n"], r["pro"], r["det"]) if is_nps else None,
                cn,
                mean_interval(cn, everyone["s"] - r["s"], everyone["ss"] - r["ss"]),
                r["s"],
                r["ss"],
            )
        )
    return result


def survey_seen_correlation(
    properties: QuerySet[Property], filters: DashboardFilters
) -> list[dict[str, Any]]:
    """Per survey question: Pearson r between adjustments seen and score (with a Fisher
    interval), and the mean score per bucket of adjustments seen (for a chart)."""
    rows = (
        SurveySeenDaily.objects.filter(
            property__in=properties, day__gte=filters.start, day__lte=filters.end
        )
        .values("survey_key", "question_key", "bucket")
        .annotate(
            n=Sum("n"),
            sx=Sum("sum_x"),
            sy=Sum("sum_y"),
            sxx=Sum("sum_xx"),
            syy=Sum("sum_yy"),
            sxy=Sum("sum_xy"),
        )
        .order_by("survey_key", "question_key", "bucket")
    )
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        item = out.setdefault(
            (r["survey_key"], r["question_key"]),
            {
                "survey_key": r["survey_key"],
                "question_key": r["question_key"],
                "n": 0,
                "correlation": None,
                "buckets": [],
            },
        )
        if r["bucket"]:
            item["buckets"].append(
                {
                    "bucket": r["bucket"],
                    "n": r["n"],
                    "mean": mean_interval(r["n"], r["sy"], r["syy"]),
                }
            )
            continue
        n = r["n"]
        item["n"] = n
        cov = n * r["sxy"] - r["sx"] * r["sy"]
        vx = n * r["sxx"] - r["sx"] ** 2
        vy = n * r["syy"] - r["sy"] ** 2
        if n >= 2 and vx > 0 and vy > 0:
            item["correlation"] = correlation_interval(n, cov / math.sqrt(vx * vy)) or Interval(
                cov / math.sqrt(vx * vy), -1.0, 1.0
            )
    for item in out.values():
        item["buckets"].sort(key=lambda b: _bucket_order(b["bucket"]))
    return list(out.values())


def _bucket_order(label: str) -> int:
    return int(label.split("-")[0].rstrip("+")) if label else -1


def recent_free_text(
    properties: QuerySet[Property], filters: DashboardFilters, limit: int = 20
) -> list[dict[str, Any]]:
    """Feedback page: the latest free-text answers, each with the non-default adjustments
    that visitor saw before answering (source, key, variant). Reads the answers table
    (not events); bounded by ``limit``. The visitor id is not returned."""
    text_keys = set(
        SurveyQuestion.objects.filter(
            survey__property__in=properties, type=QuestionType.TEXT
        ).values_list("survey_id", "key")
    )
    if not text_keys:
        return []
    responses = (
        SurveyResponse.objects.filter(
            property__in=properties,
            submitted_at__gte=filters.start_at,
            submitted_at__lt=filters.end_at,
        )
        .select_related("survey")
        .order_by("-submitted_at")[: limit * 5]
    )
    result = []
    for response in responses:
        texts = {
            key: str(value)
            for key, value in (response.answers or {}).items()
            if (response.survey_id, key) in text_keys and str(value).strip()
        }
        if not texts:
            continue
        seen = (
            Adjustment.objects.filter(
                property_id=response.property_id,
                visitor_id=response.visitor_id,
                is_default=False,
                created_at__lte=response.submitted_at,
            )
            .values("slot_key", "source_kind", "source_key", "variant_key")
            .distinct()
            .order_by("slot_key", "source_key")[:20]
        )
        result.append(
            {
                "submitted_at": response.submitted_at,
                "survey_key": response.survey.key,
                "answers": texts,
                "adjustments": list(seen),
            }
        )
        if len(result) >= limit:
            break
    return result


def segment_sizes(
    properties: QuerySet[Property], filters: DashboardFilters
) -> list[dict[str, Any]]:
    """Segments page: day, segment_key, size (distinct visitors decided on that day)."""
    rows = SegmentSizeDaily.objects.filter(
        property__in=properties, day__gte=filters.start, day__lte=filters.end
    )
    if filters.segment:
        rows = rows.filter(segment_key=filters.segment)
    return [
        dict(row)
        for row in rows.values("day", "segment_key")
        .annotate(size=Sum("size"))
        .order_by("day", "segment_key")
    ]


def event_fates_daily(
    properties: QuerySet[Property], filters: DashboardFilters
) -> list[dict[str, Any]]:
    """Data-quality page: day, event_type, fate, count."""
    return [
        dict(row)
        for row in EventFateDaily.objects.filter(
            property__in=properties, day__gte=filters.start, day__lte=filters.end
        )
        .values("day", "event_type", "fate")
        .annotate(count=Sum("count"))
        .order_by("day", "event_type", "fate")
    ]


def consent_daily(
    properties: QuerySet[Property], filters: DashboardFilters
) -> list[dict[str, Any]]:
    """Consent page: day, purpose ("" is the day's total), records, granted, rate.

    On the total row ``granted`` counts GPC opt-outs, so its ``rate`` is the GPC share.
    """
    rows = (
        ConsentDaily.objects.filter(
            property__in=properties, day__gte=filters.start, day__lte=filters.end
        )
        .values("day", "purpose")
        .annotate(records=Sum("records"), granted=Sum("granted"))
        .order_by("day", "purpose")
    )
    return [
        {**row, "rate": row["granted"] / row["records"] if row["records"] else 0.0} for row in rows
    ]


def filter_choices(properties: QuerySet[Property]) -> dict[str, list[str]]:
    """Values the filter menus offer: slots, device types and segments seen in rollups."""
    # The all-visitors rows ("") hold every slot and device type the segment rows do.
    hourly = AdjustmentHourly.objects.filter(property__in=properties, segment_key="")
    return {
        "slots": sorted(set(hourly.values_list("slot_key", flat=True).distinct())),
        "device_types": sorted(
            set(hourly.exclude(device_type="").values_list("device_type", flat=True).distinct())
        ),
        "segments": sorted(
            set(
                SegmentSizeDaily.objects.filter(property__in=properties)
                .values_list("segment_key", flat=True)
                .distinct()
            )
        ),
    }


def rollup_freshness(properties: QuerySet[Property]) -> dict[str, datetime | None]:
    """Per rollup kind: the oldest watermark over the properties ("data as of")."""
    out: dict[str, datetime | None] = {}
    for kind, watermark in RollupState.objects.filter(property__in=properties).values_list(
        "kind", "watermark"
    ):
        current = out.get(kind)
        out[kind] = watermark if current is None or watermark < current else current
    return out


def has_data(properties: QuerySet[Property]) -> bool:
    """Whether any hourly rollup row exists (pages show their empty state otherwise)."""
    return AdjustmentHourly.objects.filter(property__in=properties).exists()


__all__ = [
    "DashboardFilters",
    "Interval",
    "Outcomes",
    "ScoreRow",
    "SourceRow",
    "adjustments_daily",
    "consent_daily",
    "event_fates_daily",
    "filter_choices",
    "group_outcomes",
    "has_data",
    "recent_free_text",
    "retention_cohorts",
    "retention_cells",
    "retention_curves",
    "rollup_freshness",
    "segment_sizes",
    "source_outcomes",
    "suppressions",
    "survey_scores",
    "survey_seen_correlation",
]
