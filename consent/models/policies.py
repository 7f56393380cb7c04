import builtins
from typing import Any

from django.conf import settings
from django.db import models

from .base import AppendOnlyModel, ImmutableError


class Purpose(models.TextChoices):
    ANALYTICS = "analytics", "Analytics"
    PERSONALIZATION = "personalization", "Personalization"
    GRANULAR_TRACKING = "granular_tracking", "Granular tracking"


BUILT_IN_PURPOSES: list[dict[str, str]] = [
    {
        "key": "analytics",
        "title": "Analytics",
        "text": "We count page views, clicks and purchases to understand how the shop is used.",
    },
    {
        "key": "personalization",
        "title": "Personalization",
        "text": "We adjust headlines, offers and layout to how you browse.",
    },
    {
        "key": "granular_tracking",
        "title": "Detailed interaction tracking",
        "text": "We record scrolling and hovering to learn which parts of a page are read.",
    },
]


class ConsentPolicy(models.Model):
    """One published version of a property's consent policy. Never edited in place."""

    property = models.ForeignKey(
        "personalization.Property", on_delete=models.CASCADE, related_name="consent_policies"
    )
    version = models.PositiveIntegerField()
    purposes = models.JSONField(help_text="List of {key, title, text}.")
    jurisdictions = models.JSONField(default=list, blank=True)
    published_at = models.DateTimeField(auto_now_add=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["property", "version"], name="consent_policy_version")
        ]
        ordering = ["property_id", "-version"]
        verbose_name_plural = "consent policies"

    def __str__(self) -> str:
        # "Shop v2": what the admin's messages, log and audit entries name it by.
        name = self.property.name if self.property_id else "consent policy"
        return f"{name} v{self.version}" if self.version else f"{name} (unpublished)"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ImmutableError(
                "a published consent policy is never edited; publish a new version"
            )
        super().save(*args, **kwargs)

    @builtins.property
    def purpose_keys(self) -> list[str]:
        return [p["key"] for p in self.purposes]


class ConsentMethod(models.TextChoices):
    BANNER = "banner", "Banner"
    API = "api", "API"
    GPC = "gpc", "Global Privacy Control"
    OFFICER = "officer", "Privacy officer"


class ConsentRecord(models.Model):
    """Append-only proof of one consent change. Keeps the keyed hash, never the raw id."""

    property = models.ForeignKey(
        "personalization.Property", on_delete=models.CASCADE, related_name="consent_records"
    )
    visitor_key = models.CharField(max_length=64)
    policy = models.ForeignKey(ConsentPolicy, on_delete=models.PROTECT, related_name="records")
    granted = models.JSONField(default=list)
    refused = models.JSONField(default=list)
    method = models.CharField(max_length=16, choices=ConsentMethod.choices)
    network = models.CharField(max_length=64, blank=True, help_text="Truncated network address.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["property", "visitor_key", "-id"], name="consent_latest")]
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.method} {self.visitor_key[:10]}… v{self.policy_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ImmutableError("consent records are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ImmutableError("consent records are append-only")


class GpcEvidence(AppendOnlyModel):
    """One application of the Sec-GPC signal: who (keyed hash), where, when.

    The opt-out itself is a consent record, written once per visitor and policy
    version; this is the evidence that every later request carrying the signal
    was honoured too. Written in one bulk insert per request.
    """

    immutable_message = "GPC evidence is append-only"

    property = models.ForeignKey(
        "personalization.Property", on_delete=models.CASCADE, related_name="+"
    )
    visitor_key = models.CharField(max_length=64)
    endpoint = models.CharField(max_length=200, blank=True)
    at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["property", "visitor_key"], name="gpc_evidence_visitor"),
            models.Index(fields=["property", "at"], name="gpc_evidence_time"),
        ]
        ordering = ["-at"]
        verbose_name_plural = "GPC evidence"

    def __str__(self) -> str:
        return f"GPC {self.visitor_key[:10]}… {self.endpoint}"


class SuppressionReason(models.TextChoices):
    ERASURE = "erasure", "Erased"
    OPT_OUT = "opt_out", "Opted out"


class Suppression(models.Model):
    """A visitor (keyed hash) whose later events are dropped and who is never trained on.

    Consent selectors treat a suppressed visitor as granting nothing, so ingestion
    and decisions honour the list without knowing it exists.
    """

    property = models.ForeignKey(
        "personalization.Property", on_delete=models.CASCADE, related_name="+"
    )
    visitor_key = models.CharField(max_length=64)
    reason = models.CharField(max_length=16, choices=SuppressionReason.choices)
    exclude_from_training = models.BooleanField(default=True)
    request = models.ForeignKey(
        "consent.PrivacyRequest",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["property", "visitor_key"], name="suppression_key")
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_reason_display()} {self.visitor_key[:10]}…"
