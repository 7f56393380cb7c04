"""The hot state's own background work (registered through ``personalization.tasks``)."""

from celery import shared_task

from . import decision_log_flush


# The name is the one the beat schedule and queued messages have always used.
@shared_task(name="personalization.tasks.decision_log_flush_task", acks_late=True)
def decision_log_flush_task() -> int:
    """Copy the decisions pending in Redis into the database. Idempotent by decision_id;
    runs every few seconds from the beat and when a decision finds many pending."""
    return decision_log_flush()
