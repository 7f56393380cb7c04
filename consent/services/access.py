"""Access exports: an archive of everything held about a visitor, from every registered store.

The archive is a zip under ``MEDIA_ROOT/PRIVACY_EXPORT_DIR/<property id>/<token>.zip``
(the token is random; no visitor id in any path) holding ``export.json`` (every store,
with its description) and one CSV per store. Progress is saved after each store, so
the officer sees it move. It is downloaded by officers of the property (signed in) or by the
property's secret key through a signed link of an hour (the API), until it expires
(``PRIVACY_EXPORT_TTL_HOURS``); expired and erased archives are deleted from disk.
"""

import csv
import io
import json
import os
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from .. import registry
from ..csv_safe import csv_cell
from ..exceptions import DomainError
from ..faults import fault_pause
from ..hashing import visitor_key
from ..models import AccessExport, ExportStatus, PrivacyRequest, RequestKind, RequestStatus
from .audit import audit_record
from .requests import request_complete

RUNNABLE = (RequestStatus.IN_PROGRESS, RequestStatus.EXTENDED)
# The API's download link (for the property's secret key) is signed and short-lived: it
# travels in URLs, which end up in logs.
EXPORT_LINK_SECONDS = 3600
EXPORT_LINK_SALT = "consent.access-export.link"


def export_root() -> Path:
    return Path(settings.MEDIA_ROOT) / settings.PRIVACY_EXPORT_DIR


def export_path(export: AccessExport, property_id: int) -> Path:
    """Derived from the token, so a half-written archive can be found and removed too."""
    return export_root() / str(property_id) / f"{export.token}.zip"


