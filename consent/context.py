"""The storefront route being served, for evidence rows written deep inside a service.

GPC evidence names the endpoint that carried the signal. Services that apply GPC
are called from several views and from ingestion; rather than thread the route
through each of them, ``consent.middleware.RequestRouteMiddleware`` records it
here for the duration of the request. Only the route pattern is kept
(``api/v1/consent/<str:visitor_id>``), never the path, which may hold a visitor id.
"""

from contextvars import ContextVar, Token

_route: ContextVar[str] = ContextVar("consent_route", default="")


def current_endpoint() -> str:
    return _route.get()


def endpoint_set(value: str) -> None:
    _route.set(value)


def endpoint_begin() -> Token[str]:
    """A fresh value for one request; ``endpoint_end`` restores what was there before."""
    return _route.set("")


def endpoint_end(token: Token[str]) -> None:
    _route.reset(token)
