"""Input and output serializers of the storefront API (also the OpenAPI document)."""

from rest_framework import serializers


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


class PurposeSerializer(serializers.Serializer):
    key = serializers.CharField()
    title = serializers.CharField()
    text = serializers.CharField()


class ConsentPolicySerializer(serializers.Serializer):
    version = serializers.IntegerField()
    purposes = PurposeSerializer(many=True)
    jurisdictions = serializers.ListField(child=serializers.CharField())


class ConsentInputSerializer(serializers.Serializer):
    """Documents the body; validation runs through a compiled JSON Schema
    (``validation.CONSENT_SCHEMA``): strict types, no unknown fields."""

    visitor_id = serializers.CharField(max_length=128)
    policy_version = serializers.IntegerField(min_value=1)
    purposes = serializers.DictField(
        child=serializers.BooleanField(),
        allow_empty=True,
        help_text="Purpose key → true or false (JSON booleans only).",
    )
    # "gpc": a script relaying navigator.globalPrivacyControl, since browsers forbid scripts to
    # set the Sec-GPC header; recorded exactly as that header would be.
    method = serializers.ChoiceField(choices=["banner", "api", "gpc"], default="banner")


class EffectiveConsentSerializer(serializers.Serializer):
    visitor_id = serializers.CharField()
    policy_version = serializers.IntegerField(allow_null=True)
    purposes = serializers.DictField(child=serializers.BooleanField())
    reconsent_required = serializers.BooleanField()
    updated_at = serializers.DateTimeField(allow_null=True)


class ErrorProblemSerializer(serializers.Serializer):
    path = serializers.CharField(
        allow_blank=True,
        help_text='Where, dotted: "purposes.analytics", "context.utm.source"; "" for the body '
        "as a whole; a query parameter by its name.",
    )
    code = serializers.CharField(
        help_text="required, unknown_field, invalid, or the endpoint's own (unknown_purpose, "
        "unknown_question, invalid_answer, missing_answer, …)."
    )
    message = serializers.CharField()


class ErrorDetailsSerializer(serializers.Serializer):
    """Always an object ({} when there is nothing to add); more keys per error code, e.g.
    ``max`` and ``received`` (batch_too_large, too_many_slots), ``scope``, ``limit`` and
    ``window_seconds`` (rate_limited), ``purpose`` (no_consent), ``questions`` (survey answers)."""

    errors = ErrorProblemSerializer(  # type: ignore[assignment]
        many=True,
        required=False,
        help_text="When the request's content is at fault: every problem found.",
    )


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = ErrorDetailsSerializer()


class ErrorSerializer(serializers.Serializer):
    error = ErrorBodySerializer()


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


class PrivacyRequestInputSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["access", "erasure", "opt_out"])
    visitor_id = serializers.CharField(max_length=128)
    regulation = serializers.ChoiceField(choices=["gdpr", "ccpa"])
    contact = serializers.CharField(
        max_length=254, required=False, allow_blank=True, help_text="How to reach the requester."
    )


class PrivacyRequestCreatedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    due_at = serializers.DateField()
    merged = serializers.BooleanField(
        required=False, help_text="Present (true) when merged into an open request."
    )
    message = serializers.CharField(required=False)


class ExportProgressSerializer(serializers.Serializer):
    stores_done = serializers.IntegerField()
    stores_total = serializers.IntegerField()


class PrivacyExportSerializer(serializers.Serializer):
    status = serializers.CharField()
    progress = ExportProgressSerializer()
    expires_at = serializers.DateTimeField(allow_null=True)
    download_url = serializers.URLField(
        allow_null=True,
        help_text="The archive, for this property's secret key (GET it with the same "
        "Authorization header); a signed link valid for an hour and never past expires_at. "
        "Read the request again for a fresh one.",
    )


class PrivacyRequestStatusSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.CharField()
    regulation = serializers.CharField()
    status = serializers.CharField()
    received_at = serializers.DateTimeField()
    due_at = serializers.DateField()
    days_left = serializers.IntegerField(allow_null=True)
    extended = serializers.BooleanField()
    extension_reason = serializers.CharField(allow_null=True)
    denial_reason = serializers.CharField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    export = PrivacyExportSerializer(allow_null=True)
    receipt = serializers.JSONField(allow_null=True, help_text="The erasure receipt.")
