"""Admin for goals, experiments (with a power calculator) and staged rollouts."""

import json
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from consent.tenancy import PropertyScopedAdmin, has_property_perm, properties_for

from . import event_schemas, stats
from .admin_targeting import ConditionField, ScopedInline, refuse_unknown_models
from .exceptions import ApplicationError
from .models import (
    EventType,
    Experiment,
    ExperimentGoal,
    Goal,
    GoalKind,
    GoalMetric,
    History,
    Property,
    Rollout,
    Slot,
    Visitor,
)
from .services.experiments import (
    experiment_problems,
    experiment_promote,
    experiment_start,
    experiment_stop,
    rollout_kill,
)


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


class HistoryInline(ScopedInline):
    model = History
    fields = ("at", "action", "actor", "evidence")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ExperimentForm(forms.ModelForm):
    condition = ConditionField()

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
            "namespace",
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

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        slot = data.get("slot")
        prop = data.get("property")
        if slot and prop and slot.property_id != prop.pk:
            self.add_error("slot", "This slot belongs to another property.")
        problems = experiment_problems(
            slot_id=slot.pk if slot else None,
            variants=data.get("variants"),
            coverage=data.get("coverage") or 0,
            namespace=data.get("namespace"),
            condition=data.get("condition"),
            confidence=data.get("confidence") or 0,
        )
        for name, message in problems.items():
            if name in self.fields:
                self.add_error(name, message)
        if "condition" not in self.errors:
            refuse_unknown_models(self, prop, data.get("condition"))
        if data.get("hash_version") not in (1, 2):
            self.add_error("hash_version", "GrowthBook hashing has versions 1 and 2.")
        return data


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _p(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def results_html(results: dict) -> str:
    """A snapshot as staff read it: verdict first, then each goal's table."""
    from django.utils.html import format_html, format_html_join

    head = format_html(
        "<p><strong>{}</strong> {} <small>(computed {}, {} analysis, SRM p = {})</small></p>",
        results.get("recommendation") or "no recommendation",
        results.get("recommendation_detail") or "",
        results.get("snapshot_at", "")[:16].replace("T", " "),
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
    list_display = ["key", "slot", "status", "started_at", "winner", "property"]
    list_filter = ["status"]
    actions = ["start", "stop", "promote_rule", "promote_default"]
    readonly_fields = ["status", "started_at", "stopped_at", "latest_results"]
    change_list_template = "admin/personalization/experiment/change_list.html"

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
                with transaction.atomic():
                    work(experiment)
                    self.audit(request, experiment, done.replace(" ", "_"))
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
        from django.utils.dateparse import parse_datetime

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
        from .ruleset import CompiledRollout

        steps = []
        from django.utils.dateparse import parse_datetime

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
                with transaction.atomic():
                    rollout_kill(rollout=rollout, user=request.user)
                    self.audit(request, rollout, "killed")
                count += 1
        self.message_user(request, f"{count} rollout(s) killed.", messages.SUCCESS)
