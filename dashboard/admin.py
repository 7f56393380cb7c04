"""Per-slot attribution windows: marketing sets how long after an adjustment a goal event
without a decision id still counts for it; the next rollup run recomputes the figures."""

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest

from consent.tenancy import PropertyScopedAdmin
from personalization.models import Slot

from .models import AttributionWindow

MIN_SECONDS = 60
# Each incremental run recomputes the hours this reaches back from every new event: a day
# keeps a run short on a busy property.
MAX_SECONDS = 24 * 3600
RECOMPUTE_NOTE = (
    "The dashboards recompute this property's figures with the new window at the next rollup "
    "run (every 10 minutes; a large property's full recompute takes a few minutes more). "
    "Until then they show the previous window."
)


class AttributionWindowForm(forms.ModelForm):
    seconds = forms.IntegerField(
        min_value=MIN_SECONDS,
        max_value=MAX_SECONDS,
        help_text=(
            f"Between {MIN_SECONDS} s and {MAX_SECONDS // 3600} h. Slots without a window use "
            f"{settings.DASHBOARD_ATTRIBUTION_WINDOW} s (DASHBOARD_ATTRIBUTION_WINDOW)."
        ),
    )

    class Meta:
        model = AttributionWindow
        fields = ["property", "slot_key", "seconds"]
        help_texts = {"slot_key": "The key of one of the property's slots."}

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        prop, key = data.get("property"), data.get("slot_key")
        if prop is not None and key and not Slot.objects.filter(property=prop, key=key).exists():
            keys = sorted(Slot.objects.filter(property=prop).values_list("key", flat=True))
            self.add_error(
                "slot_key",
                f"{prop} has no slot {key!r}; its slots: {', '.join(keys) or 'none yet'}.",
            )
        return data


@admin.register(AttributionWindow)
class AttributionWindowAdmin(PropertyScopedAdmin):
    form = AttributionWindowForm
    list_display = ["property", "slot_key", "seconds"]
    list_filter = ["property"]
    search_fields = ["slot_key"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["property", "slot_key"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        messages.info(request, RECOMPUTE_NOTE)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        super().delete_model(request, obj)
        messages.info(request, RECOMPUTE_NOTE)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        super().delete_queryset(request, queryset)
        messages.info(request, RECOMPUTE_NOTE)
