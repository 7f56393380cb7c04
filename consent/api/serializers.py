"""Serializers of consent's storefront endpoints (also the OpenAPI document), and of the
one error shape every endpoint answers refusals in: the error type is consent's
(``consent.exceptions.DomainError``), the lowest app, so its documented shape lives here
too. The JSON bodies are checked by compiled JSON Schemas; these document them."""

from rest_framework import serializers


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
