import builtins

from django.db import models

from .properties import Property


class EventPurpose(models.TextChoices):
    ANALYTICS = "analytics", "Analytics"
    GRANULAR_TRACKING = "granular_tracking", "Granular tracking"
    PERSONALIZATION = "personalization", "Personalization"


class EventType(models.Model):
    """A custom event type of a property, with the JSON Schema of its ``properties``."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="event_types")
    name = models.SlugField(max_length=64)
    description = models.TextField(blank=True)
    purpose = models.CharField(
        max_length=32, choices=EventPurpose.choices, default=EventPurpose.ANALYTICS
    )
    schema = models.JSONField(help_text="JSON Schema (draft 7) of the event's properties object.")
    version = models.PositiveIntegerField(default=1, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["property", "name"], name="event_type_name")]
        ordering = ["property_id", "name"]

    def __str__(self) -> str:
        return self.name


class Event(models.Model):
    """A stored behaviour event. ``(property, event_id)`` is unique: retries are duplicates."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    event_id = models.UUIDField()
    type = models.CharField(max_length=64)
    visitor_id = models.CharField(max_length=128)
    session_id = models.CharField(max_length=128)
    timestamp = models.DateTimeField()
    received_at = models.DateTimeField()
    decision_id = models.UUIDField(null=True, blank=True)
    properties = models.JSONField(default=dict)
    context = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["property", "event_id"], name="event_unique_id")
        ]
        indexes = [
            models.Index(fields=["property", "visitor_id"], name="event_visitor"),
            models.Index(fields=["property", "timestamp"], name="event_time"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class QuarantineStatus(models.TextChoices):
    QUARANTINED = "quarantined", "Quarantined"
    REPLAYED = "replayed", "Replayed (stored)"


class QuarantinedEvent(models.Model):
    """An event that failed validation, kept whole with its errors until replayed."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    event_id = models.UUIDField(null=True, blank=True)
    event_type = models.CharField(max_length=64, blank=True)
    visitor_id = models.CharField(max_length=128, blank=True)
    payload = models.JSONField()
    errors = models.JSONField(default=list)
    status = models.CharField(
        max_length=16, choices=QuarantineStatus.choices, default=QuarantineStatus.QUARANTINED
    )
    received_at = models.DateTimeField()
    replayed_at = models.DateTimeField(null=True, blank=True)
    replay_attempts = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["property", "event_id"], name="quarantine_unique_id")
        ]
        indexes = [
            models.Index(fields=["property", "status", "event_type"], name="quarantine_list")
        ]
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.event_type or '?'} {self.event_id or ''}"

    @builtins.property
    def first_error(self) -> str:
        if not self.errors:
            return ""
        error = self.errors[0]
        return f"{error.get('path', '')}: {error.get('message', '')}"


class Fate(models.TextChoices):
    ACCEPTED = "accepted", "Stored"
    DUPLICATE = "duplicate", "Duplicate"
    QUARANTINED = "quarantined", "Quarantined"
    DROPPED_NO_CONSENT = "dropped_no_consent", "Dropped (no consent)"


class IngestStat(models.Model):
    """Hourly count of event fates per property and type: the data-quality rollup."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    event_type = models.CharField(max_length=64)
    hour = models.DateTimeField()
    fate = models.CharField(max_length=24, choices=Fate.choices)
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["property", "event_type", "hour", "fate"], name="ingest_stat_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.fate} @ {self.hour:%Y-%m-%d %H:00}: {self.count}"
