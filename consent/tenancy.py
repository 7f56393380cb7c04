"""Tenancy: the admin base scoped by the properties a staff user holds (the helpers that
answer who holds what live in ``consent.holdings`` and are re-exported here).

Shared by every app. It lives in the consent app, the lowest layer (it imports no
other project app), and reaches the Property model through the app registry.
"""

from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from .holdings import (  # the admins of every app import these from here too
    has_property_perm,
    properties_for,
)
from .services.audit import audit_record


class ReadOnlyMixin:
    """Evidence and logs: nobody adds, edits or deletes them from the UI. The one read-only
    mixin of every app's admins and inlines (put it before the admin base)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PropertyScopedAdmin(admin.ModelAdmin):
    """Lists and edits only the rows of properties the user holds the right permission on.

    Every raw add, change and delete made here is also a configuration entry of the audit
    log (who, what, when, on which property), in the same transaction as the change;
    marketing reads them (docs/CONTRACT.md, "audit log"). An action (pause a rule, start
    an experiment, …) is audited by the service it calls, in that service's transaction:
    the admin action writes no entry of its own. Privacy admins set ``audit_kind = None``:
    their services write privacy entries."""

    view_perm = "view_configuration"
    change_perm = "change_configuration"
    property_lookup = "property"
    read_only = False
    audit_kind: str | None = "configuration"

    def audit(
        self, request: HttpRequest, obj: Any, verb: str, details: dict[str, Any] | None = None
    ) -> None:
        meta = obj._meta
        self.audit_on(
            request,
            self._property_id(obj),
            f"{meta.model_name}.{verb}",
            f"{meta.label_lower}:{obj.pk}",
            {"object": str(obj)[:200], **(details or {})},
        )

    def audit_on(
        self,
        request: HttpRequest,
        property_id: int | None,
        action: str,
        target: str,
        details: dict[str, Any],
    ) -> None:
        """An entry not about one object (an action on many rows, say)."""
        if self.audit_kind is None:
            return
        audit_record(
            action=action,
            property_id=property_id,
            target=target,
            details=details,
            user=request.user,
            kind=self.audit_kind,
        )

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        entry = super().log_addition(request, obj, message)
        self.audit(request, obj, "added")
        return entry

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        entry = super().log_change(request, obj, message)
        self.audit(request, obj, "changed", {"changes": message} if message else None)
        return entry

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        with transaction.atomic():
            self.audit(request, obj, "deleted")
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        # "Delete selected" runs outside a transaction: entries and rows go together.
        with transaction.atomic():
            for obj in queryset:
                self.audit(request, obj, "deleted")
            super().delete_queryset(request, queryset)

    def _property_id(self, obj: Any) -> int | None:
        target = obj
        for part in self.property_lookup.split("__"):
            target = getattr(target, part, None)
        return getattr(target, "pk", None)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        qs = super().get_queryset(request)
        if getattr(request.user, "is_superuser", False):
            return qs
        allowed = properties_for(request.user, self.view_perm)
        return qs.filter(**{f"{self.property_lookup}__in": allowed})

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_staff) and properties_for(request.user, self.view_perm).exists()

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if not request.user.is_staff:
            return False
        if obj is None:
            return properties_for(request.user, self.view_perm).exists()
        return has_property_perm(request.user, self.view_perm, self._property_id(obj))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if self.read_only or not request.user.is_staff:
            return False
        if obj is None:
            return properties_for(request.user, self.change_perm).exists()
        return has_property_perm(request.user, self.change_perm, self._property_id(obj))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_change_permission(request, obj)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "property":
            kwargs["queryset"] = properties_for(request.user, self.change_perm)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
