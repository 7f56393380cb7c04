"""CORS for the storefront API: a storefront on another origin calls /api/v1/ (and OpenFeature's
/ofrep/v1/, through the OFREP web provider) from the browser.

A preflight cannot carry the API key, so it is answered for any origin; the origin check
happens on the actual request, where a publishable key from an origin that is not among its
property's allowed origins is refused (403 ``origin_not_allowed``). Actual responses echo the
origin so that the storefront's script can read them (errors included, so it can say why).
No credentials (cookies) are involved: the key travels in the Authorization header.

Secret keys are for servers. CORS never answers a request that carries one (it is refused,
403 ``secret_key_in_browser``, and the page cannot even read that), nor any request, preflight
included, to an endpoint that only a secret key may call (privacy requests, their exports,
experiment results).
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve
from django.utils.cache import patch_vary_headers

from ..services.keys import is_secret_key, presented_key

PREFIXES = ("/api/v1/", "/ofrep/v1/")
ALLOW_METHODS = "GET, POST, OPTIONS"
# X-API-Key: OFREP's other way to send the key; If-None-Match: its bulk revalidation.
ALLOW_HEADERS = "Authorization, Content-Type, Sec-GPC, X-API-Key, If-None-Match"
# Retry-After: the tracker (and OFREP's providers) honour it on a 503 or 429; ETag: what an
# OFREP web provider sends back as If-None-Match.
EXPOSE_HEADERS = "Retry-After, ETag"
# Chromium caps a cached preflight at 2 hours, Firefox at 24.
MAX_AGE_SECONDS = 7200


def _secret_only(path: str) -> bool:
    """Whether the endpoint at ``path`` takes secret keys only (its permission says so)."""
    try:
        match = resolve(path)
    except Resolver404:
        return False
    view = getattr(match.func, "cls", None)
    permissions = getattr(view, "permission_classes", ())
    return any(getattr(permission, "secret_only", False) for permission in permissions)


def _carries_secret_key(request: HttpRequest) -> bool:
    token = presented_key(
        request.headers.get("Authorization", ""), request.headers.get("X-API-Key", "")
    )
    return token is not None and is_secret_key(token)


class ApiCorsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(PREFIXES):
            return self.get_response(request)
        origin = request.headers.get("Origin")
        if origin and (_carries_secret_key(request) or _secret_only(request.path_info)):
            origin = None  # the browser gets no CORS headers: it cannot read the answer
        if (
            origin
            and request.method == "OPTIONS"
            and "Access-Control-Request-Method" in request.headers
        ):
            response = HttpResponse(status=204)
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Allow-Methods"] = ALLOW_METHODS
            response["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            response["Access-Control-Max-Age"] = str(MAX_AGE_SECONDS)
            patch_vary_headers(
                response,
                ("Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"),
            )
            return response
        response = self.get_response(request)
        if origin:
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        patch_vary_headers(response, ("Origin",))
        return response
