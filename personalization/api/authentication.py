from typing import Any

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from ..models import ApiKey
from ..services.keys import api_key_authenticate, bearer_token, is_secret_key
from .permissions import SecretKeyInBrowser


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer pk_…|sk_…``; ``request.auth`` becomes the ApiKey. A secret
    key sent from a browser (an ``Origin`` header) is refused, 403 ``secret_key_in_browser``."""

    keyword = "Bearer"

    def presented(self, request: Request) -> str | None:
        """The key the request presents; None when it presents none."""
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        token = bearer_token(header)
        if token is None:
            raise exceptions.AuthenticationFailed("Send the key as 'Authorization: Bearer <key>'.")
        return token

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        token = self.presented(request)
        if token is None:
            return None
        if is_secret_key(token) and "Origin" in request.headers:
            # Whether or not the key is valid: a secret key has no business in a browser.
            raise SecretKeyInBrowser()
        key = api_key_authenticate(token)
        if key is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        return (AnonymousUser(), key)

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'


class OfrepKeyAuthentication(ApiKeyAuthentication):
    """The same keys for OpenFeature's OFREP endpoints, which may also send them as
    ``X-API-Key: <key>`` (OFREP's ApiKeyAuth); ``Authorization`` wins when both are sent."""

    def presented(self, request: Request) -> str | None:
        if request.META.get("HTTP_AUTHORIZATION"):
            return super().presented(request)
        return request.META.get("HTTP_X_API_KEY", "").strip() or None


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Documents the key in the OpenAPI schema as an HTTP bearer scheme."""

    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A publishable (pk_…) or secret (sk_…) key of the property.",
        }
