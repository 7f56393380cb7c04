"""Security headers Django does not send by itself: Content-Security-Policy and
Permissions-Policy. (HSTS, nosniff, Referrer-Policy and COOP come from SecurityMiddleware,
X-Frame-Options from the clickjacking middleware.)

The policy has no ``unsafe-inline`` and no ``unsafe-eval``: every page of the app — the admin,
the dashboards, the privacy pages, the demo storefront and the API docs (drf-spectacular's
split Swagger view, served from the sidecar package) — loads its scripts and styles as files
from our own origin.
"""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.csp: str = settings.CONTENT_SECURITY_POLICY
        self.permissions_policy: str = settings.PERMISSIONS_POLICY

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if self.csp:
            response.headers.setdefault("Content-Security-Policy", self.csp)
        if self.permissions_policy:
            response.headers.setdefault("Permissions-Policy", self.permissions_policy)
        return response
