"""Admin for learning: clustering runs and their clusters ("Run clustering", "Adopt cluster
as segment"), propensity models and their versions ("Train model"), and guardrail checks
of rules. Runs and trainings go to the worker; their progress and any refusal show on
their rows."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from consent.tenancy import PropertyScopedAdmin, has_property_perm, properties_for

from ..exceptions import ApplicationError
from ..learning import clustering, feedback, propensity
from ..learning.maintenance import cluster_rerun
from ..models import (
    Cluster,
    ClusterRun,
    Goal,
    GuardrailCheck,
    ModelVersion,
    PropensityModel,
    Slot,
)
from .mixins import ReadOnlyInline


def _progress(status: str, percent: int, message: str) -> str:
    return format_html(
        '<progress max="100" value="{}" title="{}"></progress> {} — {}',
        percent,
        f"{percent}%",
        status,
        message or "",
    )


class ClusterInline(ReadOnlyInline):
    model = Cluster
    fields = ("index", "size", "share", "description", "apart", "adopted_as")
    readonly_fields = fields
    ordering = ["index"]

    @admin.display(description="signals that set it apart (z-scores)")
    def apart(self, obj: Cluster) -> str:
        return format_html_join(
            ", ", "{} {:+.2f}", ((d["signal"], d["z"]) for d in obj.distinct or [])
        )

    @admin.display(description="adopted as")
    def adopted_as(self, obj: Cluster) -> str:
        return ", ".join(obj.segments.values_list("key", flat=True)) or "—"


class ClusterRunForm(forms.ModelForm):
    class Meta:
        model = ClusterRun
        fields = ["property", "window_days", "k_min", "k_max", "drift_share", "drift_centroid"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        prop = data.get("property")
        k_min, k_max, window = data.get("k_min"), data.get("k_max"), data.get("window_days")
        if k_min is None or k_max is None or window is None:
            return data
        problems = clustering.settings_problems(k_min, k_max, window)
        if not problems and prop is not None:
            problems = clustering.data_problems(prop.pk, k_max, window)
        for problem in problems:
            self.add_error(None, problem)
        return data


@admin.register(ClusterRun)
class ClusterRunAdmin(PropertyScopedAdmin):
    form = ClusterRunForm
    inlines = [ClusterInline]
    list_display = [
        "__str__",
        "property",
        "created_at",
        "progress_bar",
        "k",
        "silhouette",
        "rows",
        "drifted",
        "stale",
    ]
    list_filter = ["status", "drifted"]
    actions = ["run_clustering"]
    readonly_fields = [
        "progress_bar",
        "rows",
        "k",
        "silhouette",
        "silhouettes",
        "drift",
        "drifted",
        "stale",
        "started_at",
        "finished_at",
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None:  # a run is a record: its settings do not change after the fact
            return [*ClusterRunForm.Meta.fields, *self.readonly_fields]
        return self.readonly_fields

    @admin.display(description="progress")
    def progress_bar(self, obj: ClusterRun) -> str:
        return _progress(obj.get_status_display(), obj.progress, obj.message)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            return
        run = clustering.cluster_run_create(
            property_id=obj.property_id,
            k_min=obj.k_min,
            k_max=obj.k_max,
            window_days=obj.window_days,
            drift_share=obj.drift_share,
            drift_centroid=obj.drift_centroid,
            user=request.user,
            enqueue=True,
        )
        obj.pk = run.pk
        messages.info(request, f"Clustering #{run.pk} queued; its progress shows here.")

    @admin.action(
        description="Run clustering (again, with the same settings)", permissions=["change"]
    )
    def run_clustering(self, request: HttpRequest, queryset: QuerySet[ClusterRun]) -> None:
        for run in queryset:
            if not has_property_perm(request.user, self.change_perm, run.property_id):
                continue
            problems = clustering.data_problems(run.property_id, run.k_max, run.window_days)
            if problems:
                self.message_user(request, f"#{run.pk}: {' '.join(problems)}", messages.ERROR)
                continue
            new = cluster_rerun(run=run, user=request.user, enqueue=True)
            self.message_user(request, f"Clustering #{new.pk} queued.", messages.SUCCESS)


@admin.register(Cluster)
class ClusterAdmin(PropertyScopedAdmin):
    property_lookup = "run__property"
    list_display = ["__str__", "run", "size", "share", "description", "adopted_as"]
    list_filter = ["run"]
    actions = ["adopt"]
    readonly_fields = ["run", "index", "size", "share", "description", "distinct", "means"]
    exclude = ["centroid"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="adopted as")
    def adopted_as(self, obj: Cluster) -> str:
        return ", ".join(obj.segments.values_list("key", flat=True)) or "—"

    @admin.action(description="Adopt cluster as segment", permissions=["change"])
    def adopt(self, request: HttpRequest, queryset: QuerySet[Cluster]) -> None:
        for cluster in queryset.select_related("run"):
            if not has_property_perm(request.user, self.change_perm, cluster.run.property_id):
                continue
            key = f"cluster-{cluster.run_id}-{cluster.index}"
            try:
                segment = clustering.cluster_adopt(cluster=cluster, key=key, user=request.user)
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                continue
            self.message_user(
                request,
                f"Segment {segment.key!r} ({cluster.description}) now decides membership by "
                "nearest centroid.",
                messages.SUCCESS,
            )


class ModelVersionInline(ReadOnlyInline):
    model = ModelVersion
    fields = (
        "version",
        "progress_bar",
        "created_at",
        "rows",
        "positives",
        "auc",
        "baseline_auc",
        "brier",
        "window_start",
        "window_end",
        "top_features",
    )
    readonly_fields = fields
    ordering = ["-version"]

    @admin.display(description="status")
    def progress_bar(self, obj: ModelVersion) -> str:
        return _progress(obj.get_status_display(), obj.progress, obj.message)

    @admin.display(description="importances (AUC drop)")
    def top_features(self, obj: ModelVersion) -> str:
        return format_html_join(
            ", ", "{} {:.3f}", ((d["feature"], d["importance"]) for d in obj.importances[:5])
        )


class PropensityModelForm(forms.ModelForm):
    class Meta:
        model = PropensityModel
        fields = ["property", "key", "name", "slot", "goal", "window_days", "min_rows", "scheduled"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        prop, slot, goal = data.get("property"), data.get("slot"), data.get("goal")
        if prop is None or slot is None or goal is None:
            return data
        probe = PropensityModel(property=prop, slot=slot, goal=goal)
        for problem in propensity.model_problems(probe):
            self.add_error(None, problem)
        return data


@admin.register(PropensityModel)
class PropensityModelAdmin(PropertyScopedAdmin):
    form = PropensityModelForm
    inlines = [ModelVersionInline]
    list_display = ["key", "property", "slot", "goal", "promoted", "latest"]
    actions = ["train"]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        allowed = properties_for(request.user, self.change_perm)
        if db_field.name == "slot":
            kwargs["queryset"] = Slot.objects.filter(property__in=allowed)
        if db_field.name == "goal":
            kwargs["queryset"] = Goal.objects.filter(property__in=allowed)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="promoted")
    def promoted(self, obj: PropensityModel) -> str:
        v = obj.versions.filter(status="promoted").first()
        return f"v{v.version} (AUC {v.auc:.3f})" if v and v.auc is not None else "—"

    @admin.display(description="latest training")
    def latest(self, obj: PropensityModel) -> str:
        v = obj.versions.first()
        return _progress(v.get_status_display(), v.progress, v.message) if v else "—"

    @admin.action(description="Train model", permissions=["change"])
    def train(self, request: HttpRequest, queryset: QuerySet[PropensityModel]) -> None:
        for model in queryset.select_related("slot", "goal"):
            if not has_property_perm(request.user, self.change_perm, model.property_id):
                continue
            problems = propensity.model_problems(model) or propensity.data_problems(model)
            if problems:
                self.message_user(request, f"{model.key}: {' '.join(problems)}", messages.ERROR)
                continue
            version = propensity.version_start(model=model, user=request.user, enqueue=True)
            self.message_user(
                request, f"{model.key} v{version.version} queued for training.", messages.SUCCESS
            )


@admin.register(GuardrailCheck)
class GuardrailCheckAdmin(PropertyScopedAdmin):
    property_lookup = "rule__property"
    list_display = ["rule", "checked_at", "verdict", "action", "summary"]
    list_filter = ["verdict", "action"]
    actions = ["pause_rules"]
    readonly_fields = ["rule", "checked_at", "verdict", "action", "evidence"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The evidence behind a pause (automatic or by staff): kept, like the audit log.
        return False

    @admin.display(description="evidence")
    def summary(self, obj: GuardrailCheck) -> str:
        e = obj.evidence
        if e.get("p_value") is None:
            return f"{e.get('served_users', 0)} vs {e.get('default_users', 0)} visitors"
        return (
            f"{e['goal']}: {e['served_mean']:.4g} vs default {e['default_mean']:.4g} "
            f"(lift {e['lift']:+.1%}, p={e['p_value']:.3g}; "
            f"{e['served_users']} vs {e['default_users']} visitors)"
        )

    @admin.action(description="Pause the rules of the selected checks", permissions=["change"])
    def pause_rules(self, request: HttpRequest, queryset: QuerySet[GuardrailCheck]) -> None:
        count = 0
        for check in queryset.select_related("rule"):
            if has_property_perm(request.user, self.change_perm, check.rule.property_id):
                count += feedback.rule_pause_on_check(check=check, user=request.user)
        self.message_user(request, f"{count} rule(s) paused.", messages.SUCCESS)
