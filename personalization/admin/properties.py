import ipaddress
import json
import re
import zoneinfo
from functools import partial
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from consent.tenancy import PropertyScopedAdmin, has_property_perm, properties_for

from .. import event_schemas, visitor_state
from ..models import ApiKey, EventType, Property, QuarantinedEvent, Visitor
from ..services.audit import AuditAction
from ..services.ingest import quarantine_replay
from ..services.keys import api_key_issue, api_key_revoke
from ..services.properties import property_setup
from ..tasks import replay_quarantine_task

# Up to this many events replay while the admin waits; more go to a Celery task.
INLINE_REPLAY_LIMIT = 1000

admin.site.site_header = "Micro-adjustments"
admin.site.site_title = "Micro-adjustments"
admin.site.index_title = "Properties, events and consent"


_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ORIGIN_FORM = "scheme://host[:port], e.g. https://shop.example"


def origin_parse(text: str) -> str:
    """``text`` as the origin a browser sends (``scheme://host[:port]``, lower case, no
    default port), or a ValueError saying why it is not an origin."""
    raw = text[:-1] if text.endswith("/") and not text.endswith("//") else text
    if "*" in raw:
        raise ValueError("wildcards are not supported; list each origin on its own line")
    scheme, sep, rest = raw.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS:
        raise ValueError(f"it must start with https:// or http:// ({_ORIGIN_FORM})")
    if any(c in rest for c in "/?#"):
        raise ValueError(f"it has a path, query or fragment; keep only {_ORIGIN_FORM}")
    if not rest or "@" in rest or any(c.isspace() for c in rest):
        raise ValueError(f"write {_ORIGIN_FORM}")
    if rest.startswith("["):  # an IPv6 address, [::1]:8000
        host, _, after = rest.partition("]")
        host += "]"
        if after and not after.startswith(":"):
            raise ValueError(f"write {_ORIGIN_FORM}")
        port_text = after[1:]
        try:
            host = f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            raise ValueError(f"{host} is not an IPv6 address") from None
    else:
        host, colon, port_text = rest.partition(":")
        try:
            host = host.lower().encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"“{host}” is not a host name") from None
        if len(host) > 253 or not all(_HOST_LABEL.match(label) for label in host.split(".")):
            raise ValueError(f"“{host}” is not a host name")
        after = colon + port_text
    port = None
    if after:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError("the port must be a number from 1 to 65535")
        port = int(port_text)
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"  # browsers leave the default port out of Origin
    return f"{scheme}://{host}:{port}"


class OriginsField(forms.Field):
    """Allowed origins typed one per line; each line is checked on its own."""

    widget = forms.Textarea(attrs={"rows": 4, "cols": 60, "placeholder": "https://shop.example"})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return "\n".join(str(v) for v in value)
        return value

    def to_python(self, value: Any) -> list[str]:
        if isinstance(value, list):  # the stored value, when comparing for changes
            return value
        origins: list[str] = []
        errors: list[forms.ValidationError] = []
        for number, line in enumerate(str(value or "").splitlines(), 1):
            text = line.strip()
            if not text:
                continue
            try:
                origin = origin_parse(text)
            except ValueError as exc:
                message = f"Line {number}: “{text}” is not an origin: {exc}."
                errors.append(forms.ValidationError(message))
                continue
            if origin not in origins:
                origins.append(origin)
        if errors:
            raise forms.ValidationError(errors)
        return origins


class PropertyForm(forms.ModelForm):
    allowed_origins = OriginsField(
        required=False,
        label="Allowed origins",
        help_text="One per line, as the browser sends it: scheme://host[:port], no path "
        "(https://shop.example, http://localhost:8000). A publishable key is refused from "
        "other origins; empty: from none.",
    )

    class Meta:
        model = Property
        fields = ["name", "slug", "allowed_origins", "timezone", "retention_days"]

    def clean_timezone(self) -> str:
        name = self.cleaned_data["timezone"]
        if name not in zoneinfo.available_timezones():
            raise forms.ValidationError(f"Unknown time zone {name!r} (use e.g. Europe/Paris).")
        return name

    def clean_retention_days(self) -> int:
        days = self.cleaned_data["retention_days"]
        if not 1 <= days <= 3650:
            raise forms.ValidationError("Retention is between 1 and 3650 days.")
        return days


