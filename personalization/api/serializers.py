"""Input and output serializers of the storefront API (also the OpenAPI document)."""

from rest_framework import serializers

# The one error shape every endpoint answers refusals in is documented beside the error
# type, in consent (the lowest app), with consent's own endpoints' serializers.
from consent.api.serializers import ErrorSerializer


class UtmSerializer(serializers.Serializer):
    source = serializers.CharField(required=False)  # type: ignore[assignment]
    medium = serializers.CharField(required=False)
    campaign = serializers.CharField(required=False)
    term = serializers.CharField(required=False)
    content = serializers.CharField(required=False)


class PageContextSerializer(serializers.Serializer):
    """The page's context: the same object with events and with decide (where conditions
    read it as ``context.<field>``; ``event_schemas.CONTEXT_PROPERTIES`` checks it)."""

    url = serializers.CharField(required=False, max_length=2048)
    referrer = serializers.CharField(required=False, max_length=2048)
    user_agent = serializers.CharField(required=False, max_length=1024)
    title = serializers.CharField(required=False, max_length=256)
    locale = serializers.CharField(required=False, max_length=35)
    timezone = serializers.CharField(required=False, max_length=64)
    screen = serializers.CharField(required=False, max_length=32)
    utm = UtmSerializer(required=False)
    attributes = serializers.DictField(
        required=False,
        help_text="At most 50; with decide, scalars or lists of scalars, read by conditions "
        "under their own names.",
    )


class EventSerializer(serializers.Serializer):
    """Documents one event; validation itself runs through the compiled JSON Schemas."""

    event_id = serializers.UUIDField()
    type = serializers.CharField(help_text="A built-in type or a custom type with a schema.")
    visitor_id = serializers.CharField(max_length=128)
    session_id = serializers.CharField(max_length=128)
    timestamp = serializers.DateTimeField()
    decision_id = serializers.UUIDField(required=False, allow_null=True)
    properties = serializers.DictField(required=False)
    context = PageContextSerializer(required=False)  # type: ignore[assignment]


class EventBatchSerializer(serializers.Serializer):
    events = EventSerializer(many=True, help_text="1 to 500 events.")


class EventErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    event_id = serializers.CharField(allow_null=True)
    path = serializers.CharField()
    message = serializers.CharField()


class EventBatchResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    quarantined = serializers.IntegerField()
    dropped_no_consent = serializers.IntegerField()
    errors = EventErrorSerializer(many=True)  # type: ignore[assignment]


class DecideInputSerializer(serializers.Serializer):
    visitor_id = serializers.CharField(max_length=128)
    session_id = serializers.CharField(max_length=128)
    slots = serializers.ListField(child=serializers.CharField(max_length=64), max_length=50)
    context = PageContextSerializer(required=False)  # type: ignore[assignment]


class SourceSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["default", "rule", "experiment", "rollout", "model"])
    key = serializers.CharField(required=False)
    version = serializers.IntegerField(required=False)
    sticky = serializers.BooleanField(
        required=False,
        help_text="Present (true) on a sticky repeat: the slot keeps what an earlier "
        "adjustment of this session showed. Not a new application: caps, cooldowns and the "
        "session budget do not count it, and it is never listed as suppressed.",
    )


class SlotAnswerSerializer(serializers.Serializer):
    variant = serializers.CharField()
    content = serializers.DictField()
    source = SourceSerializer()  # type: ignore[assignment]


class SuppressedSerializer(serializers.Serializer):
    slot = serializers.CharField()
    candidate = serializers.CharField()
    reason = serializers.ChoiceField(
        choices=["cooldown", "frequency_cap", "session_budget", "conflict", "consent", "holdout"]
    )


class PlanEntrySerializer(serializers.Serializer):
    slot = serializers.CharField()
    variant = serializers.CharField()
    content = serializers.DictField()
    when = serializers.DictField(
        help_text="The rule's condition reduced by what the server knows: it reads only page.* "
        "attributes ({} : fires as soon as the page has loaded)."
    )
    priority = serializers.IntegerField()
    source = SourceSerializer()  # type: ignore[assignment]
    max_fires = serializers.IntegerField()
    token = serializers.CharField(help_text="Sent back with the report of a firing.")
    expires_at = serializers.DateTimeField()


class DecideOutputSerializer(serializers.Serializer):
    decision_id = serializers.UUIDField()
    personalized = serializers.BooleanField()
    slots = serializers.DictField(child=SlotAnswerSerializer())
    suppressed = SuppressedSerializer(many=True)
    unknown_slots = serializers.ListField(child=serializers.CharField())
    live = PlanEntrySerializer(
        many=True,
        required=False,
        help_text="Present when live rules may still fire in the page: the live plan.",
    )


class AdjustmentInputSerializer(serializers.Serializer):
    decision_id = serializers.UUIDField()
    slot = serializers.CharField(max_length=64)
    variant = serializers.CharField(max_length=64)
    token = serializers.CharField(max_length=2048)
    signals = serializers.DictField(
        required=False, help_text="The page.* signals the firing read, by name."
    )
    fired_at = serializers.DateTimeField(required=False)


class AdjustmentOutputSerializer(serializers.Serializer):
    applied = serializers.BooleanField()
    reason = serializers.ChoiceField(
        required=False,
        choices=["cooldown", "frequency_cap", "session_budget", "consent", "rule_changed"],
        help_text="Why the firing was refused (the page puts the slot back).",
    )


__all__ = [
    "ErrorSerializer",
    "UtmSerializer",
    "PageContextSerializer",
    "EventSerializer",
    "EventBatchSerializer",
    "EventErrorSerializer",
    "EventBatchResultSerializer",
    "DecideInputSerializer",
    "SourceSerializer",
    "SlotAnswerSerializer",
    "SuppressedSerializer",
    "DecideOutputSerializer",
]
