"""Data-subject requests, their erasure steps and access exports."""

import builtins
import uuid

from django.conf import settings
from django.db import models


class RequestKind(models.TextChoices):
    ACCESS = "access", "Access"
    ERASURE = "erasure", "Erasure"
    OPT_OUT = "opt_out", "Opt-out"


class Regulation(models.TextChoices):
    GDPR = "gdpr", "GDPR"
    CCPA = "ccpa", "CCPA"


class RequestStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    IDENTITY_VERIFIED = "identity_verified", "Identity verified"
    IN_PROGRESS = "in_progress", "In progress"
    EXTENDED = "extended", "Extended"
    COMPLETED = "completed", "Completed"
    DENIED = "denied", "Denied"


CLOSED_STATUSES = (RequestStatus.COMPLETED, RequestStatus.DENIED)


class RequestSource(models.TextChoices):
    API = "api", "Storefront API"
    OFFICER = "officer", "Entered by an officer"


class PrivacyRequest(models.Model):
    """A data-subject request and its deadline.

    The raw visitor id is held only while the request is open (the work needs it
    to find the visitor's rows); closing the request clears it, and the keyed hash
    is what stays (docs/CONTRACT.md, identifiers that must outlive an erasure).
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    property = models.ForeignKey(
        "personalization.Property", on_delete=models.CASCADE, related_name="privacy_requests"
    )
    kind = models.CharField(max_length=16, choices=RequestKind.choices)
    regulation = models.CharField(max_length=8, choices=Regulation.choices)
    visitor_key = models.CharField(max_length=64)
    visitor_id = models.CharField(
        max_length=128, blank=True, help_text="Held while the request is open, then cleared."
    )
    contact = models.CharField(max_length=254, blank=True)
    source = models.CharField(max_length=16, choices=RequestSource.choices)
    status = models.CharField(
        max_length=24, choices=RequestStatus.choices, default=RequestStatus.RECEIVED
    )
    received_at = models.DateTimeField()
    due_date = models.DateField()
    extended_at = models.DateTimeField(null=True, blank=True)
    extension_reason = models.TextField(blank=True)
    identity_verified_at = models.DateTimeField(null=True, blank=True)
    denial_reason = models.TextField(blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="privacy_requests",
    )
    note = models.TextField(blank=True)
    receipt = models.JSONField(null=True, blank=True, help_text="The erasure receipt.")

    class Meta:
        indexes = [
            models.Index(
                fields=["property", "visitor_key", "kind"], name="privacy_request_visitor"
            ),
            models.Index(fields=["status", "due_date"], name="privacy_request_queue"),
        ]
        ordering = ["due_date", "id"]

    def __str__(self) -> str:
        # Never the visitor id: this string lands in the admin's log entries.
        return f"{self.get_kind_display()} request #{self.pk}"

    @builtins.property
    def is_open(self) -> bool:
        return self.status not in CLOSED_STATUSES


class StepStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Done"


class ErasureStep(models.Model):
    """One store's part of an erasure. Steps are idempotent and resumable, one by one."""

    request = models.ForeignKey(PrivacyRequest, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveIntegerField()
    store = models.CharField(max_length=100)
    action = models.CharField(max_length=24, blank=True)
    status = models.CharField(max_length=16, choices=StepStatus.choices, default="pending")
    removed = models.JSONField(default=dict, help_text="Rows per model, counted as removed.")
    kept = models.PositiveIntegerField(default=0)
    extra = models.PositiveIntegerField(default=0, help_text="Cache keys and files removed.")
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["request", "store"], name="erasure_step_store")
        ]
        ordering = ["request_id", "position"]

    def __str__(self) -> str:
        return f"{self.store}: {self.status}"


class ExportStatus(models.TextChoices):
    PENDING = "pending", "Queued"
    RUNNING = "running", "Running"
    READY = "ready", "Ready to download"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "Expired (file removed)"
    ERASED = "erased", "Removed by an erasure"


class AccessExport(models.Model):
    """The archive an access request produces, under MEDIA_ROOT, with its visible progress."""

    request = models.OneToOneField(PrivacyRequest, on_delete=models.CASCADE, related_name="export")
    token = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    status = models.CharField(
        max_length=16, choices=ExportStatus.choices, default=ExportStatus.PENDING
    )
    stores_done = models.PositiveIntegerField(default=0)
    stores_total = models.PositiveIntegerField(default=0)
    file = models.CharField(max_length=300, blank=True, help_text="Path under MEDIA_ROOT.")
    size = models.PositiveBigIntegerField(default=0)
    rows = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "expires_at"], name="access_export_expiry")]

    def __str__(self) -> str:
        return f"export of request #{self.request_id}: {self.status}"

    @builtins.property
    def progress(self) -> str:
        return f"{self.stores_done}/{self.stores_total}"
