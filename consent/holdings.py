"""Which properties a staff user holds: the permission helpers every app shares.

Below the consent services and selectors (which ask who holds what); the admin base scoped
by it (``consent.tenancy.PropertyScopedAdmin``) sits above them and writes the audit log.
It reaches the Property model through the app registry: consent imports no other app.
"""

from typing import Any

from django.apps import apps
from django.db.models import Model, QuerySet
from guardian.shortcuts import get_objects_for_user


def property_model() -> type[Model]:
    return apps.get_model("personalization", "Property")


def properties_for(user: Any, codename: str = "view_property") -> QuerySet:
    """The properties on which ``user`` holds ``codename``; superusers hold all.

    The ids are worked out once per user object and codename (a request's user lives for
    that request): an admin page asks this once per registered model, and guardian's query
    behind it is the costly part. ``forget_properties(user)`` drops what was worked out."""
    model = property_model()
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return model._default_manager.none()
    if getattr(user, "is_superuser", False):
        return model._default_manager.all()
    memo: dict[str, list[int]] = user.__dict__.setdefault("_properties_for", {})
    if codename not in memo:
        memo[codename] = list(
            get_objects_for_user(
                user,
                f"personalization.{codename}",
                klass=model,
                use_groups=True,
                with_superuser=True,
                accept_global_perms=False,
            ).values_list("pk", flat=True)
        )
    return model._default_manager.filter(pk__in=memo[codename])


def forget_properties(user: Any) -> None:
    """After a change of ``user``'s permissions, within the same request or test."""
    user.__dict__.pop("_properties_for", None)


def has_property_perm(user: Any, codename: str, property_id: int | None) -> bool:
    if property_id is None:
        return False
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return False
    if getattr(user, "is_superuser", False):
        return property_model()._default_manager.filter(pk=property_id).exists()
    properties_for(user, codename)  # fills the memo
    return property_id in user.__dict__["_properties_for"][codename]
