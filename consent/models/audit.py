"""The audit log: who did what, when, on what. Written with the action, never edited."""

from django.conf import settings
from django.db import models

from .base import AppendOnlyModel


class AuditKind(models.TextChoices):
    PRIVACY = "privacy", "Privacy"
    CONFIGURATION = "configuration", "Configuration"


class AuditEntry(AppendOnlyModel):
    immutable_message = "the audit log is append-only"

    kind = models.CharField(max_length=16, choices=AuditKind.choices)
    at = models.DateTimeField(auto_now_add=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kept beside the foreign key so the entry still names its actor if the user is deleted.
    actor_label = models.CharField(max_length=150)
    action = models.CharField(max_length=64)
    property = models.ForeignKey(
        "personalization.Property",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    target = models.CharField(max_length=100, blank=True, help_text="e.g. privacy_request:12")
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["kind", "property", "-at"], name="audit_list"),
            models.Index(fields=["target"], name="audit_target"),
        ]
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.target}"
