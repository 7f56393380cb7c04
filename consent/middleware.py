from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from .context import endpoint_begin, endpoint_end, endpoint_set


class RequestRouteMiddleware:
    """Remember the resolved route of the request (see ``consent.context``)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = endpoint_begin()
        try:
            return self.get_response(request)
        finally:
            endpoint_end(token)

    def process_view(
        self, request: HttpRequest, view_func: Any, view_args: Any, view_kwargs: Any
    ) -> None:
        match = request.resolver_match
        route = match.route if match is not None else ""
        endpoint_set(f"{request.method} /{route}")
