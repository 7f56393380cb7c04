"""Roles and per-property object permissions: the one map of who may do what (docs/CONTRACT.md)."""

from django.contrib.auth.models import AbstractBaseUser, Group
from guardian.shortcuts import assign_perm, remove_perm

from consent.tenancy import has_property_perm, properties_for

from .models import Property

MARKETING = "Marketing"
ANALYSTS = "Analysts"
PRIVACY_OFFICERS = "Privacy officers"

# What each role may do on a property it holds. Source: the role table in docs/CONTRACT.md.
ROLE_PERMISSIONS: dict[str, list[str]] = {
    MARKETING: [
        "view_property",
        "view_configuration",
        "change_configuration",
        "view_dashboards",
        "view_quarantine",
        "manage_quarantine",
        "manage_keys",
        "view_config_audit",
    ],
    ANALYSTS: [
        "view_property",
        "view_configuration",
        "view_dashboards",
        "view_quarantine",
    ],
    PRIVACY_OFFICERS: [
        "view_property",
        "view_consent_dashboard",
        "manage_privacy",
        "view_privacy_audit",
    ],
}


def role_grant(user: AbstractBaseUser, prop: Property, role: str) -> None:
    """Give a staff user a role on one property: the group, and the role's object permissions."""
    group, _ = Group.objects.get_or_create(name=role)  # created by a migration; robust to flushes
    user.groups.add(group)  # type: ignore[attr-defined]
    for codename in ROLE_PERMISSIONS[role]:
        assign_perm(f"personalization.{codename}", user, prop)


def role_revoke(user: AbstractBaseUser, prop: Property, role: str) -> None:
    for codename in ROLE_PERMISSIONS[role]:
        remove_perm(f"personalization.{codename}", user, prop)


__all__ = ["ROLE_PERMISSIONS", "has_property_perm", "properties_for", "role_grant", "role_revoke"]
