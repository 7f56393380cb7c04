"""What the admins of personalization share: inlines scoped by the parent's property and
the one read-only mixin (``consent.tenancy.ReadOnlyMixin``, shared by every app)."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from consent.tenancy import ReadOnlyMixin, has_property_perm, properties_for


class ScopedInline(admin.TabularInline):
    """An inline allowed by the parent's property permissions, not by global model ones."""

    view_perm = "view_configuration"
    change_perm = "change_configuration"

    def _holds(self, request: HttpRequest, obj: Any, perm: str) -> bool:
        if obj is None or obj.pk is None:
            return properties_for(request.user, perm).exists()
        return has_property_perm(request.user, perm, obj.property_id)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._holds(request, obj, self.view_perm)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._holds(request, obj, self.change_perm)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._holds(request, obj, self.change_perm)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._holds(request, obj, self.change_perm)


class ReadOnlyInline(ReadOnlyMixin, ScopedInline):
    """History and evidence shown under their parent: nothing added, edited or deleted."""

    extra = 0
    can_delete = False


__all__ = ["ReadOnlyInline", "ReadOnlyMixin", "ScopedInline"]
