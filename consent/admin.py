import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils.html import format_html

from .exceptions import DomainError
from .models import ConsentPolicy, ConsentRecord
from .services import policy_publish, purposes_validate
from .tenancy import PropertyScopedAdmin


class ConsentPolicyForm(forms.ModelForm):
    class Meta:
        model = ConsentPolicy
        fields = ["property", "purposes", "jurisdictions"]

    def clean_purposes(self) -> Any:
        try:
            return purposes_validate(self.cleaned_data["purposes"])
        except DomainError as exc:
            raise forms.ValidationError(exc.message) from exc

    def clean_jurisdictions(self) -> Any:
        value = self.cleaned_data["jurisdictions"] or []
        if not isinstance(value, list) or not all(isinstance(j, str) for j in value):
            raise forms.ValidationError('A JSON list of jurisdiction codes, e.g. ["EU", "US-CA"].')
        return value


@admin.register(ConsentPolicy)
class ConsentPolicyAdmin(PropertyScopedAdmin):
    """Publishing saves a new version; existing versions are shown read-only."""

    form = ConsentPolicyForm
    view_perm = "manage_privacy"
    change_perm = "manage_privacy"
    list_display = ["property", "version", "purpose_list", "published_at", "published_by"]

    @admin.display(description="purposes")
    def purpose_list(self, obj: ConsentPolicy) -> str:
        return ", ".join(obj.purpose_keys)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return []
        return [
            "property",
            "version",
            "purposes_pretty",
            "jurisdictions",
            "published_at",
            "published_by",
        ]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_readonly_fields(request, obj) or ["property", "purposes", "jurisdictions"]

    @admin.display(description="purposes")
    def purposes_pretty(self, obj: ConsentPolicy) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.purposes, indent=2))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        try:
            policy = policy_publish(
                property_id=form.cleaned_data["property"].pk,
                purposes=form.cleaned_data["purposes"],
                jurisdictions=form.cleaned_data["jurisdictions"],
                user=request.user,
            )
        except DomainError as exc:
            messages.error(request, exc.message)
            return
        obj.pk = policy.pk
        messages.success(request, f"Published version {policy.version}.")


@admin.register(ConsentRecord)
class ConsentRecordAdmin(PropertyScopedAdmin):
    view_perm = "manage_privacy"
    change_perm = "manage_privacy"
    list_display = ["created_at", "property", "visitor_key", "method", "granted", "refused"]
    list_filter = ["method"]
    search_fields = ["=visitor_key"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
