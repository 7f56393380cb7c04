from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from consent.tenancy import properties_for
from personalization.models import Fate
from personalization.selectors import ingest_fates

WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


def property_permission_required(codename: str) -> Callable:
    """Staff holding ``codename`` on at least one property; everyone else gets 403."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @staff_member_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not properties_for(request.user, codename).exists():
                raise PermissionDenied(f"You hold no property with the {codename} permission.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


@property_permission_required("view_dashboards")
def data_quality(request: HttpRequest) -> HttpResponse:
    """Per property and event type: how many events met each fate (Marketing, Analysts)."""
    properties = properties_for(request.user, "view_dashboards")
    window = request.GET.get("window", "24h")
    if window not in WINDOWS:
        window = "24h"
    since = timezone.now() - WINDOWS[window]
    return render(
        request,
        "dashboard/data_quality.html",
        {
            "rows": ingest_fates(properties, since),
            "fates": Fate.choices,
            "window": window,
            "windows": list(WINDOWS),
            "title": "Data quality",
        },
    )
