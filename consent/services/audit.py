"""Audit entries, written in the same transaction as the action they record."""

from typing import Any

from ..models import AuditEntry, AuditKind

SYSTEM = "system"


def actor_label(user: Any) -> str:
    if user is None or not getattr(user, "pk", None):
        return SYSTEM
    return str(user.get_username())


def audit_record(
    *,
    action: str,
    property_id: int | None,
    target: str = "",
    details: dict[str, Any] | None = None,
    user: Any = None,
    label: str | None = None,
    kind: str = AuditKind.PRIVACY,
) -> AuditEntry:
    """Record who did what, when, on what. ``details`` must hold no raw visitor id."""
    return AuditEntry.objects.create(
        kind=kind,
        actor=user if getattr(user, "pk", None) else None,
        actor_label=label or actor_label(user),
        action=action,
        property_id=property_id,
        target=target,
        details=details or {},
    )
