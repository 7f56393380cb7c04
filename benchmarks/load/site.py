"""The storefront a load run drives: a property with slots, rules and a survey.

Run inside Django (``manage.py shell -c "from benchmarks.load.site import main; main()"``);
prints one JSON line with the property id and its keys.
"""

import json
import uuid

from personalization.models import Rule, Slot, Variant
from personalization.services.properties import property_create
from personalization.services.rules import rule_save
from personalization.services.surveys import survey_create

SLOTS: dict[str, dict[str, dict[str, object]]] = {
    "headline": {"short": {"text": "Quick picks"}, "long": {"text": "Take your time"}},
    "cta": {"b": {"label": "Buy now"}},
    "newsletter_popup": {"late": {"delay_ms": 30000}},
}
SURVEY = "nps"


def main() -> None:
    prop, keys = property_create(
        name=f"Load {uuid.uuid4().hex[:8]}", origins=["https://shop.example"]
    )
    prop.holdout_pct = 0
    prop.save()
    for key, variants in SLOTS.items():
        slot = Slot.objects.create(property=prop, key=key, default_variant="default")
        Variant.objects.create(slot=slot, key="default", content={"text": f"{key} default"})
        for name, content in variants.items():
            Variant.objects.create(slot=slot, key=name, content=content)
    headline = Slot.objects.get(property=prop, key="headline")
    conditions = {
        "returning": {"visitor.visits_7d": {"$gte": 2}},
        "mobile": {"context.attributes.device": "mobile"},
    }
    for n, (key, condition) in enumerate(conditions.items()):
        variant = Variant.objects.get(slot=headline, key="short" if n == 0 else "long")
        rule_save(
            rule=Rule(
                property=prop,
                key=key,
                slot=headline,
                variant=variant,
                condition=condition,
                status="active",
                priority=n,
            )
        )
    survey_create(
        prop=prop,
        key=SURVEY,
        title="Before you go",
        questions=[
            {"key": "recommend", "type": "nps", "text": "How likely are you to recommend us?"},
            {"key": "comment", "type": "text", "text": "Anything to add?"},
        ],
    )
    print(json.dumps({"property": prop.pk, "pk": keys["publishable"], "sk": keys["secret"]}))
