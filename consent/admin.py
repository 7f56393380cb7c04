import contextlib
import json
from datetime import UTC, date, datetime, time
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.db.models.expressions import Combinable
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from . import selectors
from .exceptions import DomainError
from .hashing import visitor_key
from .models import (
    AuditEntry,
    ConsentPolicy,
    ConsentRecord,
    GpcEvidence,
    PrivacyRequest,
    RequestKind,
    RequestSource,
    RetentionPolicy,
    RetentionRun,
    Suppression,
)
from .models.policies import BUILT_IN_PURPOSES
from .policy_forms import JurisdictionsField, PurposesField
from .services import policy_publish
from .services.requests import (
    ACTIONS,
    MAX_BACKDATE,
    privacy_request_check,
    privacy_request_submit,
    request_act,
    request_assign,
)
from .services.retention import FIELDS as RETENTION_FIELDS
from .services.retention import retention_policy_set
from .tenancy import PropertyScopedAdmin, ReadOnlyMixin, has_property_perm, properties_for

PRIVACY = "manage_privacy"


class PrivacyScopedAdmin(PropertyScopedAdmin):
    """Privacy officers' lists: scoped to their properties; another property's row is a 404."""

    audit_kind = None  # privacy services write their own entries

    view_perm = PRIVACY
    change_perm = PRIVACY

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if not self.get_queryset(request).filter(pk=unquote(object_id)).exists():
            raise Http404("No such record among your properties.")
        return super().change_view(request, object_id, form_url, extra_context)


class ConsentPolicyForm(forms.ModelForm):
    purposes = PurposesField(
        help_text="Each purpose as visitors read it in the banner. A new version starts from "
        "the property's current one; add a purpose in a blank row (its key: letters, digits "
        "and _), or tick Remove. The built-in purposes stay in every version."
    )
    jurisdictions = JurisdictionsField(
        required=False,
        help_text="Codes separated by commas, e.g. EU, US-CA. Empty: everywhere.",
    )

    class Meta:
        model = ConsentPolicy
        fields = ["property", "purposes", "jurisdictions"]


@admin.register(ConsentPolicy)
class ConsentPolicyAdmin(PropertyScopedAdmin):
    """Publishing saves a new version; existing versions are shown read-only."""

    audit_kind = None  # privacy services write their own entries

    form = ConsentPolicyForm
    view_perm = PRIVACY
    change_perm = PRIVACY
    list_display = ["property", "version", "purpose_list", "published_at", "published_by"]

    class Media:
        css = {"all": ["consent/privacy.css"]}  # the purposes table of a published version

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

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        """A new version starts from the chosen property's current one (``?property=<id>``,
        else the first property the user may publish for)."""
        initial: dict[str, Any] = dict(super().get_changeform_initial_data(request))
        held = properties_for(request.user, self.change_perm).order_by("name", "pk")
        prop = None
        with contextlib.suppress(TypeError, ValueError):
            prop = held.filter(pk=int(str(initial.get("property") or ""))).first()
        prop = prop or held.first()
        if prop is None:
            return initial
        current = ConsentPolicy.objects.filter(property=prop).order_by("-version").first()
        initial["property"] = prop.pk
        initial["purposes"] = current.purposes if current else BUILT_IN_PURPOSES
        initial["jurisdictions"] = current.jurisdictions if current else []
        return initial

    @admin.display(description="purposes")
    def purposes_pretty(self, obj: ConsentPolicy) -> str:
        rows = [(p.get("key", ""), p.get("title", ""), p.get("text", "")) for p in obj.purposes]
        return format_html(
            '<table class="purposes-table"><thead><tr><th scope="col">Key</th>'
            '<th scope="col">Title</th><th scope="col">Text shown to visitors</th></tr>'
            "</thead><tbody>{}</tbody></table>",
            format_html_join("", "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>", rows),
        )

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
        # The published row as the admin's own message and log entry name it ("Shop v2").
        for name in ("pk", "version", "purposes", "jurisdictions", "published_at"):
            setattr(obj, name, getattr(policy, name))
        obj.published_by = policy.published_by


@admin.register(ConsentRecord)
class ConsentRecordAdmin(ReadOnlyMixin, PrivacyScopedAdmin):
    list_display = ["created_at", "property", "visitor_key", "method", "granted", "refused"]
    list_filter = ["method"]
    search_fields = ["=visitor_key"]
    change_list_template = "admin/consent/consentrecord/change_list.html"


