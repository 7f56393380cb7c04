from django.db import models

from .properties import Property


class Visitor(models.Model):
    """A visitor of a property, keyed by the storefront's first-party id, with live signals."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    visitor_id = models.CharField(max_length=128)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    state = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["property", "visitor_id"], name="visitor_unique_id")
        ]

    def __str__(self) -> str:
        return self.visitor_id


class Session(models.Model):
    """A server-side session: the client's session id, reopened after 30 idle minutes."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    visitor = models.ForeignKey(Visitor, on_delete=models.CASCADE, related_name="sessions")
    session_id = models.CharField(max_length=128)
    started_at = models.DateTimeField()
    last_event_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    state = models.JSONField(default=dict)

    class Meta:
        indexes = [
            models.Index(fields=["visitor", "session_id", "-started_at"], name="session_key")
        ]
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.session_id} @ {self.started_at:%Y-%m-%d %H:%M}"
