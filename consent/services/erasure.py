"""Erasure: remove everything about a visitor from every registered store, with a receipt.

The work is a list of steps recorded on the request (``ErasureStep``):

1. ``suppression_list`` — the visitor's keyed hash joins the suppression list first, so
   events that arrive while (and after) the erasure runs are dropped, and no model is
   trained on the visitor;
2. one step per registered store — caches and files (``cache_keys``, ``extra_erase``), then
   the rows: deleted, anonymised, or kept when the store holds only the keyed hash;
3. ``verification`` — counts what is left in the stores that delete, and deletes again
   anything that slipped in meanwhile.

Every step is idempotent and commits on its own; rows are deleted in batches, each
batch's count committed with it. A run killed half-way is run again: done steps are
skipped, the interrupted one carries on where it stopped, and the receipt's counts
stay complete. The last transaction completes the request, writes the receipt and
clears the raw visitor id and contact from the request.
"""

import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from .. import registry
from ..exceptions import DomainError
from ..faults import fault_pause
from ..hashing import visitor_key
from ..models import (
    CLOSED_STATUSES,
    ErasureStep,
    PrivacyRequest,
    RequestKind,
    RequestStatus,
    StepStatus,
    Suppression,
    SuppressionReason,
)
from .audit import audit_record
from .requests import request_complete

logger = logging.getLogger(__name__)

SUPPRESSION_STEP = "suppression_list"
VERIFICATION_STEP = "verification"
STEP_DESCRIPTIONS = {
    SUPPRESSION_STEP: "The keyed hash joins the suppression list: later events are dropped, "
    "and no model is trained on the visitor.",
    VERIFICATION_STEP: "No store that deletes still holds a row about the visitor.",
}
# What a custom eraser may count besides rows: reported as caches and files.
EXTRA_COUNTS = ("files", "cache_keys")
VERIFY_ROUNDS = 3
LAST_POSITION = 100_000

RUNNABLE = (RequestStatus.IN_PROGRESS, RequestStatus.EXTENDED)
# The request's own bookkeeping: not "data held about the visitor" in the receipt's summary.
WORKFLOW_STORES = {"consent.suppression", "consent.privacy_requests", "consent.access_exports"}


class ErasureIncomplete(Exception):
    """Rows kept arriving during verification; the task retries."""


def _batch_size() -> int:
    return int(getattr(settings, "PRIVACY_ERASE_BATCH", 1000))


def erasure_plan(request: PrivacyRequest) -> list[ErasureStep]:
    """The request's steps, created on the first run; stores registered since are appended."""
    existing = {s.store: s for s in request.steps.all()}
    position = max((s.position for s in existing.values() if s.position < LAST_POSITION), default=0)
    wanted = [SUPPRESSION_STEP] + [s.label for s in registry.stores()]
    for label in wanted:
        if label not in existing:
            position = 0 if label == SUPPRESSION_STEP else position + 1
            existing[label], _ = ErasureStep.objects.get_or_create(
                request=request, store=label, defaults={"position": position}
            )
    if VERIFICATION_STEP not in existing:
        existing[VERIFICATION_STEP], _ = ErasureStep.objects.get_or_create(
            request=request, store=VERIFICATION_STEP, defaults={"position": LAST_POSITION}
        )
    return sorted(existing.values(), key=lambda s: s.position)


def _add_counts(
    step: ErasureStep, counts: dict[str, int], *, extra: int = 0, kept: int = 0
) -> None:
    """Add to the step's counts inside the caller's transaction (the batch it counts)."""
    locked = ErasureStep.objects.select_for_update().get(pk=step.pk)
    for label, n in counts.items():
        if n:
            locked.removed[label] = locked.removed.get(label, 0) + n
    locked.extra += extra
    locked.kept += kept
    locked.save(update_fields=["removed", "extra", "kept"])
    step.removed, step.extra, step.kept = locked.removed, locked.extra, locked.kept


def _mark_done(step: ErasureStep, action: str) -> None:
    ErasureStep.objects.filter(pk=step.pk).update(
        status=StepStatus.DONE, action=action, done_at=timezone.now()
    )
    step.status, step.action = StepStatus.DONE, action


