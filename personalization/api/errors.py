"""One error shape for the whole API: ``{"error": {"code", "message", "details"}}``."""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response

from ..exceptions import ApplicationError

logger = logging.getLogger(__name__)

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
    (exceptions.ValidationError, "invalid_request"),
]


def error_body(code: str, message: str, details: Any = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details}}


def _message(detail: Any) -> str:
    if isinstance(detail, list | tuple) and detail:
        return _message(detail[0])
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        return f"{key}: {_message(value)}"
    return str(detail)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    headers: dict[str, str] = {}
    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)
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
    if isinstance(exc, exceptions.APIException):
        wait = getattr(exc, "wait", None)
        if isinstance(exc, exceptions.Throttled) and wait:
            headers["Retry-After"] = str(int(wait))
        code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), None)
        if isinstance(exc, exceptions.PermissionDenied):
            codes = exc.get_codes()
            code = codes if isinstance(codes, str) else "permission_denied"
        details = exc.detail if isinstance(exc, exceptions.ValidationError) else None
        status = exc.status_code
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            status = 401
            headers["WWW-Authenticate"] = 'Bearer realm="api"'
        return Response(
            error_body(code or "error", _message(exc.detail), details),
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