def _part(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _plain(value: Any) -> Any:
    """A JSON-ready value (datetimes, UUIDs and decimals as strings)."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return csv_cell(value)


def _csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    writer = csv.DictWriter(out, fieldnames=columns or ["(no rows)"])
    writer.writerow({c: csv_cell(c) for c in columns or ["(no rows)"]})
    for row in rows:
        writer.writerow({c: _cell(row.get(c)) for c in columns})
    return out.getvalue()


def _progress(export: AccessExport, **fields: Any) -> None:
    AccessExport.objects.filter(pk=export.pk).update(**fields)
    for name, value in fields.items():
        setattr(export, name, value)


def export_build(*, request_id: int) -> AccessExport:
    """Build (or rebuild) the archive of a started access request, then complete it.

    Idempotent: a ready archive is returned as is. The file is written under a
    temporary name and renamed, so a killed run leaves no half archive behind.
    """
    request = PrivacyRequest.objects.select_related("property").get(pk=request_id)
    if request.kind != RequestKind.ACCESS:
        raise DomainError("invalid_kind", "Not an access request.")
    export, _ = AccessExport.objects.get_or_create(request=request)
    if export.status == ExportStatus.READY or request.status == RequestStatus.COMPLETED:
        return export
    if request.status not in RUNNABLE or not request.visitor_id:
        raise DomainError("not_started", "Start the request before building its export.")
    stores = [s for s in registry.stores() if s.export]
    _progress(
        export, status=ExportStatus.RUNNING, stores_total=len(stores), stores_done=0, error=""
    )
    pid, vid = request.property_id, request.visitor_id
    final = export_path(export, pid)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = _part(final)
    document: dict[str, Any] = {
        "property": {"id": pid, "name": str(request.property)},
        "visitor_id": vid,
        "request": str(request.public_id),
        "generated_at": timezone.now().isoformat(),
        "stores": {},
    }
    total_rows = 0
    try:
        with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for done, store in enumerate(stores, start=1):
                rows = [_plain(row) for row in store.rows_for_export(pid, vid)]
                total_rows += len(rows)
                document["stores"][store.label] = {
                    "description": store.description,
                    "rows": rows,
                }
                archive.writestr(f"{store.label}.csv", _csv(rows))
                _progress(export, stores_done=done)
                fault_pause()
            archive.writestr(
                "export.json",
                json.dumps(document, ensure_ascii=False, indent=2, cls=DjangoJSONEncoder),
            )
            archive.writestr("README.txt", _readme(document))
        os.chmod(temp, 0o600)
        os.replace(temp, final)
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        _progress(export, status=ExportStatus.FAILED, error=str(exc)[:500])
        raise
    now = timezone.now()
    with transaction.atomic():
        _progress(
            export,
            status=ExportStatus.READY,
            file=str(final.relative_to(settings.MEDIA_ROOT)),
            size=final.stat().st_size,
            rows=total_rows,
            finished_at=now,
            expires_at=now + timedelta(hours=settings.PRIVACY_EXPORT_TTL_HOURS),
        )
        request_complete(request=request, details={"export_rows": total_rows})
    return export


REQUESTS_STORE = "consent.privacy_requests"


def _readme(document: dict[str, Any]) -> str:
    lines = [
        "Everything held about one visitor of one property.",
        "",
        "export.json holds every store with its rows; each <store>.csv holds the same rows.",
        "",
    ]
    held = [
        store["rows"]
        for label, store in document["stores"].items()
        if label != REQUESTS_STORE  # the person's own requests, this one included
    ]
    if not any(held):
        lines += [
            "Nothing is held about this visitor id on this property (beyond the data-subject "
            "requests made about it).",
            "",
        ]
    for label, store in document["stores"].items():
        lines.append(f"{label}: {len(store['rows'])} rows. {store['description']}")
    return "\n".join(lines) + "\n"


def export_open(
    *, export: AccessExport, user: Any, now: datetime | None = None, label: str | None = None
) -> Path:
    """The archive's path for a download by ``user`` (already checked as an officer of its
    property) or by the API client ``label`` names, audited. Refuses an archive that is not
    ready or has expired."""
    now = now or timezone.now()
    path = export_path(export, export.request.property_id)
    if export.status != ExportStatus.READY or not path.exists():
        raise DomainError("export_unavailable", "This export is not available.", status=404)
    if export.expires_at is not None and export.expires_at <= now:
        raise DomainError(
            "export_expired", "This download link has expired; make a new request.", status=410
        )
    audit_record(
        action="export.downloaded",
        property_id=export.request.property_id,
        target=f"privacy_request:{export.request_id}",
        details={"size": export.size},
        user=user,
        label=label,
    )
    return path


def export_link_token(
    *, property_id: int, export_token: str, expires_at: datetime | None, now: datetime | None = None
) -> str:
    """The signed part of an export's download link for the storefront's server (the API):
    names the property and the export, and ends within ``EXPORT_LINK_SECONDS`` (never after
    the archive itself). Reading the request again gives a fresh one."""
    now = now or timezone.now()
    until = now + timedelta(seconds=EXPORT_LINK_SECONDS)
    if expires_at is not None:
        until = min(until, expires_at)
    payload = {"p": property_id, "e": export_token, "x": int(until.timestamp())}
    return signing.dumps(payload, salt=EXPORT_LINK_SALT)


def export_open_by_link(
    *, property_id: int, link_token: str, label: str, now: datetime | None = None
) -> tuple[AccessExport, Path]:
    """The archive a signed link names, for a client of ``property_id`` (a link of another
    property, or tampered with, names nothing), audited under ``label``; refused once the
    link or the archive has expired (410)."""
    now = now or timezone.now()
    try:
        payload = signing.loads(link_token, salt=EXPORT_LINK_SALT)
    except signing.BadSignature:
        payload = None
    if not isinstance(payload, dict) or payload.get("p") != property_id:
        raise DomainError("export_not_found", "No such export for this property.", status=404)
    if now.timestamp() >= payload.get("x", 0):
        raise DomainError(
            "export_link_expired",
            "This download link has expired; read the request again for a fresh one.",
            status=410,
        )
    export = (
        AccessExport.objects.select_related("request")
        .filter(token=str(payload.get("e")), request__property_id=property_id)
        .first()
    )
    if export is None:
        raise DomainError("export_not_found", "No such export for this property.", status=404)
    return export, export_open(export=export, user=None, now=now, label=label)


def _remove_files(exports: list[AccessExport]) -> int:
    removed = 0
    for export in exports:
        final = export_path(export, export.request.property_id)
        for path in (final, _part(final)):
            if path.exists():
                path.unlink()
                removed += 1
    return removed


def exports_expire(now: datetime | None = None) -> int:
    """Delete the files of expired archives. Idempotent; returns files removed."""
    now = now or timezone.now()
    expired = list(
        AccessExport.objects.filter(status=ExportStatus.READY, expires_at__lte=now)
        .select_related("request")
        .order_by("pk")
    )
    removed = _remove_files(expired)
    AccessExport.objects.filter(pk__in=[e.pk for e in expired]).update(
        status=ExportStatus.EXPIRED, file=""
    )
    return removed


def exports_erase(property_id: int, visitor_id: str) -> dict[str, int]:
    """The exports store's eraser: earlier archives about the visitor leave the disk."""
    exports = list(
        AccessExport.objects.filter(
            request__property_id=property_id,
            request__visitor_key=visitor_key(property_id, visitor_id),
        )
        .exclude(status=ExportStatus.ERASED)
        .select_related("request")
    )
    files = _remove_files(exports)
    n = AccessExport.objects.filter(pk__in=[e.pk for e in exports]).update(
        status=ExportStatus.ERASED, file=""
    )
    return {"files": files, "consent.AccessExport": n}
