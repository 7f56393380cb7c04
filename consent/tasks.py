"""Background work of the consent app. Tasks take ids, are idempotent and ack late.

Nothing here passes or returns a visitor id: broker messages and results hold
request ids and counts only.
"""

from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from .services.access import export_build, exports_expire
from .services.erasure import ErasureIncomplete, erasure_run
from .services.retention import retention_purge_all

TRANSIENT = (OperationalError, InterfaceError, ConnectionError)


@shared_task(acks_late=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5)
def access_export_task(request_id: int) -> dict[str, Any]:
    export = export_build(request_id=request_id)
    return {"request": request_id, "status": export.status, "rows": export.rows}


@shared_task(
    acks_late=True,
    autoretry_for=(*TRANSIENT, ErasureIncomplete),
    retry_backoff=True,
    max_retries=8,
)
def erasure_task(request_id: int) -> dict[str, Any]:
    request = erasure_run(request_id=request_id)
    return {"request": request_id, "status": request.status}


@shared_task(acks_late=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=3)
def retention_purge_task() -> dict[str, int]:
    return {str(pid): n for pid, n in retention_purge_all().items()}


@shared_task(acks_late=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=3)
def exports_expire_task() -> int:
    return exports_expire()
