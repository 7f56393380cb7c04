"""Every dashboard page in headless Chromium, with simulated demo traffic rolled up.

The data is built the way `make run` builds it (the demo's targeting, simulated traffic over
nine weeks, snapshots backfilled, the rollups run by calling the services directly), then a
staff user with the Marketing and Privacy-officer roles opens each page: every chart must be
drawn by Plotly (an SVG ``.main-svg`` in each chart's container), nothing may be logged to the
console as an error (a Content-Security-Policy violation is one), and a screenshot of each
page goes to ``screenshots/dashboards/`` (ignored by git).
"""

from pathlib import Path
from typing import Any

import pytest

from dashboard.rollups import rollups_run
from personalization.models import Property
from personalization.permissions import MARKETING, PRIVACY_OFFICERS, role_grant
from personalization.services.properties import property_create
from personalization.simulation import demo_snapshots_backfill, demo_targeting, simulate
from tests.browser import admin_login

pytestmark = pytest.mark.django_db(transaction=True)

SCREENSHOTS = Path(__file__).resolve().parents[2] / "screenshots" / "dashboards"
PAGES = {
    "overview": "/dashboard/",
    "rules": "/dashboard/rules/",
    "experiments": "/dashboard/experiments/",
    "retention": "/dashboard/retention/",
    "feedback": "/dashboard/feedback/",
    "segments": "/dashboard/segments/",
    "data-quality": "/dashboard/data-quality/",
    "consent": "/dashboard/consent/",
}
# What the app must hold to: no inline script or style anywhere on these pages.
STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'"
)
DAYS = 63


@pytest.fixture
def demo_rolled(db: Any) -> Property:
    prop, _ = property_create(name="Demo shop", origins=["http://127.0.0.1:8000"])
    demo_targeting(prop)
    simulate(prop=prop, visitors=90, days=DAYS, seed=5, personalize=True)
    demo_snapshots_backfill(prop, days=DAYS, every_days=9)
    rollups_run(property_ids=[prop.pk], full=True, retention=True)
    return prop


def _strict_csp(page: Any) -> None:
    """Serve every dashboard page under a strict policy (the app's own, or ours if it sends
    none), so an inline script or style would show up as a console error."""

    def serve(route: Any) -> None:
        response = route.fetch()
        headers = dict(response.headers)
        if "content-security-policy" not in {k.lower() for k in headers}:
            headers["content-security-policy"] = STRICT_CSP
        route.fulfill(response=response, headers=headers)

    page.route("**/dashboard/**", serve)


def test_dashboards__demo_data__every_chart_drawn_without_console_errors(
    page: Any, live_server: Any, demo_rolled: Property, staff: Any
) -> None:
    # Given a staff user who may read the dashboards and the consent page of the demo property
    user = staff(MARKETING, demo_rolled)
    role_grant(user, demo_rolled, PRIVACY_OFFICERS)
    page_errors: list[str] = []
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    _strict_csp(page)
    admin_login(page, live_server, user.username, "pw-Long-enough-123")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    drawn: dict[str, int] = {}
    for name, path in PAGES.items():
        # When they open each page
        response = page.goto(live_server.url + path)
        assert response is not None and response.status == 200, name
        assert "unsafe-inline" not in (response.headers.get("content-security-policy") or "")
        charts = page.locator(".dash-chart")
        count = charts.count()
        # Then every chart on it is drawn as a Plotly SVG
        for i in range(count):
            charts.nth(i).locator(".main-svg").first.wait_for(state="attached")
        drawn[name] = page.locator(".dash-chart:has(.main-svg)").count()
        assert drawn[name] == count, name
        if name == "retention":
            # a heatmap row per weekly cohort of the nine weeks, and later weeks
            cohorts = page.evaluate("document.getElementById('chart-cohorts').data[0].y.length")
            weeks = page.evaluate("document.getElementById('chart-cohorts').data[0].x.length")
            assert cohorts >= 8 and weeks >= 4, (cohorts, weeks)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    # Every page shows something meaningful from nine weeks of demo traffic
    assert all(drawn[name] >= 1 for name in PAGES), drawn
    assert drawn["overview"] == 3 and drawn["retention"] == 2 and drawn["consent"] >= 2
    # and nothing went wrong in the browser (CSP violations are console errors)
    assert page.console_errors == [], page.console_errors  # type: ignore[attr-defined]
    assert page_errors == []
    assert sorted(p.name for p in SCREENSHOTS.glob("*.png")) >= sorted(f"{n}.png" for n in PAGES)
