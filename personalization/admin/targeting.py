"""Admin for slots, variants, segments and rules: the condition builder, rule history,
restore, "test against a visitor" and "replay the last 7 days"."""

import json
from datetime import timedelta
from typing import Any

import fastjsonschema
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from consent.tenancy import PropertyScopedAdmin, has_property_perm, properties_for

from .. import event_schemas, visitor_state
from ..attributes import CATALOGUE, condition_problems
from ..conditions import compile_condition, condition_clauses
from ..decisions import DecideRequest, decide
from ..exceptions import ApplicationError
from ..learning.scoring import model_key_problems
from ..models import (
    Rule,
    RuleFires,
    RuleVersion,
    Segment,
    SegmentMember,
    Slot,
    Variant,
    Visitor,
)
from ..selectors import live_firings
from ..services.replay import rule_replay
from ..services.rules import VERSIONED_FIELDS, rule_restore, rule_save, rule_status_set
from .mixins import ReadOnlyInline, ScopedInline

SEGMENT_SAMPLE = 5000


def builder_attributes() -> list[dict[str, str]]:
    """What the condition builder offers (any attribute name may still be typed): every name
    of the attribute catalogue, with its type, unit and meaning."""
    return CATALOGUE.builder_entries()


class ConditionWidget(forms.Textarea):
    template_name = "personalization/widgets/condition.html"

    class Media:
        js = ["personalization/condition-builder.js"]
        css = {"all": ["personalization/condition-builder.css"]}

    def __init__(self, attrs: dict | None = None) -> None:
        super().__init__(attrs={"rows": 8, "cols": 80, "class": "vLargeTextField", **(attrs or {})})

    def get_context(self, name: str, value: Any, attrs: dict | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        context["builder_attributes"] = builder_attributes()
        return context

    def format_value(self, value: Any) -> str:
        if value in (None, "", "null"):
            return "{}"
        if isinstance(value, str):
            return value
        return json.dumps(value, indent=2)


class ConditionField(forms.JSONField):
    widget = ConditionWidget

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(*args, **kwargs)

    def clean(self, value: Any) -> Any:
        condition = super().clean(value) or {}
        problems = condition_problems(condition)
        if problems:
            raise forms.ValidationError(problems)
        return condition


def refuse_unknown_models(form: forms.ModelForm, prop: Any, condition: Any) -> None:
    """A condition reading model.<key> of a model the property does not have is refused."""
    if prop is None or not condition:
        return
    for problem in model_key_problems(prop.pk, condition):
        form.add_error("condition", problem)


class VariantForm(forms.ModelForm):
    class Meta:
        model = Variant
        fields = ["key", "content", "strategy", "strategy_limit"]


class VariantFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        schema = self.instance.content_schema if self.instance else None
        keys = set()
        validator = fastjsonschema.compile(schema) if schema else None
        for form in self.forms:
            if not getattr(form, "cleaned_data", None) or form.cleaned_data.get("DELETE"):
                continue
            keys.add(form.cleaned_data.get("key"))
            if validator is not None:
                try:
                    validator(form.cleaned_data.get("content") or {})
                except fastjsonschema.JsonSchemaValueException as exc:
                    error = event_schemas.describe_error(exc, "content")
                    form.add_error("content", f"{error['path']}: {error['message']}")
        default = self.instance.default_variant if self.instance else None
        if default and keys and default not in keys and not self.instance.pk:
            raise forms.ValidationError(
                f"Add a variant named {default!r}: it is the slot's default."
            )


class VariantInline(ScopedInline):
    model = Variant
    formset = VariantFormSet
    form = VariantForm
    extra = 1


class SlotForm(forms.ModelForm):
    class Meta:
        model = Slot
        fields = [
            "property",
            "key",
            "name",
            "description",
            "default_variant",
            "content_schema",
            "serve_model",
            "flag_value_field",
        ]

    def clean_serve_model(self) -> Any:
        model = self.cleaned_data.get("serve_model")
        if model is not None and self.instance.pk and model.slot_id != self.instance.pk:
            raise forms.ValidationError(f"The model {model.key!r} predicts another slot.")
        return model

    def clean_content_schema(self) -> Any:
        schema = self.cleaned_data.get("content_schema")
        if schema in (None, {}):
            return None
        try:
            event_schemas.schema_check(schema)
        except event_schemas.SchemaDefinitionError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return schema


@admin.register(Slot)
class SlotAdmin(PropertyScopedAdmin):
    form = SlotForm
    inlines = [VariantInline]
    list_display = ["key", "name", "property", "default_variant"]
    search_fields = ["key", "name"]


class SegmentForm(forms.ModelForm):
    condition = ConditionField()
    saved_visitors = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        required=False,
        help_text="Saved visitor ids, one per line (a list segment, or for $inGroup).",
    )

    class Meta:
        model = Segment
        fields = ["property", "key", "name", "condition", "goal"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            ids = self.instance.members.values_list("visitor_id", flat=True)
            self.fields["saved_visitors"].initial = "\n".join(ids)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        refuse_unknown_models(self, data.get("property"), data.get("condition"))
        return data

    def clean_goal(self) -> Any:
        goal = self.cleaned_data.get("goal") or {}
        if goal and not (isinstance(goal, dict) and {"metric", "target"} <= set(goal)):
            raise forms.ValidationError(
                'A goal is {"metric": "visitor.engagement_score", "baseline": 40, "target": 44}.'
            )
        return goal

    def clean_saved_visitors(self) -> list[str]:
        ids = [line.strip() for line in self.cleaned_data["saved_visitors"].splitlines()]
        ids = [i for i in ids if i]
        too_long = [i for i in ids if len(i) > 128]
        if too_long:
            raise forms.ValidationError(f"Visitor ids have at most 128 characters: {too_long[0]}")
        return list(dict.fromkeys(ids))


def segment_size(segment: Segment) -> tuple[int, int, int]:
    """(estimated members, visitors seen in the last 7 days, sampled) over the last 7 days."""
    now = timezone.now()
    recent = Visitor.objects.filter(
        property_id=segment.property_id, last_seen__gte=now - timedelta(days=7)
    )
    total = recent.count()
    sample = list(recent.order_by("-last_seen")[:SEGMENT_SAMPLE])
    members = set(segment.members.values_list("visitor_id", flat=True))
    condition = compile_condition(segment.condition) if segment.condition else None
    hits = 0
    for visitor in sample:
        attrs = {"id": visitor.visitor_id, **visitor_state.signals_for(visitor.state, None, now)}
        if (condition and condition(attrs)) or visitor.visitor_id in members:
            hits += 1
    estimate = round(hits / len(sample) * total) if sample else 0
    return estimate, total, len(sample)


@admin.register(Segment)
class SegmentAdmin(PropertyScopedAdmin):
    form = SegmentForm
    list_display = ["key", "name", "property", "estimated_size"]
    readonly_fields = ["estimated_size"]

    @admin.display(description="size (last 7 days)")
    def estimated_size(self, obj: Segment) -> str:
        if obj.pk is None:
            return "—"
        estimate, total, sampled = segment_size(obj)
        note = f" (from a sample of {sampled})" if sampled < total else ""
        return f"≈ {estimate} of {total} visitors{note}"

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        segment = form.instance
        wanted = set(form.cleaned_data["saved_visitors"])
        with transaction.atomic():
            segment.members.exclude(visitor_id__in=wanted).delete()
            existing = set(segment.members.values_list("visitor_id", flat=True))
            SegmentMember.objects.bulk_create(
                [
                    SegmentMember(segment=segment, property_id=segment.property_id, visitor_id=v)
                    for v in wanted - existing
                ]
            )


# What the rule form says about caps and cooldowns with session stickiness.
STICKY_NOTE = (
    "With session stickiness on, a slot keeps the variant it already showed for the rest of "
    "the session: those sticky repeats of an adjustment already made this session are not new "
    "applications, so caps and cooldowns do not count them (a rule capped at 3 a session "
    "may stay on screen on every page of that session). The answer marks them "
    '"sticky": true.'
)


class RuleForm(forms.ModelForm):
    condition = ConditionField()
    fires = forms.ChoiceField(
        choices=RuleFires.choices,
        required=False,
        initial=RuleFires.ANY,
        help_text="A rule reading page.* signals fires in the open page when they cross its "
        "thresholds. Restrict it to page load, or to the page only (an in-page-only rule "
        "whose condition holds at page load fires as soon as the page has loaded).",
    )

    def clean_fires(self) -> str:
        return self.cleaned_data.get("fires") or RuleFires.ANY

    class Meta:
        model = Rule
        # What a version records, in the form's order (the property first).
        fields = ["property", *(name.removesuffix("_id") for name in VERSIONED_FIELDS)]
        help_texts = {
            "cooldown_seconds": "Minimum time before this rule applies again to the same "
            "visitor. Counts new applications only. " + STICKY_NOTE,
            "cap_per_session": "At most this many new applications per session. " + STICKY_NOTE,
            "cap_per_day": "At most this many new applications per visitor and day (the "
            "property's time zone); sticky repeats do not count.",
            "cap_per_week": "At most this many new applications per visitor and week; "
            "sticky repeats do not count.",
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        prop, slot, variant = data.get("property"), data.get("slot"), data.get("variant")
        refuse_unknown_models(self, prop, data.get("condition"))
        guardrail = data.get("guardrail")
        if guardrail is not None and prop is not None and guardrail.property_id != prop.pk:
            self.add_error("guardrail", "This goal belongs to another property.")
        if slot and prop and slot.property_id != prop.pk:
            self.add_error("slot", "This slot belongs to another property.")
        if slot and variant and variant.slot_id != slot.pk:
            self.add_error("variant", f"Choose a variant of the slot {slot.key!r}.")
        starts, ends = data.get("starts_at"), data.get("ends_at")
        if starts and ends and ends <= starts:
            self.add_error("ends_at", "The schedule must end after it starts.")
        if data.get("fires") == RuleFires.LOAD and page_clauses(data.get("condition")):
            self.add_error(
                "fires",
                "This rule reads page.* signals, which the page measures after it has loaded: "
                'it can fire in the page only. Choose "At page load and in the page" or '
                '"In the page only", or remove the page.* clauses.',
            )
        return data


OPERATORS = {"$gt": ">", "$gte": "≥", "$lt": "<", "$lte": "≤", "$eq": "=", "$ne": "≠"}


def page_clauses(condition: Any) -> list[str]:
    """The condition's page.* clauses in words (``page.scroll_speed > 1000 px/s``)."""
    words = []
    for clause in condition_clauses(condition or {}):
        if clause.path.split(".", 1)[0] != "page":
            continue
        attribute = CATALOGUE.lookup(clause.path)
        unit = f" {attribute.unit}" if attribute is not None and attribute.unit else ""
        test = clause.argument
        if isinstance(test, dict) and len(test) == 1 and next(iter(test)) in OPERATORS:
            op, value = next(iter(test.items()))
            words.append(f"{clause.path} {OPERATORS[op]} {json.dumps(value)}{unit}")
        else:
            words.append(f"{clause.path}: {json.dumps(test)}")
    return words


class RuleVersionInline(ReadOnlyInline):
    model = RuleVersion
    fields = ("version", "changed_at", "changed_by", "changes", "note")
    readonly_fields = fields
    ordering = ["-version"]


@admin.register(Rule)
class RuleAdmin(PropertyScopedAdmin):
    form = RuleForm
    inlines = [RuleVersionInline]
    change_form_template = "admin/personalization/rule/change_form.html"
    list_display = ["key", "slot", "variant", "priority", "status", "version", "property"]
    list_filter = ["status"]
    search_fields = ["key", "name"]
    actions = ["pause", "activate"]
    readonly_fields = ["in_the_page"]

    @admin.display(description="In the page")
    def in_the_page(self, obj: Rule) -> str:
        """For a live rule: when it fires in the page, and how its firings fared (30 days)."""
        words = page_clauses(obj.condition) if obj.pk else []
        if not words and obj.fires != RuleFires.PAGE:
            return "Applies at page load only (its condition reads no page.* signal)."
        when = " and ".join(words) if words else "the page has loaded"
        if obj.fires == RuleFires.LOAD:
            return "Restricted to page load: never fires in the page."
        seen = live_firings(obj.property_id, obj.key, timezone.now() - timedelta(days=30))
        refused = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in seen.refused.items())
        median = (
            f"; median time to fire {seen.median_seconds_to_fire:.1f} s"
            if seen.median_seconds_to_fire is not None
            else ""
        )
        return format_html(
            "Fires in the page when {} (where the rest of its condition holds at page load). "
            "Last 30 days: fired {} time(s), refused {}{}.",
            when,
            seen.applied,
            refused or "never",
            median,
        )

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        allowed = properties_for(request.user, self.change_perm)
        if db_field.name == "slot":
            kwargs["queryset"] = Slot.objects.filter(property__in=allowed)
        if db_field.name == "variant":
            kwargs["queryset"] = Variant.objects.filter(slot__property__in=allowed).select_related(
                "slot"
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        rule_save(rule=obj, user=request.user)

    def _set_status(self, request: HttpRequest, queryset: Any, status: str) -> None:
        count = 0
        for rule in queryset:
            if has_property_perm(request.user, self.change_perm, rule.property_id):
                rule_status_set(
                    rule=rule, status=status, user=request.user, note=f"set {status} from the list"
                )
                count += 1
        self.message_user(request, f"{count} rule(s) now {status}.", messages.SUCCESS)

    @admin.action(description="Pause the selected rules", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: Any) -> None:
        self._set_status(request, queryset, "paused")

    @admin.action(description="Activate the selected rules", permissions=["change"])
    def activate(self, request: HttpRequest, queryset: Any) -> None:
        self._set_status(request, queryset, "active")

    def get_urls(self) -> list:
        own = [
            path(
                "<int:pk>/restore/<int:version>/",
                self.admin_site.admin_view(self.restore_view),
                name="personalization_rule_restore",
            ),
            path(
                "<int:pk>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="personalization_rule_preview",
            ),
            path(
                "<int:pk>/replay/",
                self.admin_site.admin_view(self.replay_view),
                name="personalization_rule_replay",
            ),
        ]
        return own + super().get_urls()

    def _rule_for(self, request: HttpRequest, pk: int, perm: str) -> Rule:
        rule = get_object_or_404(Rule, pk=pk)
        if not has_property_perm(request.user, perm, rule.property_id):
            raise PermissionDenied
        return rule

    def restore_view(self, request: HttpRequest, pk: int, version: int) -> HttpResponse:
        rule = self._rule_for(request, pk, self.change_perm)
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:personalization_rule_change", args=[pk]))
        try:
            rule_restore(rule=rule, version=version, user=request.user)
        except ApplicationError as exc:  # an unknown version in the URL: say so, not a 500
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Version {version} restored as version {rule.version}.")
        return HttpResponseRedirect(reverse("admin:personalization_rule_change", args=[pk]))

    def preview_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        rule = self._rule_for(request, pk, self.view_perm)
        visitor_id = request.GET.get("visitor_id", "").strip()[:128]
        result = None
        if visitor_id:
            session = Visitor.objects.filter(
                property_id=rule.property_id, visitor_id=visitor_id
            ).first()
            last = session.sessions.order_by("-started_at").first() if session else None
            result = decide(
                rule.property,
                DecideRequest(visitor_id, last.session_id if last else "preview", [rule.slot.key]),
                dry_run=True,
            )
        return TemplateResponse(
            request,
            "admin/personalization/rule/preview.html",
            {
                **self.admin_site.each_context(request),
                "rule": rule,
                "visitor_id": visitor_id,
                "result": result,
                "opts": self.model._meta,
                "title": f"Test {rule.key}",
            },
        )

    def replay_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        rule = self._rule_for(request, pk, self.view_perm)
        raw_days = request.GET.get("days", "7")
        days = min(max(int(raw_days), 1), 30) if raw_days.isdigit() else 7  # ?days=x: no 500
        report = rule_replay(rule=rule, days=days)
        return TemplateResponse(
            request,
            "admin/personalization/rule/replay.html",
            {
                **self.admin_site.each_context(request),
                "rule": rule,
                "report": report,
                "opts": self.model._meta,
                "title": f"Replay {rule.key}",
            },
        )
