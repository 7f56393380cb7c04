from django.apps import AppConfig


class PersonalizationConfig(AppConfig):
    name = "personalization"
    verbose_name = "Personalization"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from consent import registry

        from .models import (
            Adjustment,
            Decision,
            Event,
            QuarantinedEvent,
            Rule,
            RuleCounter,
            Segment,
            SegmentMember,
            Session,
            SessionBudget,
            Slot,
            SurveyResponse,
            Variant,
            Visitor,
        )
        from .ruleset import config_bump

        def bump(sender: type, instance: object, **kwargs: object) -> None:
            property_id = getattr(instance, "property_id", None)
            if property_id is None and isinstance(instance, Variant):
                property_id = (
                    Slot.objects.filter(pk=instance.slot_id)
                    .values_list("property_id", flat=True)
                    .first()
                )
            if property_id is not None:
                config_bump(property_id)

        from .models import Experiment, Goal, Rollout

        for model in (Slot, Variant, Segment, SegmentMember, Rule, Experiment, Rollout, Goal):
            post_save.connect(bump, sender=model, dispatch_uid=f"bump-{model.__name__}")
            post_delete.connect(bump, sender=model, dispatch_uid=f"bump-del-{model.__name__}")

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
                label="personalization.survey_responses",
                model=SurveyResponse,
                visitor_field="visitor_id",
                time_field="submitted_at",
                retention="survey_answers",
                description="Survey answers, free text included.",
            ),
        ):
            registry.register(store)
