import builtins

from django.conf import settings
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase


def _default_origins() -> list[str]:
    return []


class Property(models.Model):
    """One storefront. Everything staff author belongs to exactly one property."""

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60, unique=True)
    allowed_origins = models.JSONField(
        default=_default_origins,
        blank=True,
        help_text="Origins (scheme://host[:port]) a publishable key may be used from.",
    )
    timezone = models.CharField(max_length=64, default="UTC")
    retention_days = models.PositiveIntegerField(
        default=395, help_text="Raw events older than this are refused and purged."
    )
    # Guard rails against over-adjusting (decision engine).
    max_adjustments_per_session = models.PositiveIntegerField(
        default=5, help_text="At most this many adjustments per session (0: no limit)."
    )
    session_stickiness = models.BooleanField(
        default=True,
        help_text="Once a slot shows a variant in a session it keeps it, unless a "
        "higher-priority rule with stickiness override applies.",
    )
    holdout_pct = models.FloatField(
        default=5.0,
        help_text="Percent of visitors never personalized, to measure the total effect.",
    )
    # Bumped on every configuration change; compiled rule sets are cached per version.
    config_version = models.PositiveIntegerField(default=1, editable=False)
    # Part of the key of the decision engine's consent copies in Redis: bumped when a
    # consent change could not drop a copy there, which orphans every copy at once.
    hot_epoch = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "properties"
        ordering = ["name"]
        permissions = [
            ("view_configuration", "Read slots, segments, rules, experiments, surveys"),
            ("change_configuration", "Create, change, pause and promote configuration"),
            ("view_dashboards", "Read dashboards, experiment results, CSV exports"),
            ("view_consent_dashboard", "Read the consent dashboard"),
            ("view_quarantine", "Read quarantined events and event schemas"),
            ("manage_quarantine", "Replay quarantined events and edit event schemas"),
            ("manage_privacy", "Consent policies, histories, data-subject requests, exports"),
            ("manage_keys", "Issue and revoke API keys"),
            ("view_config_audit", "Read the configuration audit log"),
            ("view_privacy_audit", "Read the privacy audit log"),
        ]

    def __str__(self) -> str:
        return self.name

    def origin_allowed(self, origin: str) -> bool:
        return origin.rstrip("/") in {o.rstrip("/") for o in self.allowed_origins}


class PropertyUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Property, on_delete=models.CASCADE)


class PropertyGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Property, on_delete=models.CASCADE)


class ApiKeyKind(models.TextChoices):
    PUBLISHABLE = "publishable", "Publishable (pk_)"
    SECRET = "secret", "Secret (sk_)"


class ApiKey(models.Model):
    """An API key of a property. Only its SHA-256 is stored; the key is shown once."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="api_keys")
    kind = models.CharField(max_length=16, choices=ApiKeyKind.choices)
    name = models.CharField(max_length=120, blank=True)
    prefix = models.CharField(max_length=16, help_text="The first characters, to recognise it.")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.get_kind_display()})"

    @builtins.property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @builtins.property
    def is_secret(self) -> bool:
        return self.kind == ApiKeyKind.SECRET
