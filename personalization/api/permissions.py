from typing import Any

from rest_framework import exceptions
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from ..models import ApiKey


class DenyAll(BasePermission):
    """The default: a view that declares no permission refuses everyone."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return False


class OriginNotAllowed(exceptions.PermissionDenied):
    default_code = "origin_not_allowed"
    default_detail = "This origin is not among the property's allowed origins."


class SecretKeyInBrowser(exceptions.PermissionDenied):
    default_code = "secret_key_in_browser"
    default_detail = (
        "A secret (sk_) key is for servers only, and this request came from a browser (it "
        "carries an Origin header). Use a publishable (pk_) key in pages; if this secret key "
        "was ever in a page, revoke it."
    )


class StorefrontKey(BasePermission):
    """A publishable or secret key. A publishable key must come from an allowed origin."""

    def has_permission(self, request: Request, view: Any) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            raise exceptions.NotAuthenticated("Send an API key as 'Authorization: Bearer <key>'.")
        origin = request.headers.get("Origin")
        if origin and not key.is_secret and not key.property.origin_allowed(origin):
            raise OriginNotAllowed()
        return True


class SecretKey(StorefrontKey):
    # Only a server can call it: CORS answers no browser for it, not even a preflight.
    secret_only = True

    def has_permission(self, request: Request, view: Any) -> bool:
        super().has_permission(request, view)
        key = request.auth
        if not (isinstance(key, ApiKey) and key.is_secret):
            raise exceptions.PermissionDenied("This endpoint needs a secret (sk_) key.")
        return True
