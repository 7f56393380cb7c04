"""Data-subject requests: receipt, deadlines, status changes. Each change writes its audit row.

Deadlines are calendar arithmetic on the day of receipt (UTC):
- GDPR: one month (the same day next month, or that month's last day when it has
  no such day: 31 January → 28/29 February); extended, three months from receipt
  (the month plus the two further months Art. 12(3) allows).
- CCPA: 45 days; extended, 90 days from receipt (45 + 45).
"""

from datetime import date, datetime, timedelta
from functools import partial
from typing import Any

from dateutil.relativedelta import relativedelta
from django.db import transaction
from django.utils import timezone

from ..exceptions import DomainError, problem
from ..hashing import visitor_key
from ..holdings import has_property_perm, property_model
from ..models import (
    AccessExport,
    ConsentMethod,
    ExportStatus,
    PrivacyRequest,
    Regulation,
    RequestKind,
    RequestSource,
    RequestStatus,
)
from ..selectors import request_open_for
from .audit import audit_record
from .consent import consent_opt_out

MAX_VISITOR_ID = 128
MAX_CONTACT = 254
# How far back an officer may date a request received by e-mail.
MAX_BACKDATE = timedelta(days=366)

S = RequestStatus
# Where each status may go by an officer's hand. Completion is the work's own step.
TRANSITIONS: dict[str, set[str]] = {
    S.RECEIVED: {S.IDENTITY_VERIFIED, S.EXTENDED, S.DENIED},
    S.IDENTITY_VERIFIED: {S.IN_PROGRESS, S.EXTENDED, S.DENIED},
    S.IN_PROGRESS: {S.EXTENDED, S.DENIED, S.COMPLETED},
    S.EXTENDED: {S.IDENTITY_VERIFIED, S.IN_PROGRESS, S.DENIED, S.COMPLETED},
    S.COMPLETED: set(),
    S.DENIED: set(),
}


def due_date_for(regulation: str, received: date, *, extended: bool = False) -> date:
    if regulation == Regulation.GDPR:
        return received + relativedelta(months=3 if extended else 1)
    if regulation == Regulation.CCPA:
        return received + timedelta(days=90 if extended else 45)
    raise DomainError("invalid_regulation", f"Unknown regulation {regulation!r}.")


def _target(request: PrivacyRequest) -> str:
    return f"privacy_request:{request.pk}"


def _clean_visitor_id(visitor_id: Any) -> str:
    value = visitor_id.strip() if isinstance(visitor_id, str) else ""
    if not value or len(value) > MAX_VISITOR_ID:
        message = f"A visitor id has 1 to {MAX_VISITOR_ID} characters."
        raise DomainError(
            "invalid_visitor_id",
            message,
            details={"errors": [problem("visitor_id", "invalid", message)]},
        )
    return value


def privacy_request_check(*, property_id: int, kind: str, visitor_id: str) -> None:
    """Refuse what no request could be made of (also used by the officer's form).

    An access request about a visitor nothing is held about is still a request: it is
    recorded and answered (the export says nothing is held), within the same deadline."""
    if kind not in RequestKind.values:
        raise DomainError("invalid_kind", f"Unknown request kind {kind!r}.")
    _clean_visitor_id(visitor_id)


