"""The storefront API, v1. Views validate input, fetch by id and call one service.

consent's endpoints (consent, privacy requests and exports) live in consent/api/ and are
bound to the storefront's keys in ``consent.py`` here."""

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

# The base (the property of the key, GPC honoured) and the error responses every storefront
# endpoint documents are consent's, with consent's endpoints (consent/api/views.py).
from consent.api.views import ERRORS, StorefrontBase

from ..decisions import DecideRequest, decide
from ..models import ApiKey, Property
from ..services.ingest import events_ingest
from . import serializers as s
from .authentication import ApiKeyAuthentication
from .permissions import StorefrontKey
from .renderers import JSONRenderer
from .validation import decide_body, events_envelope


class StorefrontView(StorefrontBase):
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


__all__ = ["ERRORS", "DecideView", "EventsView", "StorefrontView"]
