"""One error shape for the whole API: ``{"error": {"code", "message", "details"}}``.

``details`` is always an object, ``{}`` when there is nothing to add. When the request's
content is at fault, ``details.errors`` lists every problem found, each ``{"path", "code",
"message"}`` (``consent.exceptions.problem``); other keys belong to particular error codes
(README, "Errors"). DRF's exceptions, the application error type and Django's own error
pages (``ApiErrorShapeMiddleware``) all end up in it.

OpenFeature's OFREP endpoints (``/ofrep/``) answer in OFREP's shapes instead: the evaluation
views write their own failures (``FLAG_NOT_FOUND``, ``TARGETING_KEY_MISSING``,
``INVALID_CONTEXT``), and every other refusal there — authentication, origins, parsing, rate
limits, unknown paths, a 5xx — is made as above, then reshaped on its way out
(``ofrep_error_body``).
"""

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.settings import api_settings

from ..exceptions import ApplicationError, Problem, problem

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
OFREP_PREFIX = "/ofrep/"
# Where an error is JSON whoever answers it (Django's own 404 and 500 pages included).
JSON_PREFIXES = (API_PREFIX, OFREP_PREFIX)
RETRY_AFTER_SECONDS = 5

_DRF_CODES: list[tuple[type[exceptions.APIException], str]] = [
    (exceptions.ParseError, "malformed_json"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.AuthenticationFailed, "invalid_api_key"),
    (exceptions.NotAuthenticated, "missing_api_key"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.NotAcceptable, "not_acceptable"),
    (exceptions.NotFound, "not_found"),
    (exceptions.Throttled, "rate_limited"),
]


def error_body(code: str, message: str, details: Mapping[str, Any] | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": dict(details or {})}}


def ofrep_error_body(error_code: str | None, details: str, key: str | None = None) -> dict:
    """OFREP's failure shapes: ``{"key", "errorCode", "errorDetails"}`` for one flag (its
    evaluationFailure, flagNotFound), ``{"errorCode", "errorDetails"}`` for a bulk evaluation
    (bulkEvaluationFailure), ``{"errorDetails"}`` alone for the rest (generalErrorResponse)."""
    body: dict[str, str] = {}
    if key is not None:
        body["key"] = key
    if error_code is not None:
        body["errorCode"] = error_code
    body["errorDetails"] = details
    return body


def _join(path: str, key: Any) -> str:
    if key == api_settings.NON_FIELD_ERRORS_KEY:
        return path
    return f"{path}.{key}" if path else str(key)


def validation_problems(detail: Any, path: str = "") -> list[Problem]:
    """A DRF ValidationError's nested detail, flattened into problems by dotted path."""
    if isinstance(detail, dict):
        return [
            p for key, value in detail.items() for p in validation_problems(value, _join(path, key))
        ]
    if isinstance(detail, list):
        found: list[Problem] = []
        for index, item in enumerate(detail):
            if isinstance(item, dict | list):
                found.extend(validation_problems(item, _join(path, index)))
            else:
                code = "required" if getattr(item, "code", None) == "required" else "invalid"
                found.append(problem(path, code, str(item)))
        return found
    return [problem(path, "invalid", str(detail))]


def _message(detail: Any) -> str:
    if isinstance(detail, list | tuple) and detail:
        return _message(detail[0])
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        return f"{key}: {_message(value)}"
    return str(detail)


def _refusal(exc: ApplicationError) -> Response:
    return Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    headers: dict[str, str] = {}
    if isinstance(exc, ApplicationError):
        return _refusal(exc)
    if isinstance(exc, OperationalError | InterfaceError):
        logger.warning("database unavailable: %s", exc)
        return Response(
            error_body("service_unavailable", "The database is unavailable; retry shortly."),
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, RequestDataTooBig):
        return Response(error_body("payload_too_large", "The request body is too large."), 413)
    if isinstance(exc, SuspiciousOperation):
        return Response(error_body("bad_request", "The request was refused."), 400)
    if isinstance(exc, Http404):
        return Response(error_body("not_found", "Not found."), status=404)
    if isinstance(exc, DjangoPermissionDenied):
        return Response(error_body("permission_denied", "Permission denied."), status=403)
    if isinstance(exc, exceptions.ValidationError):
        # A serializer's refusal is a refusal of the request's content like any other.
        found = validation_problems(exc.detail) or [problem("", "invalid", _message(exc.detail))]
        return _refusal(ApplicationError.from_problems("invalid_request", found))
    if isinstance(exc, exceptions.APIException):
        wait = getattr(exc, "wait", None)
        if isinstance(exc, exceptions.Throttled) and wait:
            headers["Retry-After"] = str(int(wait))
        code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), None)
        if isinstance(exc, exceptions.PermissionDenied):
            codes = exc.get_codes()
            code = codes if isinstance(codes, str) else "permission_denied"
        status = exc.status_code
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            status = 401
            headers["WWW-Authenticate"] = 'Bearer realm="api"'
        return Response(
            error_body(code or "error", _message(exc.detail)),
            status=status,
            headers=headers,
        )
    if isinstance(exc, DatabaseError):
        logger.exception("database error")
    return None


