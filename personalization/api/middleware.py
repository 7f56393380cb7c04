"""Sessions, signed-in users and messages for what people sign in to, not for requests that
authenticate by key.

The storefront API (``/api/v1/``) and OpenFeature's OFREP (``/ofrep/``) authenticate every
request by its API key: Django's session, authentication and message middleware would build a
session store, a lazy user and a message storage for each, and look at them again on the way
out, for nothing. These subclasses of the three (Django's admin checks still find them in
``MIDDLEWARE``) pass such requests straight on. The one API endpoint staff may also call signed
in, an experiment's results (``SessionAuthentication``, from the dashboards), keeps them.
CSRF, the security headers and everything else run for every request as before.
"""

from collections.abc import Awaitable

from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponseBase
from django.utils.deprecation import MiddlewareMixin

KEY_ONLY_PREFIXES = ("/api/v1/", "/ofrep/")
SIGNED_IN_TOO_PREFIXES = ("/api/v1/experiments/",)


def key_only(path: str) -> bool:
    """Whether the endpoint at ``path`` takes API keys only (no session, user or messages)."""
    return path.startswith(KEY_ONLY_PREFIXES) and not path.startswith(SIGNED_IN_TOO_PREFIXES)


class _SignInPagesOnly(MiddlewareMixin):
    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if key_only(request.path_info):
            return self.get_response(request)
        return super().__call__(request)


class PageSessionMiddleware(_SignInPagesOnly, SessionMiddleware):
    pass


class PageAuthenticationMiddleware(_SignInPagesOnly, AuthenticationMiddleware):
    pass


class PageMessageMiddleware(_SignInPagesOnly, MessageMiddleware):
    pass
