from django.apps import AppConfig


class ConsentConfig(AppConfig):
    name = "consent"
    verbose_name = "Consent and privacy"

    def ready(self) -> None:
        from . import registry
        from .models import AccessExport, ConsentRecord, GpcEvidence, PrivacyRequest, Suppression
        from .services.access import exports_erase
        from .services.erasure import requests_scrub

        for store in (
            registry.VisitorStore(
                label="consent.records",
                model=ConsentRecord,
                visitor_field="visitor_key",
                keyed=True,
                time_field="created_at",
                description="Append-only proof of consent (keyed hash of the visitor id).",
            ),
            registry.VisitorStore(
                label="consent.gpc_evidence",
                model=GpcEvidence,
                visitor_field="visitor_key",
                keyed=True,
                time_field="at",
                retention="raw_events",
                description="Each request that carried Sec-GPC: 1 (keyed hash, endpoint, time).",
            ),
            registry.VisitorStore(
                label="consent.suppression",
                model=Suppression,
                visitor_field="visitor_key",
                keyed=True,
                description="Erased visitors, whose later events are dropped (keyed hash).",
            ),
            registry.VisitorStore(
                label="consent.privacy_requests",
                model=PrivacyRequest,
                visitor_field="visitor_key",
                keyed=True,
                eraser=requests_scrub,
                description="Data-subject requests (keyed hash; contact cleared by an erasure).",
            ),
            registry.VisitorStore(
                label="consent.access_exports",
                model=AccessExport,
                visitor_field="request__visitor_key",
                property_field="request__property_id",
                keyed=True,
                eraser=exports_erase,
                export=False,
                description="Access-export archives on disk.",
            ),
        ):
            registry.register(store)