def _delete_batches(qs: QuerySet, step: ErasureStep) -> int:
    model = qs.model
    total = 0
    while True:
        with transaction.atomic():
            pks = list(qs.order_by().values_list("pk", flat=True)[: _batch_size()])
            if not pks:
                return total
            deleted, per_model = model._default_manager.filter(pk__in=pks).delete()
            _add_counts(step, per_model)
            total += deleted
        fault_pause()


def _anonymise_batches(qs: QuerySet, values: dict[str, Any], step: ErasureStep, label: str) -> int:
    model = qs.model
    pks = list(qs.order_by().values_list("pk", flat=True))
    for start in range(0, len(pks), _batch_size()):
        with transaction.atomic():
            n = model._default_manager.filter(pk__in=pks[start : start + _batch_size()]).update(
                **values
            )
            _add_counts(step, {label: n})
    return len(pks)


def _cache_erase(keys: Iterable[str]) -> int:
    keys = list(keys)
    if not keys:
        return 0
    present = len(cache.get_many(keys))
    cache.delete_many(keys)
    return present


def _store_step(request: PrivacyRequest, step: ErasureStep, visitor_id: str) -> None:
    store = registry.store_get(step.store)
    if store is None:
        _mark_done(step, "unregistered")
        return
    pid = request.property_id
    extra = 0
    if store.cache_keys is not None:
        extra += _cache_erase(store.cache_keys(pid, visitor_id))
    if store.extra_erase is not None:
        extra += store.extra_erase(pid, visitor_id)
    if extra:
        with transaction.atomic():
            _add_counts(step, {}, extra=extra)
    mode = store.erase_mode
    qs = store.queryset_for(pid, visitor_id)
    if mode == registry.DELETE:
        _delete_batches(qs, step)
        action = "deleted"
    elif mode == registry.ANONYMISE:
        assert store.anonymise is not None
        values = {k: (v() if callable(v) else v) for k, v in store.anonymise.items()}
        _anonymise_batches(qs, values, step, store.model._meta.label)
        action = "anonymised"
    elif mode == registry.CUSTOM:
        assert store.eraser is not None
        counts = dict(store.eraser(pid, visitor_id))
        outside = sum(counts.pop(name, 0) for name in EXTRA_COUNTS)
        with transaction.atomic():
            _add_counts(step, counts, extra=outside)
        action = "erased"
    else:
        with transaction.atomic():
            _add_counts(step, {}, kept=qs.count())
        action = "kept (keyed hash only)"
    _mark_done(step, action)


def _suppression_step(request: PrivacyRequest, step: ErasureStep) -> None:
    with transaction.atomic():
        _, created = Suppression.objects.get_or_create(
            property_id=request.property_id,
            visitor_key=request.visitor_key,
            defaults={"reason": SuppressionReason.ERASURE, "request": request},
        )
        # An earlier opt-out's entry is now an erasure's; either way, never trained on.
        Suppression.objects.filter(
            property_id=request.property_id, visitor_key=request.visitor_key
        ).update(reason=SuppressionReason.ERASURE, exclude_from_training=True)
        registry.consent_changed(request.property_id, [request.visitor_key])
        _mark_done(step, "suppressed" if created else "already suppressed")


def _verification_step(request: PrivacyRequest, step: ErasureStep, visitor_id: str) -> None:
    steps = {s.store: s for s in request.steps.all()}
    for _ in range(VERIFY_ROUNDS):
        left = {}
        for store in registry.stores():
            if store.erase_mode == registry.DELETE and store.label in steps:
                qs = store.queryset_for(request.property_id, visitor_id)
                if qs.exists():
                    left[store.label] = qs
        if not left:
            _mark_done(step, "verified")
            return
        for label, qs in left.items():
            # Rows that arrived while the erasure ran: counted on their store's step.
            _delete_batches(qs, steps[label])
    raise ErasureIncomplete(f"rows keep arriving for request #{request.pk}")


