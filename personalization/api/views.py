"""The storefront API, v1. Views validate input, fetch by id and call one service."""

import uuid
from typing import Any

from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consent import selectors as consent_selectors
from consent import services as consent_services
from consent.selectors import EffectiveConsent
from consent.services.access import export_link_token, export_open_by_link
from consent.services.requests import privacy_request_submit

from ..engine import DecideRequest, decide
from ..exceptions import ApplicationError, problem
from ..models import ApiKey, Property
from ..services.ingest import events_ingest
from . import serializers as s
from .authentication import ApiKeyAuthentication
from .permissions import SecretKey, StorefrontKey
from .renderers import JSONRenderer
from .validation import consent_body, decide_body, events_envelope

# Every refusal a storefront endpoint can answer, all in the one error shape (429: the
# per-key and per-address rate limits, personalization/security/ratelimit.py).
ERRORS = {
    code: OpenApiResponse(s.ErrorSerializer) for code in (400, 401, 403, 404, 413, 415, 429, 503)
}


class StorefrontView(APIView):
    """Base of every storefront endpoint: API-key auth, and the GPC signal honoured."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [StorefrontKey]
    # The hot endpoints' answers encoded by orjson (the parser is the project's default).
    renderer_classes = [JSONRenderer]

    @property
    def api_key(self) -> ApiKey:
        assert isinstance(self.request.auth, ApiKey)
        return self.request.auth

    @property
    def prop(self) -> Property:
        return self.api_key.property

    @property
    def gpc(self) -> bool:
        return self.request.headers.get("Sec-GPC", "").strip() == "1"

    @property
    def client_ip(self) -> str | None:
        return self.request.META.get("REMOTE_ADDR")

    def honour_gpc(self, visitor_ids: list[str]) -> None:
        if self.gpc and visitor_ids:
            consent_services.gpc_apply(
                property_id=self.prop.pk, visitor_ids=visitor_ids, ip=self.client_ip
            )


def _consent_body(visitor_id: str, consent: EffectiveConsent) -> dict[str, Any]:
    return {
        "visitor_id": visitor_id,
        "policy_version": consent.policy_version,
        "purposes": consent.purposes,
        "reconsent_required": consent.reconsent_required,
        "updated_at": consent.updated_at,
    }


class EventsView(StorefrontView):
    @extend_schema(
        request=s.EventBatchSerializer,
        responses={200: s.EventBatchResultSerializer, **ERRORS},
        summary="Send a batch of behaviour events",
    )
    def post(self, request: Request) -> Response:
        events = events_envelope(request.data)
        result = events_ingest(prop=self.prop, events=events, gpc=self.gpc, ip=self.client_ip)
        return Response(result.as_response())


class ConsentPolicyView(StorefrontView):
    @extend_schema(responses={200: s.ConsentPolicySerializer, **ERRORS})
    def get(self, request: Request) -> Response:
        policy = consent_selectors.policy_current(self.prop.pk)
        if policy is None:
            raise ApplicationError(
                "no_policy", "This property has no consent policy yet.", status=404
            )
        return Response(
            {
                "version": policy.version,
                "purposes": policy.purposes,
                "jurisdictions": policy.jurisdictions,
            }
        )


class ConsentView(StorefrontView):
    @extend_schema(
        request=s.ConsentInputSerializer,
        responses={201: s.EffectiveConsentSerializer, **ERRORS},
        summary="Record a visitor's consent",
    )
    def post(self, request: Request) -> Response:
        v = consent_body(request.data)
        consent = consent_services.consent_record(
            property_id=self.prop.pk,
            visitor_id=v["visitor_id"],
            policy_version=v["policy_version"],
            purposes=v["purposes"],
            method=v["method"],
            ip=self.client_ip,
            gpc=self.gpc or v["method"] == "gpc",
        )
        return Response(_consent_body(v["visitor_id"], consent), status=201)


class ConsentDetailView(StorefrontView):
    @extend_schema(responses={200: s.EffectiveConsentSerializer, **ERRORS})
    def get(self, request: Request, visitor_id: str) -> Response:
        if len(visitor_id) > 128:
            raise ApplicationError.from_problems(
                "invalid_visitor_id",
                [problem("visitor_id", "invalid", "has at most 128 characters")],
            )
        self.honour_gpc([visitor_id])
        consent = consent_selectors.consent_effective(self.prop.pk, visitor_id)
        return Response(_consent_body(visitor_id, consent))


class DecideView(StorefrontView):
    @extend_schema(
        request=s.DecideInputSerializer,
        responses={200: s.DecideOutputSerializer, **ERRORS},
        summary="Ask for a decision for the slots on a page",
    )
    def post(self, request: Request) -> Response:
        body = decide_body(request.data)
        result = decide(
            self.prop,
            DecideRequest(
                visitor_id=body["visitor_id"],
                session_id=body["session_id"],
                slots=body["slots"],
                context=body.get("context") or {},
                gpc=self.gpc,
                ip=self.client_ip,
            ),
        )
        return Response(result.as_response())


class PrivacyRequestsView(StorefrontView):
    permission_classes = [SecretKey]

    @extend_schema(
        request=s.PrivacyRequestInputSerializer,
        responses={
            202: OpenApiResponse(
                s.PrivacyRequestCreatedSerializer,
                description="Accepted; or merged into an open request of the same kind for "
                "the visitor (then also `merged: true` and a `message`).",
            ),
            **ERRORS,
        },
        summary="Submit a data-subject request (access, erasure, opt-out)",
    )
    def post(self, request: Request) -> Response:
        data = s.PrivacyRequestInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        self.honour_gpc([v["visitor_id"]])
        privacy_request, merged = privacy_request_submit(
            property_id=self.prop.pk,
            kind=v["kind"],
            regulation=v["regulation"],
            visitor_id=v["visitor_id"],
            contact=v.get("contact", ""),
            source="api",
            label=f"api key {self.api_key.prefix}…",
        )
        body: dict[str, Any] = {
            "id": str(privacy_request.public_id),
            "status": privacy_request.status,
            "due_at": privacy_request.due_date,
        }
        if merged:
            body["merged"] = True
            body["message"] = (
                f"An open {privacy_request.get_kind_display().lower()} request for this "
                "visitor exists; this one was merged into it."
            )
        # 202 either way (docs/CONTRACT.md): the request is accepted, as a new one or merged.
        return Response(body, status=202)


class PrivacyRequestDetailView(StorefrontView):
    permission_classes = [SecretKey]

    @extend_schema(responses={200: s.PrivacyRequestStatusSerializer, **ERRORS})
    def get(self, request: Request, request_id: uuid.UUID) -> Response:
        found = consent_selectors.request_by_public_id(self.prop.pk, request_id)
        if found is None:
            raise ApplicationError("not_found", "No such request for this property.", status=404)
        body = consent_selectors.request_public(found)
        export = body["export"]
        if export is not None:
            token = export.pop("token")  # set once the archive is ready
            export["download_url"] = self._download_url(token, export) if token else None
        return Response(body)

    def _download_url(self, token: str, export: dict[str, Any]) -> str:
        """A signed link of an hour (never past the archive), for this property's secret key."""
        link = export_link_token(
            property_id=self.prop.pk, export_token=token, expires_at=export["expires_at"]
        )
        return self.request.build_absolute_uri(reverse("api-privacy-export", args=[link]))


class PrivacyExportView(StorefrontView):
    """An access export's archive, for the storefront's server: the signed link that
    ``GET privacy-requests/<id>`` gives, opened with the same property's secret key."""

    permission_classes = [SecretKey]

    @extend_schema(
        responses={
            (200, "application/zip"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The archive (export.json and one CSV a store)."
            ),
            **ERRORS,
            410: OpenApiResponse(
                s.ErrorSerializer,
                description="export_link_expired (read the request again for a fresh link) "
                "or export_expired (the archive is gone; make a new request).",
            ),
        },
        summary="Download an access request's archive",
    )
    def get(self, request: Request, link: str) -> FileResponse:
        export, path = export_open_by_link(
            property_id=self.prop.pk,
            link_token=link,
            label=f"api key {self.api_key.prefix}…",
        )
        return FileResponse(
            path.open("rb"),
            as_attachment=True,
            filename=f"privacy-export-{export.request.public_id}.zip",
            content_type="application/zip",
        )
