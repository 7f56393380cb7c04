from typing import Any

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from ..models import ApiKey
from ..services.keys import api_key_authenticate, bearer_token


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer pk_…|sk_…``; ``request.auth`` becomes the ApiKey."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        token = bearer_token(header)
        if token is None:
            raise exceptions.AuthenticationFailed("Send the key as 'Authorization: Bearer <key>'.")
        key = api_key_authenticate(token)
        if key is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        return (AnonymousUser(), key)

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'


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
