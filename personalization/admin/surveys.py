"""Admin for feedback surveys: a survey with its questions inline, choices checked against
each question's type, and where (which slot variants) the survey is shown."""

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.utils.html import format_html_join

from consent.tenancy import PropertyScopedAdmin

from ..models import Survey, SurveyQuestion, SurveyResponse, Variant
from ..models.surveys import question_choices_problem
from .mixins import ScopedInline


class ChoicesField(forms.CharField):
    """One choice per line (a JSON list is accepted too); blank lines are ignored."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 30})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault(
            "help_text", "Single and multiple choice only: one choice per line, each distinct."
        )
        super().__init__(*args, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return "\n".join(str(v) for v in value)
        return value

    def to_python(self, value: Any) -> list[Any]:  # type: ignore[override]
        text = super().to_python(value) or ""
        if text.lstrip().startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError as exc:
                raise forms.ValidationError("Enter one choice per line, or a JSON list.") from exc
            if isinstance(parsed, list):
                return parsed
        return [line.strip() for line in text.splitlines() if line.strip()]


class SurveyQuestionForm(forms.ModelForm):
    choices = ChoicesField()

    class Meta:
        model = SurveyQuestion
        fields = ["order", "key", "type", "text", "choices", "required"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("type")
        if kind:
            problem = question_choices_problem(kind, data.get("choices") or [])
            if problem:
                self.add_error("choices", problem)
        return data


class SurveyQuestionFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        kept = [
            form
            for form in self.forms
            if getattr(form, "cleaned_data", None) and not form.cleaned_data.get("DELETE")
        ]
        active = getattr(self.instance, "active", False)
        if active and not kept:
            raise forms.ValidationError("An active survey needs at least one question.")


class SurveyQuestionInline(ScopedInline):
    model = SurveyQuestion
    form = SurveyQuestionForm
    formset = SurveyQuestionFormSet
    extra = 1
    ordering = ["order", "id"]


class SurveyForm(forms.ModelForm):
    class Meta:
        model = Survey
        fields = ["property", "key", "title", "active"]


def _count_of(model: Any, field: str) -> Subquery:
    rows = (
        model.objects.filter(**{field: OuterRef("pk")})
        .order_by()
        .values(field)
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Subquery(rows, output_field=IntegerField())


@admin.register(Survey)
class SurveyAdmin(PropertyScopedAdmin):
    form = SurveyForm
    inlines = [SurveyQuestionInline]
    list_display = ["key", "title", "property", "active", "question_count", "response_count"]
    list_filter = ["active"]
    search_fields = ["key", "title"]
    readonly_fields = ["shown_in", "response_count"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .select_related("property")
            .annotate(
                n_questions=_count_of(SurveyQuestion, "survey"),
                n_responses=_count_of(SurveyResponse, "survey"),
            )
        )

    @admin.display(description="questions")
    def question_count(self, obj: Survey) -> int:
        return getattr(obj, "n_questions", None) or 0

    @admin.display(description="responses")
    def response_count(self, obj: Survey) -> int:
        return getattr(obj, "n_responses", None) or 0

    @admin.display(description="shown through")
    def shown_in(self, obj: Survey) -> str:
        if obj.pk is None:
            return "—"
        variants = Variant.objects.filter(
            slot__property_id=obj.property_id, content__survey=obj.key
        ).select_related("slot")
        if not variants:
            return (
                f'No slot shows it yet: give a slot a variant with content {{"survey": '
                f'"{obj.key}"}} and a rule that serves it.'
            )
        return format_html_join(", ", "<code>{}</code>", ((str(v),) for v in variants))