@transaction.atomic
def privacy_request_submit(
    *,
    property_id: int,
    kind: str,
    regulation: str,
    visitor_id: str,
    contact: str = "",
    source: str = RequestSource.API,
    user: Any = None,
    label: str | None = None,
    received_at: datetime | None = None,
    note: str = "",
) -> tuple[PrivacyRequest, bool]:
    """Record a request, or merge it into the open one of the same visitor and kind.

    Returns the request and whether it was merged. An opt-out needs no identity
    check (it can only reduce processing): it is applied on receipt and completed.
    """
    if regulation not in Regulation.values:
        raise DomainError("invalid_regulation", f"Unknown regulation {regulation!r}.")
    if len(contact or "") > MAX_CONTACT:
        message = f"A contact has at most {MAX_CONTACT} characters."
        raise DomainError(
            "invalid_contact", message, details={"errors": [problem("contact", "invalid", message)]}
        )
    vid = _clean_visitor_id(visitor_id)
    privacy_request_check(property_id=property_id, kind=kind, visitor_id=vid)
    now = timezone.now()
    received = received_at or now
    if received > now + timedelta(minutes=5) or received < now - MAX_BACKDATE:
        raise DomainError(
            "invalid_received_at", "A request is received today or within the last year."
        )
    # One submission at a time per property, so two identical ones cannot both open.
    property_model()._default_manager.select_for_update().filter(pk=property_id).first()
    existing = request_open_for(property_id, vid, kind)
    if existing is not None:
        audit_record(
            action="request.merged",
            property_id=property_id,
            target=_target(existing),
            details={"source": source},
            user=user,
            label=label,
        )
        return existing, True
    request = PrivacyRequest.objects.create(
        property_id=property_id,
        kind=kind,
        regulation=regulation,
        visitor_key=visitor_key(property_id, vid),
        visitor_id=vid,
        contact=(contact or "").strip(),
        source=source,
        received_at=received,
        due_date=due_date_for(regulation, received.date()),
        note=note,
    )
    audit_record(
        action="request.received",
        property_id=property_id,
        target=_target(request),
        details={
            "kind": kind,
            "regulation": regulation,
            "source": source,
            "due_date": request.due_date.isoformat(),
        },
        user=user,
        label=label,
    )
    if kind == RequestKind.OPT_OUT:
        method = ConsentMethod.OFFICER if source == RequestSource.OFFICER else ConsentMethod.API
        consent_opt_out(property_id=property_id, visitor_id=vid, method=method)
        _set_status(request, S.COMPLETED, user=user, label=label, details={"applied": method})
    return request, False


def _locked(request: PrivacyRequest) -> PrivacyRequest:
    return PrivacyRequest.objects.select_for_update().get(pk=request.pk)


def _set_status(
    request: PrivacyRequest,
    to: str,
    *,
    user: Any = None,
    label: str | None = None,
    details: dict[str, Any] | None = None,
    fields: dict[str, Any] | None = None,
) -> PrivacyRequest:
    """Move to ``to`` and audit it. Closing clears the raw visitor id (the work is done)."""
    before = request.status
    now = timezone.now()
    request.status = to
    for name, value in (fields or {}).items():
        setattr(request, name, value)
    if to == S.COMPLETED:
        request.completed_at = now
    if to in (S.COMPLETED, S.DENIED):
        request.visitor_id = ""
    request.save()
    audit_record(
        action="request.status_changed",
        property_id=request.property_id,
        target=_target(request),
        details={"from": before, "to": to, **(details or {})},
        user=user,
        label=label,
    )
    return request


def _move(request: PrivacyRequest, to: str) -> PrivacyRequest:
    locked = _locked(request)
    if to not in TRANSITIONS[locked.status]:
        raise DomainError(
            "invalid_transition",
            f"A request that is {locked.get_status_display().lower()} cannot become "
            f"{RequestStatus(to).label.lower()}.",
            details={"from": locked.status, "to": to},
            status=409,
        )
    return locked


@transaction.atomic
def request_verify_identity(*, request: PrivacyRequest, user: Any) -> PrivacyRequest:
    locked = _move(request, S.IDENTITY_VERIFIED)
    return _set_status(
        locked, S.IDENTITY_VERIFIED, user=user, fields={"identity_verified_at": timezone.now()}
    )


@transaction.atomic
def request_start(*, request: PrivacyRequest, user: Any) -> PrivacyRequest:
    """Start the work: the export or erasure runs in a Celery task after commit."""
    locked = _move(request, S.IN_PROGRESS)
    if locked.identity_verified_at is None:
        raise DomainError(
            "identity_not_verified", "Verify the requester's identity first.", status=409
        )
    locked = _set_status(locked, S.IN_PROGRESS, user=user)
    _enqueue(locked)
    return locked


@transaction.atomic
def request_rerun(*, request: PrivacyRequest, user: Any) -> PrivacyRequest:
    """Run an interrupted export or erasure again; its steps skip what is already done."""
    locked = _locked(request)
    if locked.status not in (S.IN_PROGRESS, S.EXTENDED) or locked.identity_verified_at is None:
        raise DomainError(
            "invalid_transition", "Only a started, open request can be run again.", status=409
        )
    audit_record(
        action="request.rerun", property_id=locked.property_id, target=_target(locked), user=user
    )
    _enqueue(locked)
    return locked