def json_404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("not_found", "No such endpoint."), status=404)


def json_500(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        error_body("internal_error", "Internal error; it has been logged."), status=500
    )


# Django answers some errors itself, as HTML: the debug 404 page (DEBUG skips handler404),
# a 400 for a Host that is not allowed, a 405 of a view with an HTML renderer (the docs).
_CODES = {
    400: ("bad_request", "The request was refused."),
    401: ("unauthorized", "Authentication is needed."),
    403: ("permission_denied", "Permission denied."),
    404: ("not_found", "No such endpoint."),
    405: ("method_not_allowed", "This method is not allowed here."),
    406: ("not_acceptable", "Only JSON is served."),
    413: ("payload_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Send JSON (Content-Type: application/json)."),
    429: ("rate_limited", "Too many requests."),
    503: ("service_unavailable", "Unavailable; retry shortly."),
}
_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


def _is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").split(";")[0].strip() == "application/json"


def _our_message(response: HttpResponse) -> str | None:
    """The message of a JSON response in the API's error shape; None for another body."""
    try:
        error = json.loads(response.content).get("error")
    except (ValueError, AttributeError):
        return None
    return str(error.get("message", "")) if isinstance(error, dict) else None


def _standard(response: HttpResponse) -> tuple[str, str]:
    """The code and message of a response Django answered itself (an HTML page)."""
    status = response.status_code
    fallback = (
        ("internal_error", "Internal error; it has been logged.")
        if status >= 500
        else ("error", f"{response.reason_phrase}.")
    )
    return _CODES.get(status, fallback)


def _reshaped(body: dict, response: HttpResponse) -> JsonResponse:
    shaped = JsonResponse(body, status=response.status_code)
    for name in _KEPT_HEADERS:
        if name in response:
            shaped[name] = response[name]
    return shaped


def _ofrep_shaped(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """An error under /ofrep/ in OFREP's shape. What the OFREP views answered themselves is
    already; a 400 made elsewhere is a request that could not be read (``PARSE_ERROR``, with
    the flag's key on the one-flag endpoint); any other status is OFREP's general error."""
    if _is_json(response):
        message = _our_message(response)
        if message is None:
            return response  # the OFREP view's own answer
    else:
        message = _standard(response)[1]
    error_code, key = None, None
    if response.status_code == 400:
        error_code = "PARSE_ERROR"
        match = request.resolver_match
        key = match.kwargs.get("key") if match is not None else None
    return _reshaped(ofrep_error_body(error_code, message, key), response)


class ApiErrorShapeMiddleware:
    """Every error answered under /api/ in the one error shape, whoever produced it; under
    /ofrep/, in OFREP's."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code < 400:
            return response
        if request.path.startswith(OFREP_PREFIX):
            return _ofrep_shaped(request, response)
        if not request.path.startswith(API_PREFIX) or _is_json(response):
            return response
        return _reshaped(error_body(*_standard(response)), response)
