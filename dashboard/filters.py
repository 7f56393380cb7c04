"""The dashboards' filters: one GET form, kept in the URL query string.

Every page reads the same form (property, date range, slot, segment, device type); a page
that a filter does not apply to says so next to it. Only properties the user may view
dashboards of can be chosen: any other id is a validation error (a 400), never a leak.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.db.models import QuerySet
from django.utils import timezone

from personalization.models import Property, Segment, Slot

from .selectors import DashboardFilters

DEFAULT_DAYS = 63  # nine whole weeks: enough for a retention heatmap with real cohorts
MAX_DAYS = 800
DEVICE_TYPES = [
    ("desktop", "Desktop"),
    ("mobile", "Mobile"),
    ("tablet", "Tablet"),
    ("bot", "Bot"),
    ("unknown", "Unknown"),
]
FILTER_FIELDS = ("property", "start", "end", "slot", "segment", "device")


@dataclass(frozen=True)
class Filters:
    """The cleaned filters a page's selectors read."""

    prop: Property
    start: date
    end: date  # inclusive
    slot: str = ""
    segment: str = ""
    device: str = ""

    @property
    def since(self) -> datetime:
        return datetime.combine(self.start, time.min, tzinfo=UTC)

    @property
    def until(self) -> datetime:
        """Exclusive upper bound: midnight after ``end``."""
        return datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=UTC)

    @property
    def properties(self) -> QuerySet[Property]:
        """The chosen property as the queryset ``dashboard.selectors`` take."""
        return Property.objects.filter(pk=self.prop.pk)

    def rollup(self) -> DashboardFilters:
        """These filters as ``dashboard.selectors`` read them."""
        return DashboardFilters(
            start=self.start,
            end=self.end,
            slot=self.slot,
            device_type=self.device,
            segment=self.segment,
        )

    def query(self, **extra: str) -> str:
        """The query string of these filters (plus ``extra``), for links and CSV downloads."""
        params = {
            "property": self.prop.slug,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "slot": self.slot,
            "segment": self.segment,
            "device": self.device,
            **extra,
        }
        return urlencode({k: v for k, v in params.items() if v})


class DashboardFilterForm(forms.Form):
    property = forms.ModelChoiceField(
        queryset=Property.objects.none(), required=False, empty_label=None, to_field_name="slug"
    )
    start = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    end = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )
    slot = forms.ChoiceField(required=False, choices=[("", "All slots")])
    segment = forms.ChoiceField(required=False, choices=[("", "All visitors")])
    device = forms.ChoiceField(
        required=False, label="Device type", choices=[("", "All devices"), *DEVICE_TYPES]
    )

    def __init__(self, data: Any, *, properties: QuerySet[Property]) -> None:
        # Only the filter keys: ``format`` and ``chart`` (CSV) are the view's business.
        given = {k: data[k] for k in FILTER_FIELDS if k in data and data[k] != ""}
        super().__init__(self._with_default_dates(given))
        self.fields["property"].queryset = properties.order_by("name", "pk")  # type: ignore[attr-defined]
        prop = self._chosen_property(properties)
        if prop is not None:
            slots = Slot.objects.filter(property=prop).order_by("key").values_list("key", "name")
            segments = Segment.objects.filter(property=prop).order_by("key")
            self.fields["slot"].choices = [  # type: ignore[attr-defined]
                ("", "All slots"),
                *((key, name or key) for key, name in slots),
            ]
            self.fields["segment"].choices = [  # type: ignore[attr-defined]
                ("", "All visitors"),
                *((s.key, s.name or s.key) for s in segments.only("key", "name")),
            ]

    @staticmethod
    def _with_default_dates(given: dict[str, Any]) -> dict[str, Any]:
        """Fill in the default range, so the form shows the dates the page uses."""
        today = timezone.now().date()
        given.setdefault("end", today.isoformat())
        if "start" not in given:
            try:
                end = date.fromisoformat(str(given["end"]))
            except ValueError:
                end = today  # the form reports the bad end date
            given["start"] = (end - timedelta(days=DEFAULT_DAYS - 1)).isoformat()
        return given

    def _chosen_property(self, properties: QuerySet[Property]) -> Property | None:
        raw = self.data.get("property") if self.is_bound else None
        if raw:
            return properties.filter(slug=raw).first()
        return properties.order_by("name", "pk").first()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("property"):
            chosen = self.fields["property"].queryset.first()  # type: ignore[attr-defined]
            if chosen is None:
                raise forms.ValidationError("You hold no property with dashboards.")
            data["property"] = chosen
        today = timezone.now().date()
        end = data.get("end") or today
        start = data.get("start") or end - timedelta(days=DEFAULT_DAYS - 1)
        if start > end:
            raise forms.ValidationError("The start date is after the end date.")
        if (end - start).days >= MAX_DAYS:
            raise forms.ValidationError(f"Choose a range of at most {MAX_DAYS} days.")
        data["start"], data["end"] = start, end
        return data

    def filters(self) -> Filters:
        """The cleaned filters; call after ``is_valid()``."""
        d = self.cleaned_data
        return Filters(
            prop=d["property"],
            start=d["start"],
            end=d["end"],
            slot=d.get("slot") or "",
            segment=d.get("segment") or "",
            device=d.get("device") or "",
        )
