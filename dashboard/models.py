"""Rollup tables the dashboards read (never raw events).

Every table holds aggregates only: no visitor ids, so none is a visitor-data store
for the consent registry (a visitor's erasure cannot be reached through a count).
Field names avoid the word "visitor" on purpose (tests/consent/test_registry.py reads names).

The rollup services (``dashboard.rollups``) replace whole hours or days per property
in one transaction, so running a rollup twice changes nothing.
"""

from django.db import models

from personalization.models import Property


class Group(models.TextChoices):
    """Which arm a decision (or a visitor, for retention) belongs to.

    Not consented wins over holdout: the holdout is the consented visitors that were
    held back, so personalized against holdout compares like with like.
    """

    PERSONALIZED = "personalized", "Personalized"
    HOLDOUT = "holdout", "Holdout"
    NOT_CONSENTED = "not_consented", "Not consented"


class RollupKind(models.TextChoices):
    HOURLY = "hourly", "Hourly adjustments"
    RETENTION = "retention", "Retention cohorts"
    SURVEYS = "surveys", "Survey aggregates"
    SEGMENTS = "segments", "Segment sizes"
    FATES = "fates", "Event fates"
    CONSENT = "consent", "Consent opt-in"


class AttributionWindow(models.Model):
    """How long after an adjustment a goal event without a decision id counts for it.

    A slot without a row uses ``settings.DASHBOARD_ATTRIBUTION_WINDOW`` (seconds).
    """

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    slot_key = models.CharField(max_length=64)
    seconds = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["property", "slot_key"], name="attribution_window_slot")
        ]

    def __str__(self) -> str:
        return f"{self.slot_key}: {self.seconds}s"


# The summed outcome columns of AdjustmentHourly, in the order the rollup computes them,
# and its suppression columns by the engine's reason.
OUTCOME_FIELDS = (
    "exposures",
    "clicks",
    "conversions",
    "revenue",
    "revenue_sq",
    "sessions",
    "session_seconds",
    "session_seconds_sq",
    "bounces",
)
SUPPRESSION_COLUMNS = {
    "cooldown": "suppressed_cooldown",
    "frequency_cap": "suppressed_cap",
    "session_budget": "suppressed_budget",
    "conflict": "suppressed_conflict",
    "consent": "suppressed_consent",
    "holdout": "suppressed_holdout",
}


class AdjustmentHourly(models.Model):
    """Per hour and slot answer: exposures, outcomes attributed to them, and suppressions.

    One logged answer (``personalization.Adjustment``) is one exposure. ``clicks`` and
    ``conversions`` count exposures with at least one attributed click / conversion or
    purchase, so ``clicks / exposures`` is a proportion. ``sessions`` counts exposures
    that were the slot's first in their session; ``session_seconds`` (time from that
    exposure to the session's last event) and ``bounces`` (at most one page view from
    it on) are counted on those only, so a slot decided on every page is not counted
    once per page. ``*_sq`` are sums of squares, for intervals.

    Suppressions are rows of the suppressed candidate (``source_kind``/``source_key``
    from ``"rule:<key>"``) with ``variant_key=""``, ``source_version=0`` and zero
    exposures. ``source_version`` 0 means "no version" (defaults, suppressions).
    """

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    slot_key = models.CharField(max_length=64)
    source_kind = models.CharField(max_length=16)
    source_key = models.CharField(max_length=64, blank=True)
    source_version = models.PositiveIntegerField(default=0)
    variant_key = models.CharField(max_length=64, blank=True)
    is_default = models.BooleanField()
    device_type = models.CharField(max_length=16, blank=True)
    group = models.CharField(max_length=16, choices=Group.choices)
    # "" for all visitors; else the rows again for visitors the decision placed in this
    # segment (a visitor may be in several, so segment rows do not add up to the "" rows).
    segment_key = models.CharField(max_length=64, blank=True, default="")

    exposures = models.PositiveIntegerField(default=0)
    clicks = models.PositiveIntegerField(default=0)
    conversions = models.PositiveIntegerField(default=0)
    revenue = models.FloatField(default=0)
    revenue_sq = models.FloatField(default=0)
    sessions = models.PositiveIntegerField(default=0)
    session_seconds = models.FloatField(default=0)
    session_seconds_sq = models.FloatField(default=0)
    bounces = models.PositiveIntegerField(default=0)

    suppressed_cooldown = models.PositiveIntegerField(default=0)
    suppressed_cap = models.PositiveIntegerField(default=0)
    suppressed_budget = models.PositiveIntegerField(default=0)
    suppressed_conflict = models.PositiveIntegerField(default=0)
    suppressed_consent = models.PositiveIntegerField(default=0)
    suppressed_holdout = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "property",
                    "hour",
                    "slot_key",
                    "source_kind",
                    "source_key",
                    "source_version",
                    "variant_key",
                    "is_default",
                    "device_type",
                    "group",
                    "segment_key",
                ],
                name="adjustment_hourly_key",
            )
        ]
        indexes = [
            models.Index(fields=["property", "hour"], name="adjustment_hourly_time"),
            # Every page reads one segment's rows ("" = all visitors) over a time range.
            models.Index(
                fields=["property", "segment_key", "hour"], name="adjustment_hourly_segment"
            ),
            models.Index(
                fields=["property", "source_kind", "source_key", "hour"],
                name="adjustment_hourly_source",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} {self.slot_key}={self.variant_key} ({self.group})"


class RetentionCohortDaily(models.Model):
    """Visitors first seen in ``cohort_week`` (a Monday) and active ``weeks_since`` later.

    Computed daily, whole property at once. A visitor's group: not consented unless a
    decision of theirs was made under consent to personalization; else holdout or
    personalized. Activity is a logged decision in that week.
    """

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    cohort_week = models.DateField()
    weeks_since = models.PositiveSmallIntegerField()
    group = models.CharField(max_length=16, choices=Group.choices)
    cohort_size = models.PositiveIntegerField(default=0)
    active = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["property", "cohort_week", "weeks_since", "group"],
                name="retention_cohort_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.cohort_week} +{self.weeks_since}w {self.group}: {self.active}"


class ExposureKind(models.TextChoices):
    ALL = "all", "All answers"
    NONE = "none", "Not exposed to any adjustment"
    RULE = "rule", "Exposed to a rule"
    EXPERIMENT = "experiment", "Exposed to an experiment variant"
    ROLLOUT = "rollout", "Exposed to a rollout"
    MODEL = "model", "Exposed to a model"


class SurveyScoreDaily(models.Model):
    """Scores of one NPS/rating question per day, by what the answering visitor was shown.

    An answer counts once in ``all``, and once for each distinct non-default source it
    was exposed to before answering (``exposure_key`` is the rule / experiment key,
    ``variant_key`` the variant), or in ``none``. So "not exposed to X" is ``all`` minus
    ``X`` (counts and sums subtract). ``total``/``total_sq`` are Σscore and Σscore².
    """

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    survey_key = models.CharField(max_length=64)
    question_key = models.CharField(max_length=64)
    question_type = models.CharField(max_length=16)
    exposure_kind = models.CharField(max_length=16, choices=ExposureKind.choices)
    exposure_key = models.CharField(max_length=64, blank=True)
    variant_key = models.CharField(max_length=64, blank=True)
    answers = models.PositiveIntegerField(default=0)
    total = models.FloatField(default=0)
    total_sq = models.FloatField(default=0)
    promoters = models.PositiveIntegerField(default=0)
    passives = models.PositiveIntegerField(default=0)
    detractors = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "property",
                    "day",
                    "survey_key",
                    "question_key",
                    "exposure_kind",
                    "exposure_key",
                    "variant_key",
                ],
                name="survey_score_key",
            )
        ]
        indexes = [models.Index(fields=["property", "day"], name="survey_score_time")]

    def __str__(self) -> str:
        return f"{self.day} {self.survey_key}.{self.question_key} {self.exposure_kind}"


