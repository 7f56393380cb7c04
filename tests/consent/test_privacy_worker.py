"""Access export and erasure on a real Celery worker with the configured broker (Redis in CI)."""

import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.contrib.auth.models import Group

from consent.models import AccessExport, PrivacyRequest
from consent.services.requests import request_start, request_verify_identity
from personalization.celery import app as celery_app
from personalization.permissions import PRIVACY_OFFICERS
from tests.conftest import needs
from tests.personalization.test_tasks import broker_ready
from tests.privacy import (
    media_root,
    raw_id,
    scan_db,
    scan_files,
    scan_redis,
    visitor_everywhere,
)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    """No test here writes archives to the real MEDIA_ROOT."""
    return media_root(settings, tmp_path)


def wait_for(condition, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def started(shop, officer, vid: str, kind: str) -> PrivacyRequest:
    body = {"kind": kind, "visitor_id": vid, "regulation": "gdpr", "contact": f"{vid}@x.example"}
    response = shop.client(shop.sk).post("/api/v1/privacy-requests", body, format="json")
    assert response.status_code == 202, response.content
    req = PrivacyRequest.objects.get(public_id=response.json()["id"])
    request_verify_identity(request=req, user=officer)
    return request_start(request=req, user=officer)  # enqueued when this commits


@pytest.mark.django_db(transaction=True)
def test_access_then_erasure__real_worker__export_built_then_every_trace_removed(
    make_shop, staff, media
):
    needs(broker_ready(), "needs a reachable CELERY_BROKER_URL (Redis) without TASKS_IN_PROCESS")
    # Given a visitor present in every store, and a worker on the broker
    # (an earlier transactional test's flush may have removed the migration-made groups)
    Group.objects.get_or_create(name=PRIVACY_OFFICERS)
    shop = make_shop()
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    vid = raw_id()
    visitor_everywhere(shop, vid)
    celery_app.control.purge()
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        # When an access request is started  Then the worker builds the archive
        access = started(shop, officer, vid, "access")
        assert wait_for(
            lambda: AccessExport.objects.filter(request=access, status="ready").exists()
        ), AccessExport.objects.filter(request=access).values("status", "error").first()
        assert scan_files(media, vid), "the archive holds the visitor's data"
        # When an erasure request is started  Then the worker erases everything
        erasure = started(shop, officer, vid, "erasure")
        assert wait_for(
            lambda: PrivacyRequest.objects.filter(pk=erasure.pk, status="completed").exists()
        )
    access.refresh_from_db()
    erasure.refresh_from_db()
    assert access.status == "completed"
    assert erasure.receipt["nothing_held"] is False
    # and the raw id is in no column, no file, and no Redis key or value
    assert scan_db(vid) == []
    assert scan_files(media, vid) == []
    urls = [u for u in (settings.CELERY_BROKER_URL, settings.REDIS_URL) if u.startswith("redis")]
    for url in urls:
        assert scan_redis(url, vid) == [], url
