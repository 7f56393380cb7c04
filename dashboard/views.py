"""The dashboard pages: thin views over ``dashboard.page_data`` (which reads the rollups).

Every page is staff only and shows one property the user holds ``view_dashboards`` on
(the Consent page: ``view_consent_dashboard``, privacy officers); its filters are a GET
form kept in the URL; ``?format=csv&chart=<name>`` downloads the rows behind one chart.
"""

import csv
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from consent.csv_safe import csv_cell
from consent.tenancy import properties_for

from . import page_data
from .filters import DashboardFilterForm, Filters
from .finders import plotly_maplibre_style_id
from .models import RollupKind

DASHBOARDS = "view_dashboards"
CONSENT = "view_consent_dashboard"


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


@dataclass(frozen=True)
class Page:
    name: str  # the URL name, and the CSS/test hook
    title: str
    permission: str
    build: Callable[[Filters], page_data.PageData]
    filters: tuple[str, ...] = ("property", "start", "end")
    template: str = "dashboard/page.html"
    description: str = ""
    # The rollups the page reads: it says "data as of" their watermark (Experiments reads
    # results snapshots and says when the latest was taken instead).
    rollups: tuple[str, ...] = (RollupKind.HOURLY.value,)


ALL_FILTERS = ("property", "start", "end", "slot", "segment", "device")
PAGES = [
    Page(
        "overview",
        "Overview",
        DASHBOARDS,
        page_data.overview,
        ALL_FILTERS,
        description="Adjustments served, and how personalized visitors fare against the "
        "holdout (95% intervals).",
    ),
    Page(
        "rules",
        "Rules",
        DASHBOARDS,
        page_data.rules,
        ALL_FILTERS,
        template="dashboard/rules.html",
        description="Per rule and version: exposures, suppressions, and click-through lift "
        "against the slot's default (95% intervals).",
    ),
    Page(
        "experiments",
        "Experiments",
        DASHBOARDS,
        page_data.experiments,
        ("property", "start", "end", "slot"),
        template="dashboard/experiments.html",
        description="Each experiment's latest results snapshot: lift per variant and goal, "
        "sample-ratio checks, the recommendation, and the snapshot history.",
    ),
    Page(
        "retention",
        "Retention",
        DASHBOARDS,
        page_data.retention,
        description="Visitors first seen in a week, and the share active in each later "
        "week; personalized against holdout.",
        rollups=(RollupKind.RETENTION.value,),
    ),
    Page(
        "feedback",
        "Feedback",
        DASHBOARDS,
        page_data.feedback,
        template="dashboard/feedback.html",
        description="Survey scores by what the visitor was shown before answering "
        "(95% intervals), and recent free-text answers.",
        rollups=(RollupKind.SURVEYS.value,),
    ),
    Page(
        "segments",
        "Segments",
        DASHBOARDS,
        page_data.segments,
        ("property", "start", "end", "segment"),
        template="dashboard/segments.html",
        description="Distinct visitors per day whose decisions placed them in each segment.",
        rollups=(RollupKind.SEGMENTS.value,),
    ),
    Page(
        "data-quality",
        "Data quality",
        DASHBOARDS,
        page_data.data_quality,
        template="dashboard/data_quality.html",
        description="What became of the events received: stored, duplicates, quarantined, "
        "dropped for lack of consent.",
        rollups=(RollupKind.FATES.value,),
    ),
    Page(
        "consent",
        "Consent",
        CONSENT,
        page_data.consent,
        template="dashboard/consent.html",
        description="Opt-in per purpose, the Global Privacy Control share, and data-subject "
        "requests by deadline (privacy officers only).",
        rollups=(RollupKind.CONSENT.value,),
    ),
]
PAGES_BY_NAME = {page.name: page for page in PAGES}


def _nav(request: HttpRequest) -> list[dict[str, str]]:
    """The pages this user may open (dashboards, consent, or both)."""
    allowed = {
        codename
        for codename in (DASHBOARDS, CONSENT)
        if properties_for(request.user, codename).exists()
    }
    return [
        {"name": p.name, "title": p.title, "url": reverse(f"dashboard:{p.name}")}
        for p in PAGES
        if p.permission in allowed
    ]


def csv_response(chart: Any, filters: Filters) -> HttpResponse:
    name = f"{filters.prop.slug}-{chart.name}-{filters.start}-{filters.end}.csv"
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    writer = csv.writer(response)
    writer.writerow([csv_cell(c) for c in chart.columns])
    writer.writerows([csv_cell(c) for c in row] for row in chart.rows)
    return response


def _bad_request(request: HttpRequest, context: dict[str, Any], message: str) -> HttpResponse:
    context["form_message"] = message
    return render(request, context["page"].template, context, status=400)


def dashboard_page(page: Page) -> Callable[..., HttpResponse]:
    @property_permission_required(page.permission)
    def view(request: HttpRequest) -> HttpResponse:
        form = DashboardFilterForm(
            request.GET, properties=properties_for(request.user, page.permission)
        )
        context: dict[str, Any] = {
            "page": page,
            "title": page.title,
            "form": form,
            "nav": _nav(request),
            "filters": None,
            "charts": [],
            "plotly_maplibre_id": plotly_maplibre_style_id(),
        }
        wanted = request.GET.get("format", "html")
        if wanted not in ("html", "csv"):
            return _bad_request(request, context, "format must be html or csv.")
        if not form.is_valid():
            return _bad_request(request, context, "Correct the filters.")
        filters = form.filters()
        data = page.build(filters)
        if wanted == "csv":
            charts = {chart.name: chart for chart in data.charts}
            chart = charts.get(request.GET.get("chart", ""))
            if chart is None:
                names = ", ".join(charts)
                return _bad_request(request, context, f"chart must be one of: {names}.")
            return csv_response(chart, filters)
        as_of = data.extra.pop("data_as_of", None) or page_data.rollups_as_of(filters, page.rollups)
        context.update(filters=filters, charts=data.charts, data_as_of=as_of, **data.extra)
        return render(request, page.template, context)

    view.__name__ = view.__qualname__ = page.name.replace("-", "_")
    return view


overview = dashboard_page(PAGES_BY_NAME["overview"])
rules = dashboard_page(PAGES_BY_NAME["rules"])
experiments = dashboard_page(PAGES_BY_NAME["experiments"])
retention = dashboard_page(PAGES_BY_NAME["retention"])
feedback = dashboard_page(PAGES_BY_NAME["feedback"])
segments = dashboard_page(PAGES_BY_NAME["segments"])
data_quality = dashboard_page(PAGES_BY_NAME["data-quality"])
consent = dashboard_page(PAGES_BY_NAME["consent"])