def _enqueue(request: PrivacyRequest) -> None:
    from .. import tasks  # noqa: PLC0415  a service enqueues its own sub-package's task (HackSoft's back-edge)

    if request.kind == RequestKind.ACCESS:
        export, _ = AccessExport.objects.get_or_create(request=request)
        if export.status != ExportStatus.READY:
            AccessExport.objects.filter(pk=export.pk).update(
                status=ExportStatus.PENDING, error="", stores_done=0
            )
        transaction.on_commit(partial(tasks.access_export_task.delay, request.pk))
    elif request.kind == RequestKind.ERASURE:
        transaction.on_commit(partial(tasks.erasure_task.delay, request.pk))


@transaction.atomic
def request_extend(*, request: PrivacyRequest, user: Any, reason: str) -> PrivacyRequest:
    locked = _move(request, S.EXTENDED)
    if not (reason or "").strip():
        raise DomainError("reason_required", "An extension records its reason.")
    if locked.extended_at is not None:
        raise DomainError("already_extended", "A request is extended at most once.", status=409)
    if timezone.now().date() > locked.due_date:
        raise DomainError(
            "extension_too_late",
            "An extension is decided (and told to the requester) before the deadline passes.",
            status=409,
        )
    new_due = due_date_for(locked.regulation, locked.received_at.date(), extended=True)
    return _set_status(
        locked,
        S.EXTENDED,
        user=user,
        details={
            "reason": reason.strip(),
            "due_date_before": locked.due_date.isoformat(),
            "due_date": new_due.isoformat(),
        },
        fields={
            "extended_at": timezone.now(),
            "extension_reason": reason.strip(),
            "due_date": new_due,
        },
    )


@transaction.atomic
def request_deny(*, request: PrivacyRequest, user: Any, reason: str) -> PrivacyRequest:
    locked = _move(request, S.DENIED)
    if not (reason or "").strip():
        raise DomainError("reason_required", "A denial records its reason.")
    return _set_status(
        locked,
        S.DENIED,
        user=user,
        details={"reason": reason.strip()},
        fields={"denial_reason": reason.strip()},
    )


@transaction.atomic
def request_assign(*, request: PrivacyRequest, user: Any, assignee: Any) -> PrivacyRequest:
    locked = _locked(request)
    if not locked.is_open:
        raise DomainError("request_closed", "A closed request is not reassigned.", status=409)
    if assignee is not None and not has_property_perm(
        assignee, "manage_privacy", locked.property_id
    ):
        raise DomainError(
            "invalid_assignee", "The assignee must be a privacy officer of this property."
        )
    before = locked.assignee.get_username() if locked.assignee else None
    locked.assignee = assignee
    locked.save(update_fields=["assignee"])
    audit_record(
        action="request.assigned",
        property_id=locked.property_id,
        target=_target(locked),
        details={"from": before, "to": assignee.get_username() if assignee else None},
        user=user,
    )
    return locked


def request_complete(*, request: PrivacyRequest, details: dict[str, Any]) -> PrivacyRequest:
    """The work's last step (inside its transaction): completed, by the system."""
    locked = _locked(request)
    if locked.status == S.COMPLETED:
        return locked
    return _set_status(locked, S.COMPLETED, details=details)


ACTIONS = {
    "verify": "Identity verified",
    "start": "Start the work (export or erasure)",
    "rerun": "Run the interrupted work again",
    "extend": "Extend the deadline (reason required)",
    "deny": "Deny (reason required)",
}


def request_act(
    *, request: PrivacyRequest, action: str, user: Any, reason: str = ""
) -> PrivacyRequest:
    """One entry for the officer's form: apply ``action`` (a key of ACTIONS)."""
    if action == "verify":
        return request_verify_identity(request=request, user=user)
    if action == "start":
        return request_start(request=request, user=user)
    if action == "rerun":
        return request_rerun(request=request, user=user)
    if action == "extend":
        return request_extend(request=request, user=user, reason=reason)
    if action == "deny":
        return request_deny(request=request, user=user, reason=reason)
    raise DomainError("invalid_action", f"Unknown action {action!r}.")
