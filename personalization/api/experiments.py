"""GET /api/v1/experiments/<key>/results — with a secret key, or as signed-in staff."""

from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consent.tenancy import properties_for

from ..exceptions import ApplicationError, problem
from ..models import ApiKey, Experiment
from ..services.experiments import experiment_results
from .authentication import ApiKeyAuthentication
from .serializers import ErrorSerializer


def at_param(raw: str) -> datetime:
    """``?at=``: a date (its end, UTC) or an ISO time (naive: UTC), as an aware UTC time.
    Anything else, or a time outside what a datetime holds once in UTC
    (``0001-01-01T00:00:00+14:00``), is the client's mistake: a 400."""
    try:  # well-formed but impossible ("2026-02-30") raises ValueError
        at = parse_datetime(raw)
        if at is None and parse_date(raw) is not None:
            at = parse_datetime(f"{raw}T23:59:59+00:00")
        if at is not None:
            at = at.astimezone(UTC) if timezone.is_aware(at) else at.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        at = None
    if at is None:
        raise ApplicationError.from_problems(
            "invalid_request",
            [problem("at", "invalid", "takes a date (2026-11-25) or an ISO time, years 1–9999")],
        )
    return at


class SecretKeyOrStaff(BasePermission):
    """A secret key of the experiment's property, or staff who may read its dashboards."""

    # Only a server (or the staff's own pages, same origin) calls it: no CORS for it.
    secret_only = True

    def has_permission(self, request: Request, view: Any) -> bool:
        if isinstance(request.auth, ApiKey):
            if not request.auth.is_secret:
                raise exceptions.PermissionDenied("Experiment results need a secret (sk_) key.")
            return True
        user = request.user
        if user is not None and user.is_authenticated and user.is_staff:
            return True
        raise exceptions.NotAuthenticated("Send a secret key, or sign in as staff.")


class ExperimentResultsView(APIView):
    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
    permission_classes = [SecretKeyOrStaff]

    def _experiment(self, request: Request, key: str) -> Experiment:
        if isinstance(request.auth, ApiKey):
            found = Experiment.objects.filter(property=request.auth.property, key=key)
        else:
            found = Experiment.objects.filter(
                key=key, property__in=properties_for(request.user, "view_dashboards")
            )
            if request.query_params.get("property"):
                found = found.filter(property__slug=request.query_params["property"])
        matches = list(found[:2])
        if not matches:
            raise ApplicationError("not_found", f"No experiment {key!r} here.", status=404)
        if len(matches) > 1:
            raise ApplicationError(
                "ambiguous",
                "Several of your properties have this experiment: add ?property=<slug>.",
            )
        return matches[0]

    @extend_schema(
        parameters=[
            OpenApiParameter("at", str, description="A date or time: the snapshot in force then."),
            OpenApiParameter("property", str, description="Staff only: the property's slug."),
        ],
        responses={
            200: dict,
            400: ErrorSerializer,
            401: ErrorSerializer,
            403: ErrorSerializer,
            404: ErrorSerializer,
            429: ErrorSerializer,
            503: ErrorSerializer,
        },
        summary="An experiment's results",
    )
    def get(self, request: Request, key: str) -> Response:
        experiment = self._experiment(request, key)
        raw = request.query_params.get("at")
        at = at_param(raw) if raw else None
        return Response(experiment_results(experiment=experiment, at=at))
