from celery import shared_task

from .models import Property
from .services.ingest import quarantine_replay

REPLAY_CHUNK = 500


@shared_task(acks_late=True, autoretry_for=(ConnectionError,), retry_backoff=True, max_retries=5)
def replay_quarantine_task(property_id: int, ids: list[int]) -> dict[str, int]:
    """Replay quarantined events in chunks. Idempotent: replayed events are skipped on rerun."""
    prop = Property.objects.get(pk=property_id)
    totals = {"stored": 0, "duplicates": 0, "still_quarantined": 0, "dropped_no_consent": 0}
    for start in range(0, len(ids), REPLAY_CHUNK):
        result = quarantine_replay(prop=prop, ids=ids[start : start + REPLAY_CHUNK])
        for name in totals:
            totals[name] += getattr(result, name)
    return totals
