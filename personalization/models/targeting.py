from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from .config import ConfigManager
from .properties import Property

# A top-level key of a variant's content (no path: ``text``, ``delay_ms``, ``show-banner``).
FLAG_VALUE_FIELD = RegexValidator(
    r"^[A-Za-z0-9_-]+$", "A content key: letters, digits, '_' and '-' (a top-level key)."
)


class Slot(models.Model):
    """A place on the storefront's pages whose content can be adjusted."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="slots")
    key = models.SlugField(max_length=64)
    name = models.CharField(max_length=120, blank=True)
    description = models.TextField(blank=True)
    default_variant = models.SlugField(
        max_length=64,
        default="default",
        help_text="Key of the variant served when nothing applies.",
    )
    content_schema = models.JSONField(
        null=True, blank=True, help_text="Optional JSON Schema every variant's content must meet."
    )
    serve_model = models.ForeignKey(
        "PropensityModel",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Serve the variant with the highest predicted probability of this model's "
        "goal when no rule, experiment or rollout applies.",
    )
    flag_value_field = models.CharField(
        max_length=64,
        blank=True,
        validators=[FLAG_VALUE_FIELD],
        help_text="OpenFeature (OFREP) only: the key of the variants' content whose value is "
        "served as the flag's value, so a client can ask for a string, number or boolean. "
        "Empty: the whole content object. A variant without the key answers the caller's "
        "own default.",
    )

    objects = ConfigManager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["property", "key"], name="slot_key")]
        ordering = ["property_id", "key"]

    def __str__(self) -> str:
        return self.key


class Strategy(models.TextChoices):
    FIXED = "", "Fixed content"
    TRENDING = "trending", "Trending items (last hour)"
    RECENTLY_VIEWED = "recently_viewed", "The visitor's recently viewed items"
    POPULAR_IN_SEGMENT = "popular_in_segment", "Popular in the visitor's segment"


class Variant(models.Model):
    CONFIG_PROPERTY_PATH = "slot__property_id"

    slot = models.ForeignKey(Slot, on_delete=models.CASCADE, related_name="variants")
    key = models.SlugField(max_length=64)
    content = models.JSONField(default=dict, blank=True)
    strategy = models.CharField(max_length=32, choices=Strategy.choices, default="", blank=True)
    strategy_limit = models.PositiveSmallIntegerField(default=4)

    objects = ConfigManager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["slot", "key"], name="variant_key")]
        ordering = ["slot_id", "key"]

    def __str__(self) -> str:
        return f"{self.slot.key}:{self.key}"


class Segment(models.Model):
    """A reusable audience: a condition over live signals and context, or a saved visitor list."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="segments")
    key = models.SlugField(max_length=64)
    name = models.CharField(max_length=120, blank=True)
    condition = models.JSONField(default=dict, blank=True)
    goal = models.JSONField(
        default=dict,
        blank=True,
        help_text='Optional measurable goal: {"metric", "baseline", "target"}.',
    )
    cluster = models.ForeignKey(
        "Cluster",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="segments",
        help_text="Adopted from clustering: members are the visitors nearest this centroid.",
    )

    objects = ConfigManager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["property", "key"], name="segment_key")]
        ordering = ["property_id", "key"]

    def __str__(self) -> str:
        return self.key


class SegmentMember(models.Model):
    """A visitor on a segment's saved list (read by ``$inGroup`` and list segments)."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="members")
    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    visitor_id = models.CharField(max_length=128)

    objects = ConfigManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["segment", "visitor_id"], name="segment_member_key")
        ]

    def __str__(self) -> str:
        return f"{self.segment_id}:{self.visitor_id}"


class RuleStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    ARCHIVED = "archived", "Archived"


class RuleFires(models.TextChoices):
    """When a rule may apply: at page load (decide), in the open page (a live plan), or both."""

    ANY = "any", "At page load and in the page"
    LOAD = "load", "At page load only"
    PAGE = "page", "In the page only"


class Rule(models.Model):
    """When the condition holds, serve ``variant`` in ``slot`` — within cooldown and caps."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="rules")
    key = models.SlugField(max_length=64)
    name = models.CharField(max_length=120, blank=True)
    slot = models.ForeignKey(Slot, on_delete=models.CASCADE, related_name="rules")
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="rules")
    condition = models.JSONField(default=dict, blank=True)
    priority = models.IntegerField(default=100, help_text="Higher wins a slot.")
    status = models.CharField(max_length=16, choices=RuleStatus.choices, default=RuleStatus.DRAFT)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    cooldown_seconds = models.PositiveIntegerField(
        default=0, help_text="Minimum time before this rule applies again to the same visitor."
    )
    cap_per_session = models.PositiveIntegerField(null=True, blank=True)
    cap_per_day = models.PositiveIntegerField(null=True, blank=True)
    cap_per_week = models.PositiveIntegerField(null=True, blank=True)
    stickiness_override = models.BooleanField(
        default=False, help_text="May replace a variant already shown in the session."
    )
    min_sample = models.PositiveIntegerField(
        default=200, help_text="Slot-metric conditions hold only once the metric has this sample."
    )
    require_interval = models.BooleanField(
        default=False,
        help_text="Slot-metric thresholds hold only when the whole interval is past them.",
    )
    guardrail = models.ForeignKey(
        "Goal",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Checked hourly: the rule's variant against the slot default on this goal.",
    )
    guardrail_autopause = models.BooleanField(
        default=False, help_text="Pause the rule itself when its guardrail trips."
    )
    fires = models.CharField(
        max_length=8,
        choices=RuleFires.choices,
        default=RuleFires.ANY,
        help_text="A rule reading page.* signals fires in the open page; this restricts when "
        "it may apply.",
    )
    version = models.PositiveIntegerField(default=1, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = ConfigManager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["property", "key"], name="rule_key")]
        ordering = ["property_id", "-priority", "key"]

    def __str__(self) -> str:
        return self.key