class SurveySeenDaily(models.Model):
    """Adjustments seen before answering (x) against the score (y), per question and day.

    ``bucket`` groups x ("0", "1", "2", "3-5", "6-10", "11+") with n, Σy, Σy² for a
    chart; the ``bucket=""`` row holds n, Σx, Σy, Σx², Σy², Σxy over all answers so a
    correlation and its interval can be computed over any range of days.
    """

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    survey_key = models.CharField(max_length=64)
    question_key = models.CharField(max_length=64)
    bucket = models.CharField(max_length=8, blank=True)
    n = models.PositiveIntegerField(default=0)
    sum_x = models.FloatField(default=0)
    sum_y = models.FloatField(default=0)
    sum_xx = models.FloatField(default=0)
    sum_yy = models.FloatField(default=0)
    sum_xy = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["property", "day", "survey_key", "question_key", "bucket"],
                name="survey_seen_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.survey_key}.{self.question_key} [{self.bucket}]"


class SegmentSizeDaily(models.Model):
    """Distinct visitors per day whose decisions placed them in a segment."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    segment_key = models.CharField(max_length=64)
    size = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["property", "day", "segment_key"], name="segment_size_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.segment_key}: {self.size}"


class EventFateDaily(models.Model):
    """Events per day, type and fate (accepted, duplicate, quarantined, dropped)."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    event_type = models.CharField(max_length=64)
    fate = models.CharField(max_length=24)
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["property", "day", "event_type", "fate"], name="event_fate_daily_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.event_type} {self.fate}: {self.count}"


class ConsentDaily(models.Model):
    """Consent records written per day and purpose: how many granted it.

    ``purpose=""`` is the day's total row: ``records`` all records, ``granted`` the
    GPC opt-outs among them (``gpc_share = granted / records``).
    """

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    purpose = models.CharField(max_length=32, blank=True)
    records = models.PositiveIntegerField(default=0)
    granted = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["property", "day", "purpose"], name="consent_daily_key")
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.purpose or 'all'}: {self.granted}/{self.records}"


class RollupState(models.Model):
    """Per property and rollup kind: up to when input has been folded in."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=RollupKind.choices)
    watermark = models.DateTimeField(help_text="Input received up to here is in the rollup.")
    cursor = models.JSONField(
        default=dict, blank=True, help_text="Highest input row id folded in, per input table."
    )
    last_run_at = models.DateTimeField()
    last_duration_ms = models.PositiveIntegerField(default=0)
    last_rows = models.PositiveIntegerField(default=0, help_text="Rows written by the last run.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["property", "kind"], name="rollup_state_key")
        ]

    def __str__(self) -> str:
        return f"{self.property_id} {self.kind} @ {self.watermark:%Y-%m-%d %H:%M}"
