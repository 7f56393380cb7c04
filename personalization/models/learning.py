"""What the product learns from its log: clustering runs and their clusters, propensity
models and their trained versions, who each was trained on, and guardrail checks of rules.

Artifacts (a trained model, pickled by joblib) live in the database next to their metrics,
so every process loads the same bytes and an erasure's retraining replaces them in one
transaction.
"""

from django.conf import settings
from django.db import models

from .experiments import Goal
from .properties import Property
from .targeting import Rule, Slot


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ClusterRun(models.Model):
    """One KMeans run over standardized visitor signal vectors of a window."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    window_days = models.PositiveSmallIntegerField(
        default=30, help_text="Visitors seen in this many days are clustered."
    )
    k_min = models.PositiveSmallIntegerField(default=2)
    k_max = models.PositiveSmallIntegerField(default=6)
    drift_share = models.FloatField(
        default=0.1,
        help_text="A re-run flags drift when a cluster's share of visitors moves more than this "
        "(0.1 = 10 points) from the run it is compared with.",
    )
    drift_centroid = models.FloatField(
        default=1.0,
        help_text="… or when a centroid moves more than this many standard deviations.",
    )
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent done.")
    message = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    rows = models.PositiveIntegerField(default=0)
    k = models.PositiveSmallIntegerField(null=True, blank=True)
    silhouette = models.FloatField(null=True, blank=True)
    silhouettes = models.JSONField(default=dict, blank=True, help_text="Silhouette score per k.")
    features = models.JSONField(default=list, blank=True)
    scaler_mean = models.JSONField(default=list, blank=True)
    scaler_scale = models.JSONField(default=list, blank=True)
    projection = models.JSONField(
        default=dict, blank=True, help_text="A sample of visitors projected on 2 PCA axes."
    )
    previous = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    drift = models.JSONField(default=dict, blank=True)
    drifted = models.BooleanField(default=False)
    stale = models.BooleanField(
        default=False, help_text="Trained on a visitor erased since: retrained by retention."
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"clustering #{self.pk} ({self.status})"


class Cluster(models.Model):
    """One cluster of a run: its centroid (standardized and in signal units) and description."""

    run = models.ForeignKey(ClusterRun, on_delete=models.CASCADE, related_name="clusters")
    index = models.PositiveSmallIntegerField()
    size = models.PositiveIntegerField()
    share = models.FloatField()
    centroid = models.JSONField(help_text="Standardized centroid, in the run's feature order.")
    means = models.JSONField(default=dict, help_text="The centroid in signal units.")
    description = models.CharField(max_length=300)
    distinct = models.JSONField(default=list, help_text="Signals that set the cluster apart.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="cluster_index")]
        ordering = ["run_id", "index"]

    def __str__(self) -> str:
        return f"#{self.run_id}/{self.index}: {self.description}"


class PropensityModel(models.Model):
    """What to predict: the chance of ``goal`` for a visitor shown each variant of ``slot``."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    key = models.SlugField(max_length=64, help_text="Conditions read model.<key>.score.")
    name = models.CharField(max_length=120, blank=True)
    slot = models.ForeignKey(Slot, on_delete=models.CASCADE, related_name="+")
    goal = models.ForeignKey(
        Goal, on_delete=models.PROTECT, related_name="+", help_text="A binary goal."
    )
    window_days = models.PositiveSmallIntegerField(
        default=30, help_text="Decisions of this many days are the training set."
    )
    min_rows = models.PositiveIntegerField(
        default=200, help_text="Fewer decisions than this: no training."
    )
    scheduled = models.BooleanField(default=True, help_text="Retrain daily.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["property", "key"], name="propensity_model_key")
        ]
        ordering = ["property_id", "key"]

    def __str__(self) -> str:
        return self.key


class VersionStatus(models.TextChoices):
    TRAINING = "training", "Training"
    PROMOTED = "promoted", "Promoted (scores decisions)"
    KEPT = "kept", "Kept, not promoted (not better than the current one)"
    RETIRED = "retired", "Retired"
    FAILED = "failed", "Failed"


class ModelVersion(models.Model):
    """One training of a propensity model: its artifact, window, rows and held-out metrics."""

    model = models.ForeignKey(PropensityModel, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    status = models.CharField(
        max_length=16, choices=VersionStatus.choices, default=VersionStatus.TRAINING
    )
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent done.")
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    rows = models.PositiveIntegerField(default=0)
    positives = models.PositiveIntegerField(default=0)
    auc = models.FloatField(null=True, blank=True, help_text="Held-out ROC AUC.")
    baseline_auc = models.FloatField(
        null=True, blank=True, help_text="The promoted version's AUC on the same held-out rows."
    )
    brier = models.FloatField(null=True, blank=True, help_text="Held-out Brier score.")
    calibration = models.JSONField(default=list, blank=True)
    importances = models.JSONField(default=list, blank=True)
    features = models.JSONField(default=list, blank=True)
    variants = models.JSONField(default=list, blank=True)
    artifact = models.BinaryField(null=True, blank=True, editable=False)
    digest = models.CharField(max_length=64, blank=True)
    stale = models.BooleanField(
        default=False, help_text="Trained on a visitor erased since: retrained by retention."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model", "version"], name="model_version_unique")
        ]
        ordering = ["model_id", "-version"]

    def __str__(self) -> str:
        return f"{self.model_id} v{self.version} ({self.status})"


class TrainingMember(models.Model):
    """A visitor a clustering run or a model version was trained on, by keyed hash: an
    erasure finds what was learned from them without a raw id outliving their data."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    visitor_key = models.CharField(max_length=64)
    cluster_run = models.ForeignKey(
        ClusterRun, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["property", "visitor_key"], name="training_member")]

    def __str__(self) -> str:
        return f"{self.visitor_key[:12]}… in {self.cluster_run_id or self.model_version_id}"


class GuardrailCheck(models.Model):
    """A rule's variant against the slot default on the rule's guardrail goal."""

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="guardrail_checks")
    checked_at = models.DateTimeField(auto_now_add=True)
    verdict = models.CharField(max_length=16, help_text="worse, better, inconclusive, too_few")
    action = models.CharField(max_length=16, blank=True, help_text="flagged or paused")
    evidence = models.JSONField(default=dict)

    class Meta:
        ordering = ["-checked_at", "-id"]

    def __str__(self) -> str:
        return f"{self.rule_id}: {self.verdict} {self.action}".strip()
