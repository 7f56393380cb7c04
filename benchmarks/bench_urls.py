"""The project's URLs, unchanged, plus ``/bench/trivial``: the trivial DRF endpoint decide is
compared against (same gunicorn, same workers, same middleware, same DRF settings)."""

from typing import Any

from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from personalization.urls import handler404, handler500  # noqa: F401  (same error handlers)
from personalization.urls import urlpatterns as base


class TrivialView(APIView):
    """No authentication, no body parsing, no database: ``{"ok": true}``."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        return Response({"ok": True})

    def post(self, request: Request) -> Response:
        return Response({"ok": True})


urlpatterns = [path("bench/trivial", TrivialView.as_view(), name="bench-trivial"), *base]
