"""Retention periods per property, and what each purge removed."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

DAYS = [MinValueValidator(1), MaxValueValidator(3650)]


class RetentionPolicy(models.Model):
    """How long each kind of visitor data is kept on one property.

    Each registered store names the kind its retention follows (``VisitorStore.retention``).
    A property without a row keeps the defaults (``consent.selectors.retention_periods``).
    """

    property = models.OneToOneField(
        "personalization.Property", on_delete=models.CASCADE, related_name="retention_policy"
    )
    raw_events_days = models.PositiveIntegerField(
        validators=DAYS, help_text="Events, visitors and sessions, GPC evidence."
    )
    quarantine_days = models.PositiveIntegerField(
        validators=DAYS, help_text="Events that failed validation."
    )
    adjustment_log_days = models.PositiveIntegerField(
        validators=DAYS, help_text="Decisions, adjustments, counters and session budgets."
    )
    survey_answers_days = models.PositiveIntegerField(validators=DAYS, help_text="Survey answers.")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name_plural = "retention policies"

    def __str__(self) -> str:
        return f"retention of property {self.property_id}"


class RetentionRun(models.Model):
    """One purge of one property: the cut-off per kind and the rows removed per store."""

    property = models.ForeignKey(
        "personalization.Property", on_delete=models.CASCADE, related_name="+"
    )
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    cutoffs = models.JSONField(default=dict)
    removed = models.JSONField(default=dict)
    total = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"purge of property {self.property_id} at {self.started_at:%Y-%m-%d %H:%M}"