def erasure_run(*, request_id: int, stop_after: int | None = None) -> PrivacyRequest:
    """Run (or resume) the erasure of a started request. ``stop_after`` is for tests of
    resumption: stop after that many steps, as a killed worker would."""
    request = PrivacyRequest.objects.get(pk=request_id)
    if request.kind != RequestKind.ERASURE:
        raise DomainError("invalid_kind", "Not an erasure request.")
    if request.status == RequestStatus.COMPLETED:
        return request
    if request.status not in RUNNABLE:
        logger.info("erasure of request %s skipped: status %s", request.pk, request.status)
        return request
    visitor_id = request.visitor_id
    if not visitor_id:
        raise DomainError("visitor_id_missing", "The request no longer holds the visitor id.")
    ran = 0
    for step in erasure_plan(request):
        if step.status == StepStatus.DONE:
            continue
        if stop_after is not None and ran >= stop_after:
            return request
        if step.store == SUPPRESSION_STEP:
            _suppression_step(request, step)
        elif step.store == VERIFICATION_STEP:
            _verification_step(request, step, visitor_id)
        else:
            _store_step(request, step, visitor_id)
        ran += 1
    return _finish(request)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def receipt_summary(*, removed: int, stores: int, kept: int) -> str:
    """The receipt's sentence; ``kept`` is every row the receipt's table lists as kept."""
    return (
        f"Removed {_plural(removed, 'row, cache entry or file', 'rows, cache entries and files')}"
        f" from {_plural(stores, 'store', 'stores')}; "
        f"kept {_plural(kept, 'proof row that holds', 'proof rows that hold')} "
        "only the keyed hash."
    )


def _receipt(request: PrivacyRequest, steps: list[ErasureStep]) -> dict[str, Any]:
    removed = sum(sum(s.removed.values()) + s.extra for s in steps)
    # "Nothing held" leaves out the request's own bookkeeping (its suppression entry, the
    # request itself); the summary counts every kept row its table lists, those included.
    held = sum(s.kept for s in steps if s.store not in WORKFLOW_STORES)
    kept = sum(s.kept for s in steps)
    touched = sum(1 for s in steps if s.removed or s.extra)
    stores = [
        {
            "store": s.store,
            "description": STEP_DESCRIPTIONS.get(s.store)
            or getattr(registry.store_get(s.store), "description", ""),
            "action": s.action,
            "removed": s.removed,
            "removed_total": sum(s.removed.values()),
            "kept": s.kept,
            "caches_and_files": s.extra,
            "done_at": s.done_at.isoformat() if s.done_at else None,
        }
        for s in steps
    ]
    nothing_held = removed == 0 and held == 0
    if nothing_held:
        summary = "No data was held about this visitor. The id is on the suppression list."
    else:
        summary = receipt_summary(removed=removed, stores=touched, kept=kept)
    return {
        "request": str(request.public_id),
        "property": request.property_id,
        "visitor_key": request.visitor_key,
        "completed_at": timezone.now().isoformat(),
        "nothing_held": nothing_held,
        "suppressed": True,
        "excluded_from_training": True,
        "summary": summary,
        "stores": stores,
    }


@transaction.atomic
def _finish(request: PrivacyRequest) -> PrivacyRequest:
    locked = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
    if locked.status == RequestStatus.COMPLETED:
        return locked
    steps = list(locked.steps.order_by("position"))
    receipt = _receipt(locked, steps)
    locked.receipt = receipt
    locked.contact = ""
    locked.save(update_fields=["receipt", "contact"])
    audit_record(
        action="erasure.completed",
        property_id=locked.property_id,
        target=f"privacy_request:{locked.pk}",
        details={
            "summary": receipt["summary"],
            "stores": {s["store"]: s["removed_total"] for s in receipt["stores"]},
        },
    )
    return request_complete(request=locked, details={"receipt": True})


def requests_scrub(property_id: int, visitor_id: str) -> dict[str, int]:
    """The requests store's eraser: closed requests of the visitor lose their contact.

    They already lost the raw id when they closed; the keyed hash stays (docs/CONTRACT.md).
    Open requests keep both until they close: the running erasure needs the id.
    """
    n = (
        PrivacyRequest.objects.filter(
            property_id=property_id,
            visitor_key=visitor_key(property_id, visitor_id),
            status__in=CLOSED_STATUSES,
        )
        .exclude(contact="", visitor_id="")
        .update(contact="", visitor_id="")
    )
    return {"consent.PrivacyRequest (contact cleared)": n}
