"""GET /api/v1/surveys/<key> and POST /api/v1/surveys/<key>/responses (storefront keys)."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from ..exceptions import ApplicationError
from ..selectors import survey_active, survey_public
from ..services.surveys import survey_response_submit
from .serializers import ErrorSerializer
from .validation import survey_response_body
from .views import ERRORS, StorefrontView


class SurveyQuestionSerializer(serializers.Serializer):
    key = serializers.CharField()
    type = serializers.ChoiceField(choices=["nps", "rating", "single", "multiple", "text"])
    text = serializers.CharField()
    choices = serializers.ListField(
        help_text="The values an answer may take: 0–10 (nps), 1–5 (rating), the options "
        "(single, multiple); empty for text."
    )
    required = serializers.BooleanField()  # type: ignore[assignment]


class SurveySerializer(serializers.Serializer):
    key = serializers.CharField()
    title = serializers.CharField()
    questions = SurveyQuestionSerializer(many=True)


class SurveyResponseInputSerializer(serializers.Serializer):
    """Documents the body; validation runs through a compiled JSON Schema and the service."""

    visitor_id = serializers.CharField(max_length=128)
    session_id = serializers.CharField(max_length=128)
    decision_id = serializers.UUIDField(
        required=False, allow_null=True, help_text="The decision that showed the survey."
    )
    answers = serializers.DictField(
        help_text='{"<question key>": <value>}: an integer for nps and rating, a choice for '
        "single, a list of distinct choices for multiple, text (at most 2000 characters)."
    )


class SurveyResponseCreatedSerializer(serializers.Serializer):
    survey = serializers.CharField()
    submitted_at = serializers.DateTimeField()
    answers = serializers.DictField()


class SurveyView(StorefrontView):
    @extend_schema(responses={200: SurveySerializer, **ERRORS}, summary="Read a survey's questions")
    def get(self, request: Request, key: str) -> Response:
        survey = survey_active(self.prop.pk, key)
        if survey is None:
            raise ApplicationError(
                "unknown_survey", f"No active survey {key!r} on this property.", status=404
            )
        return Response(survey_public(survey))


class SurveyResponsesView(StorefrontView):
    @extend_schema(
        request=SurveyResponseInputSerializer,
        responses={
            201: SurveyResponseCreatedSerializer,
            409: OpenApiResponse(
                ErrorSerializer, description="no_consent: the visitor has not granted analytics."
            ),
            **ERRORS,
        },
        summary="Send a visitor's answers to a survey",
    )
    def post(self, request: Request, key: str) -> Response:
        body = survey_response_body(request.data)
        self.honour_gpc([body["visitor_id"]])
        response = survey_response_submit(
            prop=self.prop,
            survey_key=key,
            visitor_id=body["visitor_id"],
            session_id=body["session_id"],
            decision_id=body.get("decision_id"),
            answers=body["answers"],
        )
        return Response(
            {"survey": key, "submitted_at": response.submitted_at, "answers": response.answers},
            status=201,
        )
