"""consent's storefront endpoints: the consent policy, a visitor's consent, data-subject
requests and their access exports. Views validate input, fetch by id and call one service.

Who may call them is the storefront's business: the API keys are personalization's, and
consent imports nothing of personalization (pyproject's import contracts). So these views
read the credential DRF authenticated only through ``Credential`` (a property and a key
prefix), refuse everyone until bound (DRF's default permission here denies all), and
``personalization.api.consent`` binds each to the keys' authentication and permissions,
and the consent choice to the storefront's JSON Schema checks."""

import uuid
from typing import Any, Protocol, cast

from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors, services
from ..exceptions import DomainError, problem
from ..selectors import EffectiveConsent
from ..services.access import export_link_token, export_open_by_link
from ..services.requests import privacy_request_submit
from . import serializers as s

# Every refusal a storefront endpoint can answer, all in the one error shape (429: the
# per-key and per-address rate limits, personalization/security/ratelimit.py).
ERRORS = {
    code: OpenApiResponse(s.ErrorSerializer) for code in (400, 401, 403, 404, 413, 415, 429, 503)
}


class Credential(Protocol):
    """What these views read of ``request.auth``: the property it acts for, and a prefix
    that names it in the audit log (personalization's API keys have both)."""

    property_id: int
    prefix: str


class StorefrontBase(APIView):
    """What every storefront endpoint shares that is consent's business: the property of
    the credential, and the GPC signal (``Sec-GPC: 1``) honoured."""

    @property
    def credential(self) -> Credential:
        return cast(Credential, self.request.auth)

    @property
    def property_id(self) -> int:
        return self.credential.property_id

    @property
    def key_label(self) -> str:
        return f"api key {self.credential.prefix}…"

    @property
    def gpc(self) -> bool:
        return self.request.headers.get("Sec-GPC", "").strip() == "1"

    @property
    def client_ip(self) -> str | None:
        return self.request.META.get("REMOTE_ADDR")

    def honour_gpc(self, visitor_ids: list[str]) -> None:
        if self.gpc and visitor_ids:
            services.gpc_apply(
                property_id=self.property_id, visitor_ids=visitor_ids, ip=self.client_ip
            )


def _consent_body(visitor_id: str, consent: EffectiveConsent) -> dict[str, Any]:
    return {
        "visitor_id": visitor_id,
        "policy_version": consent.policy_version,
        "purposes": consent.purposes,
        "reconsent_required": consent.reconsent_required,
        "updated_at": consent.updated_at,
    }


class ConsentPolicyView(StorefrontBase):
    @extend_schema(responses={200: s.ConsentPolicySerializer, **ERRORS})
    def get(self, request: Request) -> Response:
        policy = selectors.policy_current(self.property_id)
        if policy is None:
            raise DomainError("no_policy", "This property has no consent policy yet.", status=404)
        return Response(
            {
                "version": policy.version,
                "purposes": policy.purposes,
                "jurisdictions": policy.jurisdictions,
            }
        )


class ConsentView(StorefrontBase):
    @extend_schema(
        request=s.ConsentInputSerializer,
        responses={201: s.EffectiveConsentSerializer, **ERRORS},
        summary="Record a visitor's consent",
    )
    def post(self, request: Request) -> Response:
        v = self.choice(request.data)
        consent = services.consent_record(
            property_id=self.property_id,
            visitor_id=v["visitor_id"],
            policy_version=v["policy_version"],
            purposes=v["purposes"],
            method=v["method"],
            ip=self.client_ip,
            gpc=self.gpc or v["method"] == "gpc",
        )
        return Response(_consent_body(v["visitor_id"], consent), status=201)

    def choice(self, body: Any) -> dict[str, Any]:
        """The body as a checked consent choice (``visitor_id``, ``policy_version``,
        ``purposes``, ``method``), or a DomainError naming every problem. Bound to the
        storefront's JSON Schema checks, which every storefront body shares."""
        raise NotImplementedError


class ConsentDetailView(StorefrontBase):
    @extend_schema(responses={200: s.EffectiveConsentSerializer, **ERRORS})
    def get(self, request: Request, visitor_id: str) -> Response:
        if len(visitor_id) > 128:
            raise DomainError.from_problems(
                "invalid_visitor_id",
                [problem("visitor_id", "invalid", "has at most 128 characters")],
            )
        self.honour_gpc([visitor_id])
        consent = selectors.consent_effective(self.property_id, visitor_id)
        return Response(_consent_body(visitor_id, consent))


class PrivacyRequestsView(StorefrontBase):
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
            property_id=self.property_id,
            kind=v["kind"],
            regulation=v["regulation"],
            visitor_id=v["visitor_id"],
            contact=v.get("contact", ""),
            source="api",
            label=self.key_label,
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


class PrivacyRequestDetailView(StorefrontBase):
    @extend_schema(responses={200: s.PrivacyRequestStatusSerializer, **ERRORS})
    def get(self, request: Request, request_id: uuid.UUID) -> Response:
        found = selectors.request_by_public_id(self.property_id, request_id)
        if found is None:
            raise DomainError("not_found", "No such request for this property.", status=404)
        body = selectors.request_public(found)
        export = body["export"]
        if export is not None:
            token = export.pop("token")  # set once the archive is ready
            export["download_url"] = self._download_url(token, export) if token else None
        return Response(body)

    def _download_url(self, token: str, export: dict[str, Any]) -> str:
        """A signed link of an hour (never past the archive), for this property's secret key."""
        link = export_link_token(
            property_id=self.property_id, export_token=token, expires_at=export["expires_at"]
        )
        return self.request.build_absolute_uri(reverse("api-privacy-export", args=[link]))


class PrivacyExportView(StorefrontBase):
    """An access export's archive, for the storefront's server: the signed link that
    ``GET privacy-requests/<id>`` gives, opened with the same property's secret key."""

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
            property_id=self.property_id, link_token=link, label=self.key_label
        )
        return FileResponse(
            path.open("rb"),
            as_attachment=True,
            filename=f"privacy-export-{export.request.public_id}.zip",
            content_type="application/zip",
        )
