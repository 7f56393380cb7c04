"""Staff pages of the privacy officer beyond the admin: consent histories and downloads.

Visitor ids travel in POST bodies, never in URLs, so they stay out of access logs.
"""

import csv
import io
import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render

from . import selectors
from .csv_safe import csv_cell
from .exceptions import DomainError
from .hashing import visitor_key
from .models import AccessExport, ConsentRecord
from .services.access import export_open
from .services.audit import audit_record
from .services.consent import consent_record_by_officer
from .tenancy import has_property_perm, properties_for

PRIVACY = "manage_privacy"


def officer_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Staff holding the privacy role on at least one property; everyone else gets 403."""

    @staff_member_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not properties_for(request.user, PRIVACY).exists():
            raise PermissionDenied("You are not a privacy officer of any property.")
        return view(request, *args, **kwargs)

    return wrapped


class VisitorForm(forms.Form):
    property: forms.ModelChoiceField = forms.ModelChoiceField(queryset=None)  # type: ignore[arg-type]
    visitor_id = forms.CharField(max_length=128, strip=True)

    def __init__(self, user: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["property"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = properties_for(user, PRIVACY)


class RecordForm(forms.Form):
    policy_version = forms.IntegerField(min_value=1)
    granted = forms.MultipleChoiceField(required=False, choices=[])

    def __init__(self, purpose_keys: list[str], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["granted"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = [(k, k) for k in purpose_keys]
        field.widget = forms.CheckboxSelectMultiple(choices=field.choices)


def _rows(records: list[ConsentRecord]) -> list[dict[str, Any]]:
    return [
        {
            "id": r.pk,
            "created_at": r.created_at,
            "policy_version": r.policy.version,
            "method": r.method,
            "granted": r.granted,
            "refused": r.refused,
            "network": r.network,
            "visitor_key": r.visitor_key,
        }
        for r in records
    ]


def _export(rows: list[dict[str, Any]], fmt: str, name: str) -> HttpResponse:
    if fmt == "json":
        body = json.dumps({"records": rows}, cls=DjangoJSONEncoder, indent=2)
        response = HttpResponse(body, content_type="application/json")
    else:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writerow({k: csv_cell(k) for k in rows[0]})
        for row in rows:
            writer.writerow(
                {k: csv_cell(" ".join(v) if isinstance(v, list) else v) for k, v in row.items()}
            )
        response = HttpResponse(out.getvalue(), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return response


@officer_required
def consent_history(request: HttpRequest) -> HttpResponse:
    """Look a visitor up by id (hashed here, never stored), read and export their consent
    history, and record a consent they gave outside the storefront (method officer)."""
    form = VisitorForm(request.user, request.POST or None)
    context: dict[str, Any] = {"form": form, "title": "Consent history"}
    if request.method != "POST" or not form.is_valid():
        if request.POST.get("property") and "property" in form.errors:
            raise Http404("No such property among yours.")
        return render(request, "consent/consent_history.html", context)
    prop = form.cleaned_data["property"]
    vid = form.cleaned_data["visitor_id"]
    op = request.POST.get("op", "show")
    policy = selectors.policy_current(prop.pk)
    record_form = RecordForm(
        policy.purpose_keys if policy else [],
        request.POST if op == "record" else None,
        initial={"policy_version": policy.version if policy else None},
    )
    if op == "record" and record_form.is_valid():
        version = record_form.cleaned_data["policy_version"]
        target = selectors.policy_get(prop.pk, version)
        keys = target.purpose_keys if target else []
        granted = set(record_form.cleaned_data["granted"])
        try:
            consent_record_by_officer(
                property_id=prop.pk,
                visitor_id=vid,
                policy_version=version,
                purposes={**{k: k in granted for k in keys}, **dict.fromkeys(granted, True)},
                user=request.user,
            )
            context["recorded"] = True
        except DomainError as exc:
            context["error"] = exc.message
    records = selectors.consent_history(prop.pk, vid)
    key = visitor_key(prop.pk, vid)
    context.update(
        {"prop": prop, "records": records, "record_form": record_form, "visitor_key": key}
    )
    if not records:
        context["empty"] = True
        return render(request, "consent/consent_history.html", context, status=404)
    if op in ("csv", "json"):
        audit_record(
            action="consent_history.exported",
            property_id=prop.pk,
            target=f"visitor:{key}",
            details={"format": op, "records": len(records)},
            user=request.user,
        )
        return _export(_rows(records), op, f"consent-history-{prop.slug}-{key[:12]}")
    audit_record(
        action="consent_history.viewed",
        property_id=prop.pk,
        target=f"visitor:{key}",
        details={"records": len(records)},
        user=request.user,
    )
    context["effective"] = selectors.consent_effective(prop.pk, vid)
    return render(request, "consent/consent_history.html", context)


@officer_required
def export_download(request: HttpRequest, token: str) -> HttpResponseBase:
    """An access export's archive, for officers of its property only, until it expires."""
    export = AccessExport.objects.select_related("request").filter(token=token).first()
    if export is None or not has_property_perm(request.user, PRIVACY, export.request.property_id):
        raise Http404("No such export among your properties.")
    try:
        path = export_open(export=export, user=request.user)
    except DomainError as exc:
        return HttpResponse(exc.message, status=exc.status_code, content_type="text/plain")
    return FileResponse(
        path.open("rb"),
        as_attachment=True,
        filename=f"privacy-export-{export.request.public_id}.zip",
        content_type="application/zip",
    )