@admin.register(GpcEvidence)
class GpcEvidenceAdmin(ReadOnlyMixin, PrivacyScopedAdmin):
    list_display = ["at", "property", "visitor_key", "endpoint"]
    search_fields = ["=visitor_key"]


@admin.register(Suppression)
class SuppressionAdmin(ReadOnlyMixin, PrivacyScopedAdmin):
    list_display = ["created_at", "property", "visitor_key", "reason", "exclude_from_training"]
    # Shown, never a form field: a select of requests would be ordered by the request queue's
    # ``closed`` annotation, which a plain queryset lacks (the page answered 500).
    readonly_fields = ["request"]
    list_filter = ["reason"]
    search_fields = ["=visitor_key"]


# Data-subject requests ------------------------------------------------------------------


class DeadlineFilter(admin.SimpleListFilter):
    title = "deadline"
    parameter_name = "deadline"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("open", "Open"),
            ("overdue", "Overdue"),
            ("due_soon", f"Due within {selectors.DUE_SOON_DAYS} days"),
            ("closed", "Closed"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        today = timezone.now().date()
        value = self.value()
        if value == "open":
            return queryset.filter(closed=0)
        if value == "overdue":
            return queryset.filter(closed=0, due_date__lt=today)
        if value == "due_soon":
            soon = date.fromordinal(today.toordinal() + selectors.DUE_SOON_DAYS)
            return queryset.filter(closed=0, due_date__gte=today, due_date__lte=soon)
        if value == "closed":
            return queryset.filter(closed=1)
        return queryset


class PrivacyRequestAddForm(forms.ModelForm):
    """A request received outside the storefront (an e-mail, a letter), entered by an officer."""

    received_on = forms.DateField(
        initial=lambda: timezone.now().date(),
        help_text="The day the request arrived; the deadline runs from it.",
    )

    class Meta:
        model = PrivacyRequest
        fields = ["property", "kind", "regulation", "visitor_id", "contact", "note"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["visitor_id"].required = True
        self.fields[
            "visitor_id"
        ].help_text = "The storefront's visitor id. Held only while the request is open."

    def clean_received_on(self) -> date:
        day = self.cleaned_data["received_on"]
        today = timezone.now().date()
        if day > today or day < today - MAX_BACKDATE:
            raise forms.ValidationError("A request is received today or within the last year.")
        return day

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        prop, kind, vid = data.get("property"), data.get("kind"), data.get("visitor_id")
        if prop is not None and kind and vid:
            try:
                privacy_request_check(property_id=prop.pk, kind=kind, visitor_id=vid)
            except DomainError as exc:
                raise forms.ValidationError(exc.message) from exc
        return data


class PrivacyRequestChangeForm(forms.ModelForm):
    """Status changes and assignment go through the services; no field is edited directly."""

    action = forms.ChoiceField(
        choices=[("", "—")] + list(ACTIONS.items()), required=False, label="Action"
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="Required to extend or deny; recorded in the audit trail.",
    )
    assign_to = forms.ModelChoiceField(
        queryset=get_user_model().objects.none(), required=False, label="Assignee"
    )

    class Meta:
        model = PrivacyRequest
        fields: list[str] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["assign_to"]
        if self.instance.pk and isinstance(field, forms.ModelChoiceField):
            field.queryset = officers_of(self.instance.property_id)
            field.initial = self.instance.assignee_id

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        action = data.get("action")
        if action in ("extend", "deny") and not (data.get("reason") or "").strip():
            self.add_error("reason", "Give the reason: it is recorded and told to the requester.")
        return data


def officers_of(property_id: int) -> QuerySet:
    """Staff who hold the privacy role on the property (the possible assignees)."""
    users = get_user_model().objects.filter(is_active=True, is_staff=True).order_by("username")
    ids = [u.pk for u in users if has_property_perm(u, PRIVACY, property_id)]
    return get_user_model().objects.filter(pk__in=ids).order_by("username")


@admin.register(PrivacyRequest)
class PrivacyRequestAdmin(PrivacyScopedAdmin):
    # Days left second, and nothing the request's own page shows better (its kind is in its
    # name, the day received on its page): the queue fits a 1,280 px screen beside the
    # filters. The property column only for officers of more than one (get_list_display).
    list_display = [
        "__str__",
        "days_left",
        "due_date",
        "status",
        "regulation",
        "property",
        "assignee",
    ]
    list_filter = [DeadlineFilter, "status", "kind", "regulation"]
    search_fields = ["=contact"]
    readonly = [
        "public_id",
        "property",
        "kind",
        "regulation",
        "source",
        "status",
        "received_at",
        "due_date",
        "days_left",
        "identity_verified_at",
        "extended_at",
        "extension_reason",
        "denial_reason",
        "completed_at",
        "assignee",
        "visitor_key",
        "visitor_id",
        "contact",
        "note",
        "work",
        "audit_trail",
    ]

    class Media:
        css = {"all": ["consent/privacy.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return selectors.requests_for(properties_for(request.user, PRIVACY))

    def get_list_display(self, request: HttpRequest) -> Any:
        columns = list(super().get_list_display(request))
        if properties_for(request.user, PRIVACY).count() <= 1:
            columns.remove("property")
        return columns

    def get_ordering(self, request: HttpRequest) -> list[str | Combinable]:
        # Open requests first (``closed`` is annotated by the queue selector), soonest due first.
        return ["closed", "due_date", "id"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):  # type: ignore[no-untyped-def]
        kwargs["form"] = PrivacyRequestChangeForm if obj is not None else PrivacyRequestAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return [
                "property",
                "kind",
                "regulation",
                "visitor_id",
                "contact",
                "received_on",
                "note",
            ]
        if obj.is_open:
            return self.readonly + ["action", "reason", "assign_to"]
        return self.readonly

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly if obj is not None else []

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """Search by visitor id through its keyed hash on each property, or by request id."""
        term = search_term.strip()
        if not term:
            return queryset, False
        properties = queryset.order_by().values_list("property_id", flat=True).distinct()
        keys = {visitor_key(pk, term) for pk in properties}
        found = queryset.filter(visitor_key__in=keys) | queryset.filter(contact=term)
        with contextlib.suppress(ValidationError):  # not a UUID: no request has it as its id
            found = found | queryset.filter(public_id=term)
        return found, False

    @admin.display(description="days left")
    def days_left(self, obj: PrivacyRequest) -> str:
        if not obj.is_open:
            return "—"
        left = selectors.days_left(obj)
        flag = selectors.deadline_flag(obj)
        # Colours come from consent/privacy.css: the CSP refuses a style attribute.
        if flag == "overdue":
            return format_html('<strong class="deadline overdue">overdue by {} d</strong>', -left)
        if flag == "due_soon":
            return format_html('<strong class="deadline due-soon">{} d</strong>', left)
        return format_html('<span class="deadline">{} d</span>', left)

    @admin.display(description="export or receipt")
    def work(self, obj: PrivacyRequest) -> str:
        export = getattr(obj, "export", None) if obj.kind == RequestKind.ACCESS else None
        if export is not None:
            link: str = ""
            if export.status == "ready":
                url = reverse("consent:export-download", args=[export.token])
                link = format_html(' <a href="{}" class="export-download">Download</a>', url)
                if export.expires_at is not None:
                    until = export.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
                    link = format_html("{} (until {} UTC)", link, until)
            return format_html(
                "{} — {} stores of {} read, {} rows{}",
                export.get_status_display(),
                export.stores_done,
                export.stores_total,
                export.rows,
                link,
            )
        if obj.kind == RequestKind.ERASURE:
            if obj.receipt:
                rows = [
                    (s["store"], s["action"], s["removed_total"], s["caches_and_files"], s["kept"])
                    for s in obj.receipt["stores"]
                ]
                return format_html(
                    '<p class="receipt-summary">{}</p><table class="privacy-receipt">'
                    '<tr><th>store</th><th>action</th><th class="num">rows removed</th>'
                    '<th class="num">caches/files</th><th class="num">kept</th></tr>{}</table>',
                    obj.receipt["summary"],
                    format_html_join(
                        "",
                        '<tr><td>{}</td><td>{}</td><td class="num">{}</td>'
                        '<td class="num">{}</td><td class="num">{}</td></tr>',
                        rows,
                    ),
                )
            steps = list(obj.steps.all())
            if steps:
                done = sum(1 for s in steps if s.status == "done")
                return f"Erasing: {done} of {len(steps)} steps done"
        return "—"

    @admin.display(description="audit trail")
    def audit_trail(self, obj: PrivacyRequest) -> str:
        rows = [
            (f"{e.at:%Y-%m-%d %H:%M}", e.actor_label, e.action, json.dumps(e.details))
            for e in selectors.request_audit_trail(obj)
        ]
        return format_html(
            "<table>{}</table>",
            format_html_join(
                "", "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>", rows
            ),
        )

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        data = form.cleaned_data
        try:
            if not change:
                received = datetime.combine(data["received_on"], time(12), tzinfo=UTC)
                # Asked before the request exists (it is a row about the visitor too).
                known = data["kind"] != RequestKind.ACCESS or selectors.visitor_known(
                    data["property"].pk, data["visitor_id"].strip()
                )
                created, merged = privacy_request_submit(
                    property_id=data["property"].pk,
                    kind=data["kind"],
                    regulation=data["regulation"],
                    visitor_id=data["visitor_id"],
                    contact=data.get("contact") or "",
                    note=data.get("note") or "",
                    source=RequestSource.OFFICER,
                    user=request.user,
                    received_at=min(received, timezone.now()),
                )
                obj.pk = created.pk
                if created.kind == RequestKind.ACCESS and not known:
                    messages.warning(
                        request,
                        "Nothing is held about this visitor id on this property: the export "
                        "will say so. Check the id with the person if they expected data.",
                    )
                if merged:
                    messages.warning(
                        request,
                        f"An open {created.get_kind_display().lower()} request for this visitor "
                        f"exists; this one was merged into {created}.",
                    )
                return
            if data.get("assign_to") != obj.assignee:
                request_assign(request=obj, user=request.user, assignee=data.get("assign_to"))
            if data.get("action"):
                request_act(
                    request=obj, action=data["action"], user=request.user, reason=data["reason"]
                )
        except DomainError as exc:
            messages.error(request, exc.message)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        return None

    def message_user(self, request: HttpRequest, message: Any, *args: Any, **kwargs: Any) -> None:
        # The service's own messages say what happened; Django's generic one would not.
        if "successfully" in str(message):
            return
        super().message_user(request, message, *args, **kwargs)


# Audit log ------------------------------------------------------------------------------


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyMixin, PropertyScopedAdmin):
    """Privacy officers read the privacy entries of their properties, marketing the
    configuration entries of theirs. Nobody edits the log."""

    list_display = ["at", "actor_label", "action", "property", "target", "details"]
    list_filter = ["kind", "action"]
    search_fields = ["=target", "action"]

    def _readable(self, request: HttpRequest) -> tuple[QuerySet, QuerySet]:
        return (
            properties_for(request.user, "view_privacy_audit"),
            properties_for(request.user, "view_config_audit"),
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        if getattr(request.user, "is_superuser", False):
            return AuditEntry.objects.all()
        return selectors.audit_entries_for(*self._readable(request))

    def has_module_permission(self, request: HttpRequest) -> bool:
        privacy, config = self._readable(request)
        return bool(request.user.is_staff) and (privacy.exists() or config.exists())

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if not request.user.is_staff:
            return False
        if obj is None:
            return self.has_module_permission(request)
        return self.get_queryset(request).filter(pk=obj.pk).exists()

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if not self.get_queryset(request).filter(pk=unquote(object_id)).exists():
            raise Http404("No such entry among your properties.")
        return super().change_view(request, object_id, form_url, extra_context)


# Retention ------------------------------------------------------------------------------


class RetentionPolicyForm(forms.ModelForm):
    class Meta:
        model = RetentionPolicy
        fields = ["property", *RETENTION_FIELDS.values()]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.instance.pk:
            for kind, name in RETENTION_FIELDS.items():
                self.fields[name].initial = selectors.RETENTION_DEFAULTS[kind]


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(PrivacyScopedAdmin):
    form = RetentionPolicyForm
    list_display = ["property", *RETENTION_FIELDS.values(), "updated_at", "updated_by"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ["property"] if obj is not None else []

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        prop_id = obj.property_id
        if not has_property_perm(request.user, PRIVACY, prop_id):
            raise Http404("No such property among yours.")
        policy = retention_policy_set(
            property_id=prop_id,
            periods={kind: form.cleaned_data[name] for kind, name in RETENTION_FIELDS.items()},
            user=request.user,
        )
        obj.pk = policy.pk


@admin.register(RetentionRun)
class RetentionRunAdmin(ReadOnlyMixin, PrivacyScopedAdmin):
    list_display = ["started_at", "property", "total", "finished_at", "removed"]
