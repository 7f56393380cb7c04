"""CORS for the storefront API: a storefront on another origin calls /api/v1/ from the browser.

A preflight cannot carry the API key, so it is answered for any origin; the origin check
happens on the actual request, where a publishable key from an origin that is not among its
property's allowed origins is refused (403 ``origin_not_allowed``). Actual responses echo the
origin so that the storefront's script can read them (errors included, so it can say why).
No credentials (cookies) are involved: the key travels in the Authorization header.
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers

API_PREFIX = "/api/v1/"
ALLOW_METHODS = "GET, POST, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Sec-GPC"
# Chromium caps a cached preflight at 2 hours, Firefox at 24.
MAX_AGE_SECONDS = 7200


class ApiCorsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        origin = request.headers.get("Origin")
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
            # The tracker honours Retry-After on a 503 (or 429).
            response["Access-Control-Expose-Headers"] = "Retry-After"
        patch_vary_headers(response, ("Origin",))
        return response
