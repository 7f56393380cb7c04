from django.apps import AppConfig


class ConsentConfig(AppConfig):
    name = "consent"
    verbose_name = "Consent and privacy"

    def ready(self) -> None:
        from . import registry
        from .models import ConsentRecord

        registry.register(
            registry.VisitorStore(
                label="consent.records",
                model=ConsentRecord,
                visitor_field="visitor_key",
                keyed=True,
                time_field="created_at",
                description="Append-only proof of consent (keyed hash of the visitor id).",
            )
        )
