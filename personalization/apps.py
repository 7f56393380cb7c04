from django.apps import AppConfig


class PersonalizationConfig(AppConfig):
    name = "personalization"
    verbose_name = "Personalization"

    def ready(self) -> None:
        from consent import registry

        from .models import Event, QuarantinedEvent, Session, Visitor

        for store in (
            registry.VisitorStore(
                label="personalization.events",
                model=Event,
                visitor_field="visitor_id",
                time_field="timestamp",
                description="Stored behaviour events.",
            ),
            registry.VisitorStore(
                label="personalization.quarantine",
                model=QuarantinedEvent,
                visitor_field="visitor_id",
                time_field="received_at",
                description="Events that failed validation, kept whole.",
            ),
            registry.VisitorStore(
                label="personalization.visitors",
                model=Visitor,
                visitor_field="visitor_id",
                time_field="last_seen",
                description="Visitors and their live signals.",
            ),
            registry.VisitorStore(
                label="personalization.sessions",
                model=Session,
                visitor_field="visitor__visitor_id",
                time_field="last_event_at",
                description="Sessions and their live signals.",
            ),
        ):
            registry.register(store)