class RuleVersion(models.Model):
    """The rule as it stood after each saved change: who, when, what."""

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    snapshot = models.JSONField()
    changes = models.JSONField(default=list, help_text="Field names changed from the previous.")
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(auto_now_add=True)
    note = models.CharField(max_length=200, blank=True)
    evidence = models.JSONField(
        default=dict, blank=True, help_text="What an automatic change was based on."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rule", "version"], name="rule_version_unique")
        ]
        ordering = ["rule_id", "-version"]

    def __str__(self) -> str:
        return f"{self.rule_id} v{self.version}"


class Decision(models.Model):
    """One logged decision: what each requested slot got, why, and what was suppressed."""

    decision_id = models.UUIDField(unique=True)
    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    visitor_id = models.CharField(max_length=128)
    session_id = models.CharField(max_length=128)
    created_at = models.DateTimeField()
    personalized = models.BooleanField()
    holdout = models.BooleanField(default=False)
    consent_record_id = models.BigIntegerField(null=True, blank=True)
    signals = models.JSONField(default=dict)
    context = models.JSONField(default=dict)
    suppressed = models.JSONField(default=list)
    # "load": decide at page load; "page": a live plan entry fired in the open page (its
    # ``parent_decision_id`` the page-load decision that offered it, ``signals`` the page's).
    trigger = models.CharField(max_length=8, default="load", db_default="load")
    parent_decision_id = models.UUIDField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["property", "visitor_id"], name="decision_visitor"),
            models.Index(fields=["property", "created_at"], name="decision_time"),
        ]

    def __str__(self) -> str:
        return str(self.decision_id)


class SourceKind(models.TextChoices):
    DEFAULT = "default", "Default"
    RULE = "rule", "Rule"
    EXPERIMENT = "experiment", "Experiment"
    ROLLOUT = "rollout", "Rollout"
    MODEL = "model", "Model"


class Adjustment(models.Model):
    """One slot's logged answer. A non-default answer is an adjustment; defaults are data too."""

    decision = models.ForeignKey(Decision, on_delete=models.CASCADE, related_name="answers")
    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    visitor_id = models.CharField(max_length=128)
    session_id = models.CharField(max_length=128)
    created_at = models.DateTimeField()
    slot_key = models.CharField(max_length=64)
    variant_key = models.CharField(max_length=64)
    source_kind = models.CharField(max_length=16, choices=SourceKind.choices)
    source_key = models.CharField(max_length=64, blank=True)
    source_version = models.PositiveIntegerField(null=True, blank=True)
    is_default = models.BooleanField()

    class Meta:
        indexes = [
            models.Index(fields=["property", "created_at"], name="adjustment_time"),
            models.Index(fields=["property", "visitor_id"], name="adjustment_visitor"),
            models.Index(fields=["property", "source_kind", "source_key"], name="adjustment_src"),
        ]

    def __str__(self) -> str:
        return f"{self.slot_key}={self.variant_key} ({self.source_kind})"


class RuleCounter(models.Model):
    """Per visitor and rule: how often it applied, per session/day/week, and when last.

    Updated by one conditional upsert, so concurrent decisions never exceed a cap.
    """

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    visitor_id = models.CharField(max_length=128)
    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="+")
    session_key = models.CharField(max_length=128)
    session_count = models.PositiveIntegerField(default=0)
    day_key = models.CharField(max_length=10)
    day_count = models.PositiveIntegerField(default=0)
    week_key = models.CharField(max_length=8)
    week_count = models.PositiveIntegerField(default=0)
    last_applied_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["property", "visitor_id", "rule"], name="rule_counter_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule_id}/{self.visitor_id}"


class SessionBudget(models.Model):
    """Per visitor session: adjustments made so far, and the sticky variant of each slot."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    visitor_id = models.CharField(max_length=128)
    session_id = models.CharField(max_length=128)
    adjustments = models.PositiveIntegerField(default=0)
    sticky = models.JSONField(default=dict)
    revision = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["property", "visitor_id", "session_id"], name="session_budget_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.visitor_id}/{self.session_id}: {self.adjustments}"


class LiveFiring(models.Model):
    """One report of a live plan entry firing in a page (``POST /api/v1/adjustments``): one
    per decision and slot, so a report sent twice is answered once (idempotent), with the
    outcome the first one got."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    visitor_id = models.CharField(max_length=128)
    session_id = models.CharField(max_length=128)
    decision_id = models.UUIDField()
    slot_key = models.CharField(max_length=64)
    # The rule whose entry fired, and how long after the page-load decision it fired.
    source_key = models.CharField(max_length=64, blank=True)
    seconds_to_fire = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField()
    applied = models.BooleanField(default=False)
    reason = models.CharField(max_length=32, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["decision_id", "slot_key"], name="live_firing_once")
        ]
        indexes = [
            models.Index(fields=["property", "visitor_id"], name="live_firing_visitor"),
            models.Index(fields=["property", "source_key"], name="live_firing_source"),
        ]

    def __str__(self) -> str:
        return f"{self.decision_id}/{self.slot_key}"
