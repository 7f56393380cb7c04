from django.apps import AppConfig


class PersonalizationConfig(AppConfig):
    name = "personalization"
    verbose_name = "Personalization"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from .security import checks, lockout  # noqa: F401  (checks register on import)

        lockout.install()

        from consent import registry
        from consent.models import RetentionRun

        from . import config_version
        from .hotstate import decisions_export as hotstate_export
        from .hotstate import visitor_erase as hotstate_erase
        from .learning import maintenance as learning_maintenance
        from .learning import privacy as learning_privacy
        from .models import (
            Adjustment,
            Decision,
            Event,
            LiveFiring,
            QuarantinedEvent,
            RuleCounter,
            SegmentMember,
            Session,
            SessionBudget,
            SurveyResponse,
            TrainingMember,
            Visitor,
        )
        from .models.config import config_changed

        # What was learned from a visitor erased since is retrained in the next retention run.
        post_save.connect(
            learning_maintenance.on_retention_run,
            sender=RetentionRun,
            dispatch_uid="learning-retrain-after-retention",
        )

        # The engine's copies in Redis of visitors' consent and live signals (hotstate/):
        # consent changes rewrite them; a visitor's rows deleted (erasure, retention) take
        # the copy of their signals along.
        from . import hotstate

        registry.consent_listen(hotstate.consent_changed)
        # consent's memos are emptied by the one reset too (consent imports nothing of ours).
        from consent import selectors as consent_selectors

        from .cache import local_cache_register

        local_cache_register("consent.policies", consent_selectors.memos_clear)
        post_delete.connect(
            hotstate.on_visitor_deleted, sender=Visitor, dispatch_uid="hotstate-visitor-deleted"
        )

        # Every configuration change reaches every process's next decision (config_version.py).
        # The receivers are module-level functions: Django keeps receivers by weak reference.
        for model in config_version.CONFIG_MODELS:
            name = model.__name__
            post_save.connect(
                config_version.on_config_saved, sender=model, dispatch_uid=f"bump-{name}"
            )
            post_delete.connect(
                config_version.on_config_saved, sender=model, dispatch_uid=f"bump-del-{name}"
            )
        config_changed.connect(config_version.on_config_bulk_changed, dispatch_uid="bump-bulk")

        for store in (
            registry.VisitorStore(
                label="personalization.events",
                model=Event,
                visitor_field="visitor_id",
                time_field="timestamp",
                retention="raw_events",
                description="Stored behaviour events.",
            ),
            registry.VisitorStore(
                label="personalization.quarantine",
                model=QuarantinedEvent,
                visitor_field="visitor_id",
                time_field="received_at",
                retention="quarantine",
                description="Events that failed validation, kept whole.",
            ),
            registry.VisitorStore(
                label="personalization.visitors",
                model=Visitor,
                visitor_field="visitor_id",
                time_field="last_seen",
                retention="raw_events",
                description="Visitors and their live signals.",
            ),
            registry.VisitorStore(
                label="personalization.sessions",
                model=Session,
                visitor_field="visitor__visitor_id",
                time_field="last_event_at",
                retention="raw_events",
                description="Sessions and their live signals.",
            ),
            registry.VisitorStore(
                label="personalization.decisions",
                model=Decision,
                visitor_field="visitor_id",
                time_field="created_at",
                retention="adjustment_log",
                description="The decision log: answers, signals read, suppressed candidates.",
                # Flush the decisions still pending in Redis first (so their rows are erased
                # or exported with the rest); erasure also deletes the visitor's counters and
                # budgets there.
                extra_erase=hotstate_erase,
                exporter=hotstate_export,
            ),
            registry.VisitorStore(
                label="personalization.adjustments",
                model=Adjustment,
                visitor_field="visitor_id",
                time_field="created_at",
                retention="adjustment_log",
                description="Each slot's logged answer.",
            ),
            registry.VisitorStore(
                label="personalization.live_firings",
                model=LiveFiring,
                visitor_field="visitor_id",
                time_field="created_at",
                retention="adjustment_log",
                description="Reports of live plan entries fired in a page, one per decision "
                "and slot (the firings themselves are in the decision log).",
            ),
            registry.VisitorStore(
                label="personalization.segment_members",
                model=SegmentMember,
                visitor_field="visitor_id",
                description="Saved visitor lists of segments.",
            ),
            registry.VisitorStore(
                label="personalization.rule_counters",
                model=RuleCounter,
                visitor_field="visitor_id",
                time_field="last_applied_at",
                retention="adjustment_log",
                description="Cooldown and frequency-cap counters.",
            ),
            registry.VisitorStore(
                label="personalization.session_budgets",
                model=SessionBudget,
                visitor_field="visitor_id",
                time_field="updated_at",
                retention="adjustment_log",
                description="Adjustments per session and sticky variants.",
            ),
            registry.VisitorStore(
                label="personalization.training_sets",
                model=TrainingMember,
                visitor_field="visitor_key",
                keyed=True,
                eraser=learning_privacy.training_erase,
                description="Who each clustering run and propensity model version was trained "
                "on (keyed hash). Erasure marks those runs and versions stale; the retention "
                "purge's next run retrains them without the visitor. The artifacts and "
                "centroids themselves hold no visitor id.",
            ),
            registry.VisitorStore(
                label="personalization.survey_responses",
                model=SurveyResponse,
                visitor_field="visitor_id",
                time_field="submitted_at",
                retention="survey_answers",
                description="Survey answers, free text included.",
            ),
        ):
            registry.register(store)