@admin.register(Property)
class PropertyAdmin(PropertyScopedAdmin):
    form = PropertyForm
    view_perm = "view_property"
    change_perm = "change_configuration"
    property_lookup = "pk"
    list_display = ["name", "slug", "timezone", "retention_days", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}

    def _property_id(self, obj: Any) -> int | None:
        return obj.pk

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return properties_for(request.user, self.view_perm)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_staff and request.user.has_perm("personalization.add_property"))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            property_setup(prop=obj, user=request.user)
            messages.info(
                request,
                "Property created with consent policy v1. Issue its API keys under 'API keys'.",
            )


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["property", "kind", "name"]


@admin.register(ApiKey)
class ApiKeyAdmin(PropertyScopedAdmin):
    form = ApiKeyForm
    view_perm = "manage_keys"
    change_perm = "manage_keys"
    list_display = ["prefix", "kind", "name", "property", "created_at", "last_used_at", "status"]
    list_filter = ["kind"]
    actions = ["revoke_keys"]

    @admin.display(description="status")
    def status(self, obj: ApiKey) -> str:
        return "revoked" if obj.revoked_at else "active"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return []
        return ["property", "kind", "name", "prefix", "created_at", "last_used_at", "revoked_at"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_readonly_fields(request, obj) or ["property", "kind", "name"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Keys are never edited; the change view is a read-only page.
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        key, raw = api_key_issue(
            prop=form.cleaned_data["property"],
            kind=form.cleaned_data["kind"],
            name=form.cleaned_data["name"],
            user=request.user,
        )
        obj.pk = key.pk
        messages.warning(
            request, format_html("New key, shown only this once: <code>{}</code>", raw)
        )

    def message_user(self, request: HttpRequest, message: Any, *args: Any, **kwargs: Any) -> None:
        if "was added successfully" in str(message):
            return
        super().message_user(request, message, *args, **kwargs)

    @admin.action(description="Revoke the selected keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = 0
        for key in queryset:
            if has_property_perm(request.user, "manage_keys", key.property_id):
                api_key_revoke(key=key, user=request.user)
                count += 1
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)


class EventTypeForm(forms.ModelForm):
    class Meta:
        model = EventType
        fields = ["property", "name", "description", "purpose", "schema"]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if not event_schemas.type_name_valid(name):
            raise forms.ValidationError(
                "A type name is a lowercase letter, then up to 63 lowercase letters, digits or "
                "underscores (e.g. video_play): events name their type that way."
            )
        if name in event_schemas.BUILT_IN_TYPES:
            raise forms.ValidationError(f"{name!r} is a built-in type; choose another name.")
        return name

    def clean_schema(self) -> Any:
        schema = self.cleaned_data["schema"]
        try:
            event_schemas.schema_check(schema)
        except event_schemas.SchemaDefinitionError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return schema


@admin.register(EventType)
class EventTypeAdmin(PropertyScopedAdmin):
    form = EventTypeForm
    view_perm = "view_quarantine"
    change_perm = "manage_quarantine"
    list_display = ["name", "property", "purpose", "version", "updated_at"]
    list_filter = ["purpose"]
    search_fields = ["name"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change and "schema" in form.changed_data:
            obj.version += 1  # every process compiles the new schema on its next batch
        super().save_model(request, obj, form, change)


class ScopedPropertyFilter(admin.SimpleListFilter):
    title = "property"
    parameter_name = "property"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        perm = getattr(model_admin, "view_perm", "view_property")
        return [(str(p.pk), p.name) for p in properties_for(request.user, perm)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(property_id=self.value())
        return queryset


@admin.register(QuarantinedEvent)
class QuarantinedEventAdmin(PropertyScopedAdmin):
    view_perm = "view_quarantine"
    change_perm = "manage_quarantine"
    list_display = [
        "event_type",
        "error_path",
        "error_message",
        "property",
        "status",
        "received_at",
        "replay_attempts",
    ]
    list_filter = ["status", "event_type", ScopedPropertyFilter]
    search_fields = ["event_id", "event_type"]
    readonly_fields = (
        "property",
        "event_id",
        "event_type",
        "visitor_id",
        "status",
        "received_at",
        "replayed_at",
        "replay_attempts",
        "errors_list",
        "payload_pretty",
    )
    fields = readonly_fields
    actions = ["replay"]

    @admin.display(description="error path")
    def error_path(self, obj: QuarantinedEvent) -> str:
        return obj.errors[0].get("path", "") if obj.errors else ""

    @admin.display(description="error")
    def error_message(self, obj: QuarantinedEvent) -> str:
        return obj.errors[0].get("message", "") if obj.errors else ""

    @admin.display(description="errors")
    def errors_list(self, obj: QuarantinedEvent) -> str:
        return format_html_join(
            "",
            "<div><code>{}</code> {}</div>",
            ((e.get("path") or "(event)", e.get("message", "")) for e in obj.errors),
        )

    @admin.display(description="payload")
    def payload_pretty(self, obj: QuarantinedEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The payload is evidence: nobody edits it. Replay is the only action.
        return False

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return properties_for(request.user, "manage_quarantine").exists()

    @admin.action(description="Replay the selected events", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[QuarantinedEvent]) -> None:
        allowed = set(
            properties_for(request.user, "manage_quarantine").values_list("pk", flat=True)
        )
        by_property: dict[int, list[int]] = {}
        for pk, property_id in queryset.values_list("pk", "property_id"):
            if property_id in allowed:
                by_property.setdefault(property_id, []).append(pk)
        for property_id, ids in by_property.items():
            self.audit_on(
                request,
                property_id,
                AuditAction.QUARANTINE_REPLAYED,
                f"personalization.quarantinedevent:{len(ids)} events",
                {"events": len(ids), "first_ids": ids[:20]},
            )
        if sum(len(ids) for ids in by_property.values()) > INLINE_REPLAY_LIMIT:
            for property_id, ids in by_property.items():
                transaction.on_commit(partial(replay_quarantine_task.delay, property_id, ids))
            self.message_user(
                request,
                "Replay queued in the background; refresh this list to follow its progress "
                "(replayed events leave the 'quarantined' filter).",
                messages.INFO,
            )
            return
        totals = {"stored": 0, "duplicates": 0, "still_quarantined": 0, "dropped_no_consent": 0}
        for property_id, ids in by_property.items():
            result = quarantine_replay(prop=Property.objects.get(pk=property_id), ids=ids)
            for name in totals:
                totals[name] += getattr(result, name)
        self.message_user(
            request,
            "Replayed: {stored} stored, {duplicates} already stored, {still_quarantined} still "
            "quarantined, {dropped_no_consent} dropped for lack of consent.".format(**totals),
            messages.SUCCESS if not totals["still_quarantined"] else messages.WARNING,
        )


@admin.register(Visitor)
class VisitorAdmin(PropertyScopedAdmin):
    view_perm = "view_dashboards"
    change_perm = "change_configuration"
    list_display = ["visitor_id", "property", "first_seen", "last_seen"]
    list_filter = [ScopedPropertyFilter]
    search_fields = ["=visitor_id"]
    readonly_fields = (
        "property",
        "visitor_id",
        "first_seen",
        "last_seen",
        "live_signals",
    )
    fields = readonly_fields

    @admin.display(description="signals")
    def live_signals(self, obj: Visitor) -> str:
        session = obj.sessions.order_by("-started_at").first()
        values = visitor_state.signals_for(
            obj.state, session.state if session else None, timezone.now()
        )
        rows = [
            (f"{scope}.{name}", json.dumps(value))
            for scope, group in values.items()
            for name, value in group.items()
        ]
        return format_html(
            "<table>{}</table>",
            format_html_join("", "<tr><td><code>{}</code></td><td>{}</td></tr>", rows),
        )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
