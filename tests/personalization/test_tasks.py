"""Tasks on a real Celery worker with the configured broker (Redis in CI)."""

import time

import pytest
from celery.contrib.testing.worker import start_worker

from personalization.celery import app as celery_app
from personalization.models import EventType, QuarantinedEvent
from personalization.services.ingest import events_ingest
from personalization.tasks import replay_quarantine_task
from tests.conftest import make_event, needs


def broker_ready() -> bool:
    if celery_app.conf.task_always_eager or not celery_app.conf.broker_url:
        return False
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception:
        return False
    return True


@pytest.mark.django_db(transaction=True)
def test_replay_task__real_worker__stores_fixed_events(make_shop, consent):
    needs(broker_ready(), "needs a reachable CELERY_BROKER_URL (Redis) without TASKS_IN_PROCESS")
    # Given events quarantined for an unknown type, and the type defined since
    shop = make_shop()
    consent(shop.prop, "v-1")
    events_ingest(prop=shop.prop, events=[make_event("video_play") for _ in range(3)])
    EventType.objects.create(property=shop.prop, name="video_play", schema={"type": "object"})
    ids = list(QuarantinedEvent.objects.values_list("pk", flat=True))
    # When the replay task runs on a worker
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        replay_quarantine_task.delay(shop.prop.pk, ids)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not QuarantinedEvent.objects.filter(status="quarantined").exists():
                break
            time.sleep(0.2)
    # Then every event was stored, and a rerun changes nothing
    assert QuarantinedEvent.objects.filter(status="replayed").count() == 3
    assert replay_quarantine_task.apply(args=(shop.prop.pk, ids)).get()["stored"] == 0
