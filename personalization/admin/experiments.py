"""Admin for goals, experiments (with a power calculator) and staged rollouts."""

import copy
import json
import math
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html, format_html_join

from consent.tenancy import PropertyScopedAdmin, has_property_perm, properties_for

from .. import event_schemas, stats
from ..exceptions import ApplicationError
from ..models import (
    EventType,
    Experiment,
    ExperimentGoal,
    ExperimentStatus,
    Goal,
    GoalKind,
    GoalMetric,
    History,
    Property,
    Rollout,
    Slot,
    Variant,
    Visitor,
)
from ..ruleset import CompiledRollout
from ..services.experiments import (
    experiment_phase_changes,
    experiment_problems,
    experiment_promote,
    experiment_save,
    experiment_start,
    experiment_stop,
    phase_changes_message,
    rollout_kill,
)
from .mixins import ReadOnlyInline, ScopedInline
from .targeting import ConditionField, refuse_unknown_models


class GoalForm(forms.ModelForm):
    class Meta:
        model = Goal
        fields = [
            "property",
            "key",
            "name",
            "kind",
            "metric",
            "event_type",
            "element_id",
            "window_hours",
            "retention_days",
            "inverse",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind, metric, event_type = data.get("kind"), data.get("metric"), data.get("event_type")
        needs_type = kind != GoalKind.RETENTION and metric == GoalMetric.EVENT
        if needs_type and not event_type:
            self.add_error("event_type", "Name the event type this goal counts.")
        if event_type and event_type not in event_schemas.BUILT_IN_TYPES:
            prop = data.get("property")
            if (
                prop is None
                or not EventType.objects.filter(property=prop, name=event_type).exists()
            ):
                self.add_error("event_type", f"There is no event type {event_type!r}.")
        if metric == GoalMetric.REVENUE and kind != GoalKind.CONTINUOUS:
            self.add_error("kind", "Revenue is a continuous goal.")
        return data


@admin.register(Goal)
class GoalAdmin(PropertyScopedAdmin):
    form = GoalForm
    list_display = ["key", "kind", "metric", "event_type", "window_hours", "property"]


class ExperimentGoalInline(ScopedInline):
    model = ExperimentGoal
    extra = 1

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "goal":
            kwargs["queryset"] = Goal.objects.filter(
                property__in=properties_for(request.user, self.change_perm)
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class HistoryInline(ReadOnlyInline):
    model = History
    fields = ("at", "action", "actor", "evidence")
    readonly_fields = fields


def _weight_text(value: Any) -> str:
    try:
        return f"{float(value):.10g}"
    except (TypeError, ValueError):
        return str(value)


class VariantWeightsWidget(forms.Widget):
    """One row per variant — chosen among the slot's variants — with its weight; the first
    row is the control. Posts ``<name>-<i>-variant`` and ``<name>-<i>-weight``."""

    template_name = "personalization/widgets/variant_weights.html"
    EXTRA_ROWS = 2  # empty rows below the filled ones, to add a variant
    MIN_ROWS = 3
    MAX_ROWS = 50

    def __init__(self, attrs: dict | None = None) -> None:
        super().__init__(attrs)
        # (slot id, slot key, its variant keys); only the chosen slot's once there is one.
        self.groups: list[tuple[int, str, list[str]]] = []
        self.slot_id: int | None = None

    def value_from_datadict(self, data: Any, files: Any, name: str) -> list[list[str]]:
        rows = []
        for i in range(self.MAX_ROWS):
            variant, weight = data.get(f"{name}-{i}-variant"), data.get(f"{name}-{i}-weight")
            if variant is None and weight is None:
                break
            rows.append([str(variant or "").strip(), str(weight or "").strip()])
        return rows

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return f"{name}-0-variant" not in data and f"{name}-0-weight" not in data

    def format_value(self, value: Any) -> Any:
        return value  # rows, as the field prepared them

    def get_context(self, name: str, value: Any, attrs: dict | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        groups = [g for g in self.groups if self.slot_id is None or g[0] == self.slot_id]
        filled = [r for r in (value or []) if isinstance(r, list | tuple) and len(r) == 2]
        rows = []
        blank = max(self.EXTRA_ROWS, self.MIN_ROWS - len(filled))
        for index, (variant, weight) in enumerate([*filled, *[("", "")] * blank]):
            group = next((g[0] for g in groups if variant in g[2]), None)
            rows.append(
                {
                    "index": index,
                    "number": index + 1,
                    "variant": variant,
                    "weight": weight,
                    "group": group,
                    "unknown": bool(variant) and group is None,
                }
            )
        context["widget"].update(
            rows=rows,
            groups=[{"id": g[0], "label": g[1], "variants": g[2]} for g in groups],
            grouped=len(groups) > 1,
        )
        return context


class VariantWeightsField(forms.Field):
    """The experiment's variants as rows; cleans to ``[{"variant", "weight"}, ...]``, the
    weights as shares (percentages are divided by 100). Whether the rows make a valid
    experiment is ``experiment_problems``'s to say."""

    widget = VariantWeightsWidget

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return []
        rows = []
        for item in value or []:
            if isinstance(item, dict):
                rows.append([str(item.get("variant", "")), _weight_text(item.get("weight", ""))])
            elif isinstance(item, list | tuple) and len(item) == 2:
                rows.append([str(item[0]), str(item[1])])
        return rows

    def to_python(self, value: Any) -> list[dict[str, Any]]:
        rows = self.prepare_value(value)
        errors: list[forms.ValidationError] = []
        parsed: list[tuple[str, float]] = []
        percent = False
        for number, (variant, text) in enumerate(rows, 1):
            if not variant and not text:
                continue  # an empty row
            if not variant:
                errors.append(forms.ValidationError(f"Row {number}: choose its variant."))
                continue
            if not text:
                errors.append(forms.ValidationError(f"Row {number}: give {variant} a weight."))
                continue
            percent = percent or text.endswith("%")
            try:
                weight = float(text.removesuffix("%").strip().replace(",", "."))
            except ValueError:
                errors.append(
                    forms.ValidationError(
                        f"Row {number}: “{text}” is not a number (a share like 0.5, or a "
                        "percentage like 50 or 50%)."
                    )
                )
                continue
            if not math.isfinite(weight) or weight < 0:
                errors.append(
                    forms.ValidationError(f"Row {number}: “{text}” is not a weight (0 or more).")
                )
                continue
            parsed.append((variant, weight))
        # Shares add up to 1; a weight above 1 (or a "%") means percentages adding up to 100.
        percent = percent or any(w > 1 for _, w in parsed)
        for variant, weight in parsed:
            if percent and weight > 100:
                errors.append(
                    forms.ValidationError(f"{variant}: a percentage lies between 0 and 100.")
                )
        if errors:
            raise forms.ValidationError(errors)
        if percent:
            parsed = [(v, w / 100) for v, w in parsed]
        return [{"variant": v, "weight": round(w, 10)} for v, w in parsed]


class ExperimentForm(forms.ModelForm):
    condition = ConditionField()
    variants = VariantWeightsField(
        required=False,
        help_text="The control first, then each treatment, with the share of the experiment's "
        "visitors it gets: shares adding up to 1 (0.5 and 0.5) or percentages adding up to "
        "100 (50 and 50). Fill an empty row to add a variant; clear a row to remove it.",
    )
    namespace_id = forms.CharField(
        required=False,
        max_length=64,
        label="Namespace",
        help_text="Optional. Experiments in the same namespace with ranges that do not "
        "overlap never share a visitor (e.g. checkout). Leave the three fields empty for none.",
    )
    namespace_start = forms.FloatField(
        required=False, label="Range start", help_text="From 0 to 1, e.g. 0."
    )
    namespace_end = forms.FloatField(
        required=False, label="Range end", help_text="From 0 to 1, after the start, e.g. 0.5."
    )
    confirm_new_phase = forms.BooleanField(
        required=False,
        label="I understand this starts a new phase",
        help_text="Needed to save a change to the variants or weights, coverage, condition, "
        "namespace, slot or hashing of a running experiment: its results then count only "
        "visitors exposed from the save on, and the change is recorded in its history.",
    )

    class Meta:
        model = Experiment
        fields = [
            "property",
            "key",
            "name",
            "slot",
            "variants",
            "coverage",
            "condition",
            "hash_seed",
            "hash_version",
            "priority",
            "confidence",
            "method",
            "correction",
            "min_users",
            "planned_users",
            "winner",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.phase_changes: dict[str, dict] = {}
        namespace = self.instance.namespace
        if isinstance(namespace, list) and len(namespace) == 3:
            for name, value in zip(
                ("namespace_id", "namespace_start", "namespace_end"), namespace, strict=True
            ):
                self.initial.setdefault(name, value)
        if "slot" not in self.fields or "variants" not in self.fields:
            return  # a read-only view: nothing to choose
        slots = self.fields["slot"].queryset  # type: ignore[attr-defined]
        if self.instance.property_id:
            slots = slots.filter(property_id=self.instance.property_id)
        groups: dict[int, tuple[int, str, list[str]]] = {}
        for slot_id, slot_key, key in (
            Variant.objects.filter(slot__in=slots)
            .order_by("slot__key", "slot_id", "key")
            .values_list("slot_id", "slot__key", "key")
        ):
            groups.setdefault(slot_id, (slot_id, slot_key, []))[2].append(key)
        widget = self.fields["variants"].widget
        widget.groups = list(groups.values())  # type: ignore[attr-defined]
        chosen = str(
            (self.data.get(self.add_prefix("slot")) if self.is_bound else self.instance.slot_id)
            or ""
        )
        widget.slot_id = (  # type: ignore[attr-defined]
            int(chosen) if chosen.isdigit() and int(chosen) in groups else None
        )

    def _namespace(self, data: dict[str, Any]) -> list | None:
        """The namespace as stored (``[id, start, end]``), from its three fields."""
        if {"namespace_id", "namespace_start", "namespace_end"} & set(self.errors):
            return None
        name = (data.get("namespace_id") or "").strip()
        start, end = data.get("namespace_start"), data.get("namespace_end")
        if not name and start is None and end is None:
            return None
        if not name:
            self.add_error("namespace_id", "Name the namespace this range belongs to.")
            return None
        if start is None or end is None:
            self.add_error(
                "namespace_start" if start is None else "namespace_end",
                f"Give the range of {name!r} the experiment takes: a start and an end "
                "between 0 and 1 (e.g. 0 and 0.5).",
            )
            return None
        return [name, start, end]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        slot = data.get("slot")
        prop = data.get("property")
        if slot and prop and slot.property_id != prop.pk:
            self.add_error("slot", "This slot belongs to another property.")
        data["namespace"] = self._namespace(data)
        problems = experiment_problems(
            slot_id=slot.pk if slot else None,
            variants=data.get("variants"),
            coverage=data.get("coverage") or 0,
            namespace=data["namespace"],
            condition=data.get("condition"),
            confidence=data.get("confidence") or 0,
        )
        for name, message in problems.items():
            field = "namespace_start" if name == "namespace" else name
            if field in self.fields and field not in self.errors:
                self.add_error(field, message)
        if "condition" not in self.errors:
            refuse_unknown_models(self, prop, data.get("condition"))
        if data.get("hash_version") not in (1, 2):
            self.add_error("hash_version", "GrowthBook hashing has versions 1 and 2.")
        if self.instance.pk is not None and not self.errors:
            self._check_phase(data)
        return data

    def _check_phase(self, data: dict[str, Any]) -> None:
        """A running experiment changed in a way that biases it: refused unless confirmed."""
        after = copy.copy(self.instance)  # plain attributes only: no related object is set
        for name in ("key", "variants", "coverage", "condition", "namespace"):
            setattr(after, name, data.get(name))
        after.slot_id = data["slot"].pk
        after.hash_seed = data.get("hash_seed") or ""
        after.hash_version = data.get("hash_version")  # type: ignore[assignment]
        self.phase_changes = experiment_phase_changes(self.instance, after)
        if self.phase_changes and not data.get("confirm_new_phase"):
            self.add_error(
                "confirm_new_phase",
                phase_changes_message(self.instance, self.phase_changes)
                + " To keep the change, tick “I understand this starts a new phase” and save.",
            )

    def save(self, commit: bool = True) -> Any:
        self.instance.namespace = self.cleaned_data.get("namespace")
        return super().save(commit)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _p(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def results_html(results: dict) -> str:
    """A snapshot as staff read it: verdict first, then each goal's table."""
    phase = ""
    if (results.get("phase") or 1) > 1:
        phase = format_html(
            ", phase {} since {}: earlier exposures not counted",
            results["phase"],
            (results.get("phase_started_at") or "")[:16].replace("T", " "),
        )
    head = format_html(
        "<p><strong>{}</strong> {} <small>(computed {}{}, {} analysis, SRM p = {})</small></p>",
        results.get("recommendation") or "no recommendation",
        results.get("recommendation_detail") or "",
        results.get("snapshot_at", "")[:16].replace("T", " "),
        phase,
        results.get("method", ""),
        _p(results.get("srm_p_value")),
    )
    warnings = format_html_join(
        "", '<p class="errornote">{}</p>', ((w,) for w in results.get("warnings", []))
    )
    tables = []
    for goal in results.get("goals", []):
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td></tr>",
            (
                (
                    v["variant"],
                    v["users"],
                    f"{v['rate']:.4g}",
                    "control"
                    if v["lift"] is None and not v.get("lift_reason")
                    else v.get("lift_reason")
                    if v["lift"] is None
                    else f"{_pct(v['lift']['relative'])} [{_pct(v['lift']['ci_low'])}, "
                    f"{_pct(v['lift']['ci_high'])}]",
                    _p(v.get("p_value")),
                    _p(v.get("p_value_adjusted")),
                    _pct(v.get("chance_to_win")),
                )
                for v in goal["variants"]
            ),
        )
        tables.append(
            format_html(
                "<h4>{} ({}, {}{})</h4><table><tr><th>variant</th><th>users</th><th>rate/mean</th>"
                "<th>lift [interval]</th><th>p</th><th>p adjusted</th><th>chance to win</th></tr>"
                "{}</table>",
                goal["key"],
                goal["role"],
                goal["kind"],
                ", CUPED" if goal.get("cuped") else "",
                rows,
            )
        )
    return format_html("{}{}{}", head, warnings, format_html_join("", "{}", ((t,) for t in tables)))


class PowerForm(forms.Form):
    property: forms.ModelChoiceField = forms.ModelChoiceField(queryset=Property.objects.none())
    baseline_rate = forms.FloatField(min_value=0.0001, max_value=0.9999, initial=0.05)
    minimum_effect = forms.FloatField(help_text="Relative, e.g. 0.1 for +10%.", initial=0.1)
    power = forms.FloatField(min_value=0.5, max_value=0.99, initial=0.8)
    confidence = forms.FloatField(min_value=0.5, max_value=0.999, initial=0.95)
    variants = forms.IntegerField(min_value=2, max_value=10, initial=2)


@admin.register(Experiment)
class ExperimentAdmin(PropertyScopedAdmin):
    form = ExperimentForm
    inlines = [ExperimentGoalInline, HistoryInline]
    list_display = ["key", "slot", "status", "phase", "started_at", "winner", "property"]
    list_filter = ["status"]
    actions = ["start", "stop", "promote_rule", "promote_default"]
    readonly_fields = [
        "status",
        "phase",
        "phase_started_at",
        "started_at",
        "stopped_at",
        "latest_results",
    ]
    change_list_template = "admin/personalization/experiment/change_list.html"
    fieldsets = [
        (None, {"fields": ["property", "key", "name", "slot"]}),
        ("Variants and who takes part", {"fields": ["variants", "coverage", "condition"]}),
        (
            "Namespace (optional)",
            {
                "fields": ["namespace_id", "namespace_start", "namespace_end"],
                "description": "For mutually exclusive experiments: each takes a range of "
                "the same namespace, and ranges that do not overlap never share a visitor.",
            },
        ),
        ("Bucketing", {"fields": ["hash_seed", "hash_version", "priority"]}),
        (
            "Analysis",
            {
                "fields": [
                    "confidence",
                    "method",
                    "correction",
                    "min_users",
                    "planned_users",
                    "winner",
                ]
            },
        ),
        (
            "Status",
            {
                "fields": [
                    "status",
                    "phase",
                    "phase_started_at",
                    "started_at",
                    "stopped_at",
                    "latest_results",
                ]
            },
        ),
    ]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None and not self.has_change_permission(request, obj):
            # Read only: the namespace as stored, not the fields that edit it.
            return [
                (name, {**options, "fields": ["namespace"]})
                if "namespace_id" in options["fields"]
                else (name, options)
                for name, options in fieldsets
            ]
        if obj is not None and obj.status == ExperimentStatus.RUNNING:
            # A running experiment: what would bias it needs this box (ExperimentForm).
            fieldsets.insert(
                1,
                (
                    f"Running: phase {obj.phase}",
                    {
                        "fields": ["confirm_new_phase"],
                        "description": "This experiment is running. Changing its variants "
                        "or weights, coverage, condition, namespace, slot or hashing would "
                        "bias its results, so such a change starts a new phase: results "
                        "count only the visitors exposed from then on. Other fields save "
                        "as usual.",
                    },
                ),
            )
        return fieldsets

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        phase = obj.phase
        experiment_save(
            experiment=obj,
            user=request.user,
            new_phase=bool(form.cleaned_data.get("confirm_new_phase")),
        )
        if obj.phase != phase:
            messages.warning(
                request,
                f"{obj.key} entered phase {obj.phase}: its results now count only the visitors "
                "exposed from now on. The change is in its history.",
            )

    @admin.display(description="latest results")
    def latest_results(self, obj: Experiment) -> str:
        snapshot = obj.snapshots.order_by("-computed_at").first()
        if snapshot is None:
            return "Not computed yet (hourly, or GET /api/v1/experiments/<key>/results)."
        return results_html(snapshot.results)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "slot":
            kwargs["queryset"] = Slot.objects.filter(
                property__in=properties_for(request.user, self.change_perm)
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def _each(self, request: HttpRequest, queryset: Any, work: Any, done: str) -> None:
        count = 0
        for experiment in queryset:
            if not has_property_perm(request.user, self.change_perm, experiment.property_id):
                continue
            try:
                work(experiment)
                count += 1
            except ApplicationError as exc:
                self.message_user(request, f"{experiment.key}: {exc.message}", messages.ERROR)
        if count:
            self.message_user(request, f"{count} experiment(s) {done}.", messages.SUCCESS)

    @admin.action(description="Start the selected experiments", permissions=["change"])
    def start(self, request: HttpRequest, queryset: Any) -> None:
        self._each(
            request,
            queryset,
            lambda e: experiment_start(experiment=e, user=request.user),
            "started",
        )

    @admin.action(description="Stop the selected experiments", permissions=["change"])
    def stop(self, request: HttpRequest, queryset: Any) -> None:
        self._each(
            request, queryset, lambda e: experiment_stop(experiment=e, user=request.user), "stopped"
        )

    def _promote(self, request: HttpRequest, queryset: Any, to: str) -> None:
        def work(e: Experiment) -> None:
            if not e.winner:
                raise ApplicationError("no_winner", "Set the winner field first.")
            experiment_promote(experiment=e, variant=e.winner, to=to, user=request.user)

        self._each(request, queryset, work, f"promoted to a {to}")

    @admin.action(description="Promote the winner to a rule", permissions=["change"])
    def promote_rule(self, request: HttpRequest, queryset: Any) -> None:
        self._promote(request, queryset, "rule")

    @admin.action(description="Promote the winner to the slot's default", permissions=["change"])
    def promote_default(self, request: HttpRequest, queryset: Any) -> None:
        self._promote(request, queryset, "default")

    def get_urls(self) -> list:
        return [
            path(
                "power/",
                self.admin_site.admin_view(self.power_view),
                name="personalization_experiment_power",
            ),
        ] + super().get_urls()

    def power_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):  # deny by default: experiment readers only
            raise PermissionDenied
        form = PowerForm(request.GET or None)
        form.fields["property"].queryset = properties_for(request.user, self.view_perm)  # type: ignore[attr-defined]
        answer = None
        if form.is_valid():
            data = form.cleaned_data
            try:
                size = stats.sample_size_per_variant(
                    data["baseline_rate"],
                    data["minimum_effect"],
                    power=data["power"],
                    alpha=1 - data["confidence"],
                    variants=data["variants"],
                )
            except ValueError as exc:
                form.add_error(None, str(exc))
            else:
                weekly = Visitor.objects.filter(
                    property=data["property"], last_seen__gte=timezone.now() - timedelta(days=7)
                ).count()
                daily = weekly / 7
                answer = {
                    "per_variant": size.per_variant,
                    "total": size.total,
                    "daily": round(daily),
                    "days": None if daily == 0 else max(1, round(size.total / daily)),
                }
        return TemplateResponse(
            request,
            "admin/personalization/experiment/power.html",
            {
                **self.admin_site.each_context(request),
                "form": form,
                "answer": answer,
                "opts": self.model._meta,
                "title": "Power calculator",
            },
        )


class RolloutForm(forms.ModelForm):
    class Meta:
        model = Rollout
        fields = [
            "property",
            "key",
            "slot",
            "variant",
            "percent",
            "schedule",
            "guardrail",
            "priority",
            "owner",
        ]

    def clean_schedule(self) -> Any:
        schedule = self.cleaned_data.get("schedule") or []
        if not isinstance(schedule, list):
            raise forms.ValidationError('A list of {"at": "<ISO time>", "percent": 0-100}.')
        for i, step in enumerate(schedule):
            if not isinstance(step, dict) or parse_datetime(str(step.get("at"))) is None:
                raise forms.ValidationError(f'Step {i}: give an ISO time in "at".')
            percent = step.get("percent")
            if not isinstance(percent, int | float) or not 0 <= percent <= 100:
                raise forms.ValidationError(f"Step {i}: percent lies between 0 and 100.")
        return schedule

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        slot, variant = data.get("slot"), data.get("variant")
        if slot and variant and not slot.variants.filter(key=variant).exists():
            self.add_error("variant", f"The slot {slot.key!r} has no variant {variant!r}.")
        if not 0 <= (data.get("percent") or 0) <= 100:
            self.add_error("percent", "Between 0 and 100.")
        return data


@admin.register(Rollout)
class RolloutAdmin(PropertyScopedAdmin):
    form = RolloutForm
    inlines = [HistoryInline]
    list_display = ["key", "slot", "variant", "current_percent", "status", "property"]
    list_filter = ["status"]
    actions = ["kill"]
    readonly_fields = ["status"]

    @admin.display(description="now serving")
    def current_percent(self, obj: Rollout) -> str:
        steps = []
        for step in obj.schedule or []:
            at = parse_datetime(str(step.get("at")))
            if at:
                steps.append((at, float(step.get("percent", 0))))
        compiled = CompiledRollout(
            obj.pk, obj.key, "", obj.variant, obj.percent, tuple(sorted(steps)), obj.priority
        )
        return f"{compiled.percent_at(timezone.now()):g}%"

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> Any:
        if object_id:
            rollout = Rollout.objects.filter(pk=object_id).first()
            if rollout and rollout.status == "halted":
                last = rollout.history.filter(action__startswith="halted").first()
                messages.warning(
                    request,
                    "This rollout was halted by its guardrail: "
                    + json.dumps(last.evidence if last else {}),
                )
        return super().changeform_view(request, object_id, form_url, extra_context)

    @admin.action(
        description="Kill switch: stop serving the selected rollouts", permissions=["change"]
    )
    def kill(self, request: HttpRequest, queryset: Any) -> None:
        count = 0
        for rollout in queryset:
            if has_property_perm(request.user, self.change_perm, rollout.property_id):
                rollout_kill(rollout=rollout, user=request.user)
                count += 1
        self.message_user(request, f"{count} rollout(s) killed.", messages.SUCCESS)
