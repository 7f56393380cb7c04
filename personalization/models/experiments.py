import builtins

from django.conf import settings
from django.db import models

from .config import ConfigManager
from .properties import Property
from .targeting import Slot


class GoalKind(models.TextChoices):
    BINARY = "binary", "Binary (converts or not)"
    CONTINUOUS = "continuous", "Continuous (a value per visitor)"
    RETENTION = "retention", "Retention (returns within N days)"


class GoalMetric(models.TextChoices):
    EVENT = "event", "Events of the type (binary: any; continuous: count)"
    REVENUE = "revenue", "Revenue of purchases"
    SESSION_DURATION = "session_duration", "Session seconds after exposure"


class Goal(models.Model):
    """What an experiment or rollout measures, counted per exposed visitor."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="goals")
    key = models.SlugField(max_length=64)
    name = models.CharField(max_length=120, blank=True)
    kind = models.CharField(max_length=16, choices=GoalKind.choices, default=GoalKind.BINARY)
    metric = models.CharField(max_length=24, choices=GoalMetric.choices, default=GoalMetric.EVENT)
    event_type = models.CharField(max_length=64, blank=True, help_text="e.g. click, purchase")
    element_id = models.CharField(max_length=256, blank=True, help_text="Only on this element.")
    window_hours = models.PositiveIntegerField(
        default=72, help_text="Attribution window after the first exposure."
    )
    retention_days = models.PositiveIntegerField(default=7)
    inverse = models.BooleanField(default=False, help_text="Lower is better (e.g. bounces).")

    objects = ConfigManager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["property", "key"], name="goal_key")]
        ordering = ["property_id", "key"]

    def __str__(self) -> str:
        return self.key


class ExperimentStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"


class Experiment(models.Model):
    """An A/B or multivariate test of a slot's variants, bucketed like GrowthBook."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="experiments")
    key = models.SlugField(max_length=64)
    name = models.CharField(max_length=120, blank=True)
    slot = models.ForeignKey(Slot, on_delete=models.CASCADE, related_name="experiments")
    variants = models.JSONField(
        help_text='[{"variant": "default", "weight": 0.5}, {"variant": "b", "weight": 0.5}]; '
        "the first is the control."
    )
    coverage = models.FloatField(default=1.0, help_text="Share of eligible visitors included.")
    condition = models.JSONField(default=dict, blank=True)
    namespace = models.JSONField(
        null=True, blank=True, help_text='Mutual exclusion: ["checkout", 0.0, 0.5].'
    )
    hash_seed = models.CharField(max_length=64, blank=True, help_text="Defaults to the key.")
    hash_version = models.PositiveSmallIntegerField(default=2)
    priority = models.IntegerField(default=1000, help_text="Against rules of the same slot.")
    confidence = models.FloatField(default=0.95)
    method = models.CharField(
        max_length=16,
        choices=[("fixed", "Fixed horizon"), ("sequential", "Sequential")],
        default="fixed",
    )
    correction = models.CharField(
        max_length=8, choices=[("holm", "Holm"), ("bh", "Benjamini-Hochberg")], default="holm"
    )
    cuped = models.BooleanField(
        default=True, help_text="Variance reduction with the goal's pre-exposure value."
    )
    min_users = models.PositiveIntegerField(default=100)
    planned_users = models.PositiveIntegerField(null=True, blank=True)
    bandit = models.BooleanField(default=False, help_text="Thompson-sampling allocation.")
    bandit_min_share = models.FloatField(default=0.1)
    status = models.CharField(
        max_length=16, choices=ExperimentStatus.choices, default=ExperimentStatus.DRAFT
    )
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    # A change that would bias a running experiment (weights, variants, coverage, condition,
    # namespace, slot, hashing) starts a new phase; results count the current phase only.
    phase = models.PositiveIntegerField(default=1, editable=False)
    phase_started_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When the current phase began (empty: phase 1, since the start).",
    )
    winner = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = ConfigManager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["property", "key"], name="experiment_key")]
        ordering = ["property_id", "key"]

    def __str__(self) -> str:
        return self.key

    @builtins.property
    def seed(self) -> str:
        return self.hash_seed or self.key


class GoalRole(models.TextChoices):
    PRIMARY = "primary", "Primary"
    SECONDARY = "secondary", "Secondary"
    GUARDRAIL = "guardrail", "Guardrail"


class ExperimentGoal(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="goal_links")
    goal = models.ForeignKey(Goal, on_delete=models.CASCADE, related_name="+")
    role = models.CharField(max_length=16, choices=GoalRole.choices, default=GoalRole.PRIMARY)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["experiment", "goal"], name="experiment_goal_unique")
        ]

    def __str__(self) -> str:
        return f"{self.experiment_id}:{self.goal_id} ({self.role})"


class ExperimentSnapshot(models.Model):
    """Results as computed at one moment; ``?at=`` reads the snapshot in force then."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="snapshots")
    computed_at = models.DateTimeField()
    results = models.JSONField()

    class Meta:
        ordering = ["experiment_id", "-computed_at"]
        indexes = [models.Index(fields=["experiment", "-computed_at"], name="snapshot_time")]

    def __str__(self) -> str:
        return f"{self.experiment_id} @ {self.computed_at:%Y-%m-%d %H:%M}"


class RolloutStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    HALTED = "halted", "Halted by its guardrail"
    KILLED = "killed", "Killed"


class Rollout(models.Model):
    """Serve a slot's variant to a growing share of visitors, deterministically and stickily."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="rollouts")
    key = models.SlugField(max_length=64)
    slot = models.ForeignKey(Slot, on_delete=models.CASCADE, related_name="rollouts")
    variant = models.SlugField(max_length=64)
    schedule = models.JSONField(
        default=list,
        help_text='Ramp steps: [{"at": "2026-12-01T00:00:00Z", "percent": 5}, ...].',
    )
    percent = models.FloatField(default=0, help_text="Before the first step of the schedule.")
    guardrail = models.ForeignKey(Goal, null=True, blank=True, on_delete=models.SET_NULL)
    status = models.CharField(
        max_length=16, choices=RolloutStatus.choices, default=RolloutStatus.ACTIVE
    )
    priority = models.IntegerField(default=500)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = ConfigManager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["property", "key"], name="rollout_key")]

    def __str__(self) -> str:
        return self.key


class History(models.Model):
    """What happened to an experiment or rollout: started, stopped, promoted, halted, killed."""

    experiment = models.ForeignKey(
        Experiment, null=True, blank=True, on_delete=models.CASCADE, related_name="history"
    )
    rollout = models.ForeignKey(
        Rollout, null=True, blank=True, on_delete=models.CASCADE, related_name="history"
    )
    at = models.DateTimeField(auto_now_add=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=32)
    evidence = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]
        verbose_name_plural = "history"

    def __str__(self) -> str:
        return f"{self.action} @ {self.at:%Y-%m-%d %H:%M}"
