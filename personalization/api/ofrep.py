"""OpenFeature's Remote Evaluation Protocol (OFREP), served at ``/ofrep/v1/`` from the root.

Any OpenFeature SDK with the generic OFREP provider asks these endpoints for slot decisions
(README, "OpenFeature (OFREP)"; the contract is OFREP's own OpenAPI document, so these views
are left out of ``/api/v1/schema/``). Keys, origins, CORS, GPC and rate limits are the
storefront API's; requests and answers, failures included, are OFREP's.

The evaluation context maps onto a decision: ``targetingKey`` is the visitor id, an optional
``session_id`` the session, and every other field becomes ``context.attributes`` (what
conditions read). Without ``session_id`` the decision's session is ``""``: the visitor's
session-less evaluations share one session (budget, stickiness, empty session signals).
"""

from typing import Any

import orjson
from django.http import HttpResponse
from django.utils.http import parse_etags
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from ..decisions import DecideRequest
from .authentication import OfrepKeyAuthentication
from .errors import ofrep_error_body
from .ofrep_answers import etag_of, flag_evaluate, flags_evaluate
from .parsers import json_problem
from .permissions import StorefrontKey
from .renderers import json_bytes
from .views import StorefrontView

MAX_ID = 128  # visitor and session ids, as for POST /api/v1/decide
MAX_CONTEXT_FIELDS = 50
MAX_CONTEXT_DEPTH = 6  # the context object is level 1
MAX_CONTEXT_BYTES = 16 * 1024
RESERVED = ("targetingKey", "session_id")

# OFREP's former GET /ofrep/v1/configuration (protocol before v0.2; the current one dropped
# it): providers that still ask get what holds here.
CONFIGURATION = orjson.dumps(
    {
        "name": "micro-adjust",
        "capabilities": {
            # Bulk answers carry an ETag; each poll is a logged decision, so not too often.
            "cacheInvalidation": {"polling": {"enabled": True, "minPollingIntervalMs": 30000}},
            # Objects always; strings, numbers and booleans from slots with a typed value.
            "flagEvaluation": {"supportedTypes": ["object", "string", "int", "float", "boolean"]},
            # Each evaluation is a decision (logged, capped): server providers must not cache.
            "caching": {"enabled": False},
        },
    }
)
CONFIGURATION_ETAG = etag_of(CONFIGURATION)


class OfrepRefusal(Exception):
    """A failure OFREP defines for an evaluation request (400 or 404), in its shape."""

    def __init__(self, status: int, error_code: str, details: str, key: str | None) -> None:
        super().__init__(details)
        self.status = status
        self.body = ofrep_error_body(error_code, details, key)


def _invalid(details: str, key: str | None) -> OfrepRefusal:
    return OfrepRefusal(400, "INVALID_CONTEXT", details, key)


def evaluation_context(body: Any, key: str | None) -> tuple[str, str, dict[str, Any]]:
    """The visitor id, session id and decision context of an evaluation request
    ``{"context": {"targetingKey", "session_id"?, …}}``; refused in OFREP's terms. ``key``
    is the flag asked for (None for a bulk evaluation), named in the refusal."""
    if not isinstance(body, dict):
        raise OfrepRefusal(400, "PARSE_ERROR", 'The body must be {"context": {…}}.', key)
    context = body.get("context")
    if not isinstance(context, dict):
        raise _invalid('The body needs a "context" object.', key)
    visitor = context.get("targetingKey")
    if visitor is None or visitor == "":
        raise OfrepRefusal(
            400, "TARGETING_KEY_MISSING", "The context needs a targetingKey (the visitor id).", key
        )
    if not isinstance(visitor, str) or len(visitor) > MAX_ID:
        raise _invalid(f"targetingKey must be a string of at most {MAX_ID} characters.", key)
    session = context.get("session_id", "")
    if "session_id" in context and not (isinstance(session, str) and 0 < len(session) <= MAX_ID):
        raise _invalid(f"session_id must be a string of 1 to {MAX_ID} characters.", key)
    attributes = {name: value for name, value in context.items() if name not in RESERVED}
    if len(attributes) > MAX_CONTEXT_FIELDS:
        raise _invalid(f"The context has more than {MAX_CONTEXT_FIELDS} fields.", key)
    problem = json_problem(context, MAX_CONTEXT_DEPTH)
    if problem:
        raise _invalid(f"context: {problem}", key)
    if len(json_bytes(attributes)) > MAX_CONTEXT_BYTES:
        raise _invalid(f"The context is larger than {MAX_CONTEXT_BYTES} bytes of JSON.", key)
    return visitor, session, {"attributes": attributes} if attributes else {}


def _conditional(request: Request, encoded: bytes, etag: str) -> HttpResponse:
    """``encoded`` with its ETag, or a 304 when ``If-None-Match`` names it (or ``*``)."""
    sent = {tag.removeprefix("W/") for tag in parse_etags(request.headers.get("If-None-Match", ""))}
    if etag in sent or "*" in sent:
        response = HttpResponse(status=304)
        del response["Content-Type"]  # no body
    else:
        response = HttpResponse(encoded, content_type="application/json")
    response["ETag"] = etag
    return response


class OfrepView(StorefrontView):
    """Base of OFREP's endpoints: the storefront's keys (``X-API-Key`` too), origins and GPC;
    OFREP's own refusals in its shape (the others are reshaped by ``api.errors``)."""

    authentication_classes = [OfrepKeyAuthentication]
    permission_classes = [StorefrontKey]

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, OfrepRefusal):
            return Response(exc.body, status=exc.status)
        return super().handle_exception(exc)

    def decide_request(self, key: str | None) -> DecideRequest:
        """The decision asked for: flag ``key``'s slot, or (None) the slots a bulk
        evaluation fills in."""
        visitor, session, context = evaluation_context(self.request.data, key)
        slots = [key] if key is not None else []
        return DecideRequest(visitor, session, slots, context, gpc=self.gpc, ip=self.client_ip)


@extend_schema(exclude=True)
class OfrepFlagView(OfrepView):
    """``POST /ofrep/v1/evaluate/flags/{key}``: one slot, one decision."""

    def post(self, request: Request, key: str) -> HttpResponse:
        encoded = flag_evaluate(self.prop, key, self.decide_request(key))
        if encoded is None:
            raise OfrepRefusal(404, "FLAG_NOT_FOUND", f"No slot {key!r} in this property.", key)
        return HttpResponse(encoded, content_type="application/json")


@extend_schema(exclude=True)
class OfrepFlagsView(OfrepView):
    """``POST /ofrep/v1/evaluate/flags``: every slot of the property in one decision, with an
    ETag (``If-None-Match`` → 304 when the answers are unchanged)."""

    def post(self, request: Request) -> HttpResponse:
        encoded, etag = flags_evaluate(self.prop, self.decide_request(None))
        return _conditional(request, encoded, etag)


@extend_schema(exclude=True)
class OfrepConfigurationView(OfrepView):
    """``GET /ofrep/v1/configuration``: what this server supports (OFREP before v0.2)."""

    def get(self, request: Request) -> HttpResponse:
        return _conditional(request, CONFIGURATION, CONFIGURATION_ETAG)
