"""Every model that holds visitor data is registered with the consent app's registry."""

from django.apps import apps

from consent import registry

VISITOR_FIELD_HINTS = ("visitor",)


def test_registry__every_model_with_a_visitor_field__registered():
    registered = registry.registered_models()
    missing = []
    for model in apps.get_models():
        names = [f.name for f in model._meta.get_fields() if not f.auto_created or f.concrete]
        if (
            any(h in name for name in names for h in VISITOR_FIELD_HINTS)
            and model not in registered
        ):
            missing.append(model._meta.label)
    assert missing == [], f"register these visitor-data stores with consent.registry: {missing}"


def test_registry__stores__find_a_visitors_rows(shop, consent, settings):
    # The database path, where every store is a table (the Redis hot state's counters and
    # budgets are erased by the decisions store's extra_erase:
    # tests/personalization/decisions/test_decide_redis.py).
    settings.DECIDE_REDIS_URL = ""
    from personalization.services.ingest import events_ingest
    from tests.conftest import make_event

    consent(shop.prop, "v-1")
    consent(shop.prop, "v-2")
    events_ingest(
        prop=shop.prop,
        events=[make_event(), make_event(visitor_id="v-2"), make_event("click", properties={})],
    )
    from personalization.decisions import DecideRequest, decide
    from tests.targeting import rule, slot

    slot(shop.prop, "headline", {"short": {"text": "x"}})
    rule(shop.prop, "all", "headline", "short")
    shop.prop.holdout_pct = 0
    from personalization.models import Segment, SegmentMember

    segment = Segment.objects.create(property=shop.prop, key="vip")
    SegmentMember.objects.create(segment=segment, property=shop.prop, visitor_id="v-1")
    decide(shop.prop, DecideRequest("v-1", "s-1", ["headline"]))
    from personalization.services.surveys import survey_create, survey_response_submit

    survey_create(
        prop=shop.prop,
        key="nps",
        title="NPS",
        questions=[{"key": "recommend", "type": "nps", "text": "Recommend us?"}],
    )
    for vid in ("v-1", "v-2"):
        survey_response_submit(
            prop=shop.prop,
            survey_key="nps",
            visitor_id=vid,
            session_id="s-1",
            answers={"recommend": 7},
        )
    counts = {s.label: s.queryset_for(shop.prop.pk, "v-1").count() for s in registry.stores()}
    expected = {
        "consent.records",
        "personalization.events",
        "personalization.quarantine",
        "personalization.visitors",
        "personalization.sessions",
        "personalization.decisions",
        "personalization.adjustments",
        "personalization.rule_counters",
        "personalization.session_budgets",
        "personalization.segment_members",
        "personalization.survey_responses",
    }
    assert expected <= set(counts)
    assert {label: counts[label] for label in expected if counts[label] != 1} == {}
