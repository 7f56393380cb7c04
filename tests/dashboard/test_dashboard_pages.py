"""The dashboard pages: who may open them, what they show, their filters and CSV downloads.

The rollup rows are written here with known numbers (how rollups are computed from events is
tests/dashboard/test_dashboard_rollups.py's subject), so every figure on a page can be
checked by hand.
"""

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.utils import timezone

from consent.services.requests import privacy_request_submit
from dashboard.finders import plotly_css
from dashboard.models import (
    AdjustmentHourly,
    ConsentDaily,
    EventFateDaily,
    RetentionCohortDaily,
    SegmentSizeDaily,
    SurveyScoreDaily,
    SurveySeenDaily,
)
from personalization.models import Experiment, ExperimentSnapshot, Survey
from personalization.permissions import ANALYSTS, MARKETING, PRIVACY_OFFICERS
from personalization.services.surveys import survey_response_submit
from personalization.simulation import demo_targeting

pytestmark = pytest.mark.django_db

DASHBOARDS = ["overview", "rules", "experiments", "retention", "feedback", "segments"]
DASHBOARDS += ["data-quality"]
EVERY_PAGE = [*DASHBOARDS, "consent"]
TODAY = timezone.now().date()
RECENT = datetime.combine(TODAY - timedelta(days=2), datetime.min.time(), tzinfo=UTC)
OLD = RECENT - timedelta(days=70)  # before the default nine weeks


def url(page: str, **query: Any) -> str:
    path = "/dashboard/" if page == "overview" else f"/dashboard/{page}/"
    if query:
        path += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    return path


def login(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def read_csv(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def hourly(prop: Any, **values: Any) -> AdjustmentHourly:
    row: dict[str, Any] = {
        "property": prop,
        "hour": RECENT + timedelta(hours=10),
        "slot_key": "cta",
        "source_kind": "default",
        "source_key": "",
        "source_version": 0,
        "variant_key": "default",
        "is_default": True,
        "device_type": "desktop",
        "group": "personalized",
    }
    row.update(values)
    return AdjustmentHourly.objects.create(**row)


def snapshot(experiment: Any, at: datetime, lift: float, flagged: bool) -> None:
    """A stored results snapshot, shaped as experiment_results_compute writes it."""
    variants = [
        {"variant": "default", "users": 500, "rate": 0.2, "lift": None},
        {
            "variant": "short",
            "users": 520,
            "rate": 0.2 * (1 + lift),
            "verdict": "better",
            "lift": {"relative": lift, "ci_low": lift - 0.05, "ci_high": lift + 0.05},
            "p_value": 0.001,
            "p_value_adjusted": 0.002,
            "chance_to_win": 0.99,
        },
    ]
    ExperimentSnapshot.objects.create(
        experiment=experiment,
        computed_at=at,
        results={
            "snapshot_at": at.isoformat(),
            "srm_p_value": 0.0001 if flagged else 0.5,
            "srm_flagged": flagged,
            "warnings": ["Sample ratio mismatch (p < 0.001)"] if flagged else [],
            "recommendation": None if flagged else "ship",
            "recommendation_detail": None if flagged else "short beats the control.",
            "goals": [{"key": "cta-click", "role": "primary", "variants": variants}],
        },
    )


RULE = {"source_kind": "rule", "source_key": "returning-cta", "source_version": 1}


@pytest.fixture
def rolled(make_shop: Any, consent: Any) -> Any:
    """A property with the demo's targeting and one known row in every rollup."""
    shop = make_shop("Alpha shop")
    prop = shop.prop
    demo_targeting(prop)
    # The rule: 100 desktop + 40 mobile exposures; the slot's default 200; the holdout 50.
    hourly(
        prop,
        **RULE,
        variant_key="b",
        is_default=False,
        exposures=100,
        clicks=30,
        sessions=80,
        session_seconds=8000,
        session_seconds_sq=1_000_000,
        bounces=20,
    )
    hourly(
        prop,
        **RULE,
        variant_key="b",
        is_default=False,
        device_type="mobile",
        exposures=40,
        clicks=4,
        sessions=40,
        session_seconds=1200,
        session_seconds_sq=50_000,
        bounces=30,
    )
    hourly(
        prop,
        exposures=200,
        clicks=40,
        sessions=150,
        session_seconds=9000,
        session_seconds_sq=800_000,
        bounces=60,
    )
    hourly(
        prop,
        group="holdout",
        exposures=50,
        clicks=8,
        sessions=50,
        session_seconds=2500,
        session_seconds_sq=200_000,
        bounces=20,
    )
    hourly(
        prop,
        **{**RULE, "source_version": 0},
        variant_key="",
        is_default=False,
        suppressed_cooldown=5,
        suppressed_conflict=2,
    )
    # 72 days ago: outside the default nine weeks
    hourly(prop, **RULE, variant_key="b", is_default=False, hour=OLD, exposures=7, clicks=7)
    monday = TODAY - timedelta(days=TODAY.weekday() + 21)
    for group, size, active in (("personalized", 40, [40, 12, 8]), ("holdout", 10, [10, 2, 1])):
        for weeks, count in enumerate(active):
            RetentionCohortDaily.objects.create(
                property=prop,
                cohort_week=monday,
                weeks_since=weeks,
                group=group,
                cohort_size=size,
                active=count,
            )
    score = {
        "property": prop,
        "day": RECENT.date(),
        "survey_key": "nps",
        "question_key": "recommend",
        "question_type": "nps",
    }
    SurveyScoreDaily.objects.create(
        **score,
        exposure_kind="all",
        answers=30,
        total=210,
        total_sq=1590,
        promoters=9,
        passives=12,
        detractors=9,
    )
    SurveyScoreDaily.objects.create(
        **score,
        exposure_kind="rule",
        exposure_key="returning-cta",
        answers=10,
        total=85,
        total_sq=731,
        promoters=6,
        passives=3,
        detractors=1,
    )
    seen = {
        "property": prop,
        "day": RECENT.date(),
        "survey_key": "nps",
        "question_key": "recommend",
    }
    SurveySeenDaily.objects.create(
        **seen, bucket="", n=30, sum_x=60, sum_y=210, sum_xx=200, sum_yy=1590, sum_xy=460
    )
    SurveySeenDaily.objects.create(**seen, bucket="0", n=10, sum_y=60, sum_yy=380)
    SurveySeenDaily.objects.create(
        **seen, bucket="3-5", n=20, sum_x=60, sum_y=150, sum_xx=200, sum_yy=1210, sum_xy=460
    )
    for day, segment, size in (
        (RECENT.date(), "returning", 12),
        (RECENT.date(), "deep-readers", 5),
    ):
        SegmentSizeDaily.objects.create(property=prop, day=day, segment_key=segment, size=size)
    for fate, count in (("accepted", 900), ("quarantined", 30), ("dropped_no_consent", 70)):
        EventFateDaily.objects.create(
            property=prop, day=RECENT.date(), event_type="page_view", fate=fate, count=count
        )
    ConsentDaily.objects.create(
        property=prop, day=RECENT.date(), purpose="", records=100, granted=4
    )
    ConsentDaily.objects.create(
        property=prop, day=RECENT.date(), purpose="personalization", records=100, granted=85
    )
    experiment = Experiment.objects.get(property=prop, key="headline-test")
    snapshot(experiment, RECENT - timedelta(days=1), 0.08, False)
    return shop


@pytest.fixture
def viewer(rolled: Any, staff: Any) -> Client:
    return login(staff(ANALYSTS, rolled.prop))


# ----------------------------------------------------------------------------- who may see


@pytest.mark.parametrize("page", EVERY_PAGE)
def test_page__anonymous__redirected_to_login(db: Any, page: str) -> None:
    # When someone not logged in opens a dashboard
    response = Client().get(url(page))
    # Then they are sent to the admin login
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.parametrize("page", EVERY_PAGE)
def test_page__staff_without_property__403(staff: Any, page: str) -> None:
    # Given staff holding no property
    client = login(staff(MARKETING))
    # When they open a dashboard, or its CSV
    # Then it is refused
    assert client.get(url(page)).status_code == 403
    assert client.get(url(page, format="csv", chart="x")).status_code == 403


@pytest.mark.parametrize("page", DASHBOARDS)
def test_page__viewer_of_another_property__sees_only_theirs(
    rolled: Any, make_shop: Any, staff: Any, page: str
) -> None:
    # Given an analyst of another property (with no data)
    other = make_shop("Bravo shop")
    client = login(staff(ANALYSTS, other.prop))
    # When they open the page, and when they ask for the first property by id
    own = client.get(url(page))
    theirs = client.get(url(page, property=rolled.prop.slug))
    # Then they see their own property only, and asking for the other is a 400 that shows
    # nothing of it
    html = own.content.decode()
    assert own.status_code == 200 and "Bravo shop" in html and "Alpha shop" not in html
    assert 'class="dash-chart"' not in html or page == "experiments"
    assert theirs.status_code == 400
    assert "Alpha shop" not in theirs.content.decode()
    assert 'class="dash-chart"' not in theirs.content.decode()


def test_consent_page__marketing__refused(rolled: Any, staff: Any) -> None:
    client = login(staff(MARKETING, rolled.prop))
    assert client.get(url("consent")).status_code == 403
    assert client.get(url("consent", format="csv", chart="gpc")).status_code == 403


def test_consent_page__privacy_officer__allowed_and_dashboards_refused(
    rolled: Any, staff: Any
) -> None:
    # Given a privacy officer of the property
    client = login(staff(PRIVACY_OFFICERS, rolled.prop))
    # When they open the consent page
    response = client.get(url("consent"))
    # Then they see it (opt-in, GPC) and its navigation offers no marketing dashboard,
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="chart-opt-in"' in html and 'id="chart-gpc"' in html
    assert 'href="/dashboard/rules/' not in html
    # and the marketing dashboards refuse them
    assert client.get(url("overview")).status_code == 403


# ----------------------------------------------------------------------------- what it shows


@pytest.mark.parametrize("page", DASHBOARDS)
def test_page__viewer_with_data__charts_embedded_as_json(viewer: Any, page: str) -> None:
    # When an analyst opens the page
    response = viewer.get(url(page))
    html = response.content.decode()
    # Then every chart container has its figure as JSON (json_script), and a CSV link
    assert response.status_code == 200
    figures = re.findall(
        r'<div class="dash-chart" id="chart-([\w-]+)" data-figure="([\w-]+)"', html
    )
    assert figures, html[:3000]
    for name, script_id in figures:
        assert f'<script id="{script_id}" type="application/json">' in html
        assert f"format=csv&amp;chart={name}" in html
    # and nothing inline: no script without src (other than JSON data), no style attribute
    assert not re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", html)
    assert not re.search(r"<style|\sstyle=", html)
    assert "/static/dashboard/plotly.min.js" in html and "cdn" not in html.lower()


@pytest.mark.parametrize("page", EVERY_PAGE)
def test_page__no_data__readable_empty_state(shop: Any, staff: Any, page: str) -> None:
    # Given a property with nothing rolled up
    role = PRIVACY_OFFICERS if page == "consent" else MARKETING
    client = login(staff(role, shop.prop))
    # When its dashboards are opened
    response = client.get(url(page))
    html = response.content.decode()
    # Then the page says there is nothing yet, and draws no chart
    assert response.status_code == 200
    assert 'class="dash-empty"' in html
    assert re.search(r"No [a-z -]+(yet|period|open|survey)", html)
    assert 'class="dash-chart"' not in html


def test_overview_csv__engagement__matches_rollup_rows(viewer: Any) -> None:
    # When the data behind the personalized-vs-holdout chart is downloaded
    response = viewer.get(url("overview", format="csv", chart="engagement"))
    # Then it is an attachment named after the property and the chart
    assert re.match(
        r'attachment; filename="alpha-shop[\w-]*-engagement-\d{4}-\d\d-\d\d-\d{4}-\d\d-\d\d\.csv"',
        response["Content-Disposition"],
    )
    rows = {r["group"]: r for r in read_csv(response)}
    # and its numbers are the rollup rows' sums: 100 + 40 + 200 personalized, 50 holdout
    personalized, holdout = rows["Personalized"], rows["Holdout"]
    assert (personalized["exposures"], personalized["clicks"]) == ("340", "74")
    assert float(personalized["click_through"]) == pytest.approx(74 / 340, abs=1e-4)
    assert (personalized["sessions"], personalized["bounces"]) == ("270", "110")
    assert float(personalized["session_seconds_mean"]) == pytest.approx(18200 / 270, abs=0.05)
    assert (holdout["exposures"], holdout["clicks"], holdout["bounces"]) == ("50", "8", "20")
    low, high = float(holdout["click_through_low"]), float(holdout["click_through_high"])
    assert low < 8 / 50 < high


def test_rules_csv__lift_and_suppressions__per_rule_and_version(viewer: Any) -> None:
    lift = read_csv(viewer.get(url("rules", format="csv", chart="lift")))
    # The rule: 34 clicks of 140 exposures against the slot's default, 40 of 200
    assert [(r["rule"], r["version"], r["exposures"], r["clicks"]) for r in lift] == [
        ("returning-cta", "1", "140", "34")
    ]
    expected = (34 / 140) / (40 / 200) - 1
    assert float(lift[0]["lift"]) == pytest.approx(expected, abs=1e-3)
    assert float(lift[0]["lift_low"]) < expected < float(lift[0]["lift_high"])
    suppressed = read_csv(viewer.get(url("rules", format="csv", chart="suppressions")))
    assert [(r["rule"], r["cooldown"], r["conflict"]) for r in suppressed] == [
        ("returning-cta", "5", "2")
    ]


def test_filters__device_and_dates__change_the_numbers(viewer: Any) -> None:
    # Given the rule's exposures: 100 desktop and 40 mobile recently, 7 ten weeks ago
    def exposures(**query: Any) -> str:
        rows = read_csv(viewer.get(url("rules", format="csv", chart="exposures", **query)))
        return rows[0]["exposures"] if rows else "none"

    # When the device type and the dates are filtered, the numbers follow
    assert exposures() == "140"
    assert exposures(device="mobile") == "40"
    assert exposures(device="desktop") == "100"
    assert exposures(start=(TODAY - timedelta(days=80)).isoformat()) == "147"
    assert exposures(end=(TODAY - timedelta(days=30)).isoformat()) == "7"  # nine weeks back
    assert exposures(start=TODAY.isoformat()) == "none"
    # and the filters stay in the page's links (navigation and CSV)
    html = viewer.get(url("rules", device="mobile")).content.decode()
    nav = re.search(r'href="/dashboard/\?([^"]+)"', html)
    assert nav is not None and "device=mobile" in nav.group(1)
    assert re.search(r"device=mobile&amp;format=csv&amp;chart=exposures", html)


def test_filters__segment__the_rows_kept_for_that_segment(rolled: Any, viewer: Any) -> None:
    # Given, besides the rule's rows for all visitors, its row for the "returning" segment
    hourly(
        rolled.prop,
        **RULE,
        variant_key="b",
        is_default=False,
        segment_key="returning",
        exposures=30,
    )

    def exposures(**query: Any) -> str:
        rows = read_csv(viewer.get(url("rules", format="csv", chart="exposures", **query)))
        return rows[0]["exposures"] if rows else "none"

    # When the page is filtered by the segment, its figures are that segment's
    assert exposures(segment="returning") == "30"
    assert exposures() == "140"  # and unfiltered, all visitors' (segment rows not added)
    # and the overview offers the segment filter
    assert 'name="segment"' in viewer.get(url("overview")).content.decode()


def test_filters__invalid__400_with_the_reason(viewer: Any) -> None:
    bad_date = viewer.get(url("overview", start="yesterday"))
    backwards = viewer.get(url("overview", start=TODAY.isoformat(), end="2020-01-01"))
    unknown_chart = viewer.get(url("overview", format="csv", chart="nope"))
    bad_format = viewer.get(url("overview", format="xml"))
    assert bad_date.status_code == 400 and "Enter a valid date" in bad_date.content.decode()
    assert backwards.status_code == 400 and "start date is after" in backwards.content.decode()
    assert unknown_chart.status_code == 400 and "engagement" in unknown_chart.content.decode()
    assert bad_format.status_code == 400


def test_retention_csv__cohort_rates(viewer: Any) -> None:
    rows = read_csv(viewer.get(url("retention", format="csv", chart="cohorts")))
    # personalized 40 + holdout 10 first seen; 14 of them active a week later; nobody in
    # week 3 (no rollup row): a 0 over the whole cohort
    assert [(r["weeks_since"], r["cohort_size"], r["active"]) for r in rows] == [
        ("0", "50", "50"),
        ("1", "50", "14"),
        ("2", "50", "9"),
        ("3", "50", "0"),
    ]
    curves = read_csv(viewer.get(url("retention", format="csv", chart="curves")))
    week1 = {r["group"]: float(r["retention"]) for r in curves if r["weeks_since"] == "1"}
    assert week1 == {"Personalized": 0.3, "Holdout": 0.2}
    week3 = {r["group"]: (r["cohort_size"], r["active"]) for r in curves if r["weeks_since"] == "3"}
    assert week3 == {"Personalized": ("40", "0"), "Holdout": ("10", "0")}


def test_feedback__scores_by_exposure_and_free_text_with_adjustments(
    viewer: Any, rolled: Any, consent: Any
) -> None:
    # Given a visitor who answered the survey's free-text question
    consent(rolled.prop, "v-77")
    survey_response_submit(
        prop=rolled.prop,
        survey_key="nps",
        visitor_id="v-77",
        session_id="s-1",
        answers={"recommend": 9, "comment": "Loved the <b>new</b> button"},
    )
    # When the feedback page and its CSV are read
    html = viewer.get(url("feedback")).content.decode()
    rows = read_csv(viewer.get(url("feedback", format="csv", chart="scores-nps-recommend")))
    # Then the exposed mean (85 / 10) stands against the rest ((210 - 85) / 20)
    (rule,) = [r for r in rows if r["exposure"] == "rule returning-cta"]
    assert float(rule["mean"]) == pytest.approx(8.5)
    assert float(rule["not_exposed_mean"]) == pytest.approx(6.25)
    assert float(rule["difference"]) == pytest.approx(2.25, abs=1e-3)
    assert float(rule["difference_low"]) < 2.25 < float(rule["difference_high"])
    # and the correlation with adjustments seen has its interval; the free text is escaped
    assert re.search(r"Pearson r = 0\.\d\d \(95% interval -?0\.\d\d to 0\.\d\d\), n = 30", html)
    assert "Loved the &lt;b&gt;new&lt;/b&gt; button" in html
    assert "v-77" not in html


def test_experiments__forest_srm_warning_and_recommendation(viewer: Any, rolled: Any) -> None:
    # Given two more snapshots of the demo experiment, the latest flagged for sample-ratio
    # mismatch
    experiment = Experiment.objects.get(property=rolled.prop, key="headline-test")

    snapshot(experiment, RECENT, 0.1, False)
    snapshot(experiment, RECENT + timedelta(days=1), 0.12, True)
    html = viewer.get(url("experiments")).content.decode()
    assert 'id="chart-forest-headline-test"' in html and 'id="chart-history-headline-test"' in html
    assert "srm-warning" in html and "Recommendation:" not in html
    history = read_csv(viewer.get(url("experiments", format="csv", chart="history-headline-test")))
    assert [r["lift"] for r in history] == ["0.08", "0.1", "0.12"]


def test_consent__requests_open_due_soon_overdue(rolled: Any, staff: Any) -> None:
    now = timezone.now()
    for n, days_ago in enumerate((0, 25, 40)):
        privacy_request_submit(
            property_id=rolled.prop.pk,
            kind="erasure",
            regulation="ccpa",
            visitor_id=f"v-{n}",
            received_at=now - timedelta(days=days_ago + 20),
        )
    client = login(staff(PRIVACY_OFFICERS, rolled.prop))
    rows = read_csv(client.get(url("consent", format="csv", chart="requests")))
    # CCPA: 45 days. Received 20, 45 and 60 days ago: on time, due today, overdue
    assert [(r["open"], r["due_soon"], r["overdue"]) for r in rows] == [("3", "1", "1")]
    gpc = read_csv(client.get(url("consent", format="csv", chart="gpc")))
    assert [(r["records"], r["gpc"], r["share"]) for r in gpc] == [("100", "4", "0.04")]


def test_segments_and_data_quality_csv(viewer: Any) -> None:
    sizes = read_csv(viewer.get(url("segments", format="csv", chart="sizes", segment="returning")))
    assert [(r["segment"], r["visitors"]) for r in sizes] == [("returning", "12")]
    fates = read_csv(viewer.get(url("data-quality", format="csv", chart="fates")))
    assert {r["fate"]: r["events"] for r in fates} == {
        "accepted": "900",
        "dropped_no_consent": "70",
        "quarantined": "30",
    }
    html = viewer.get(url("segments")).content.decode()
    assert html.count('class="dash-chart"') == 1


def test_feedback__survey_free_text_of_another_property__not_shown(
    viewer: Any, make_shop: Any, consent: Any
) -> None:
    other = make_shop("Bravo shop")
    demo_targeting(other.prop)
    consent(other.prop, "v-9")
    survey_response_submit(
        prop=other.prop,
        survey_key="nps",
        visitor_id="v-9",
        session_id="s-1",
        answers={"recommend": 2, "comment": "Bravo's secret complaint"},
    )
    assert Survey.objects.filter(property=other.prop).exists()
    assert "secret complaint" not in viewer.get(url("feedback")).content.decode()


# ----------------------------------------------------------------------------- plumbing


def test_plotly_js__served_from_the_installed_package__css_in_step() -> None:
    # plotly.js comes from the plotly package (no CDN), and the stylesheet that lets it
    # run without inline styles is the one that plotly.js carries
    found = finders.find("dashboard/plotly.min.js")
    assert found and found.endswith("plotly/package_data/plotly.min.js")
    shipped = finders.find("dashboard/plotly.css")
    assert isinstance(shipped, str)
    with open(shipped, encoding="utf-8") as f:
        assert f.read() == plotly_css()


def test_admin_index__links_every_dashboard(rolled: Any, staff: Any) -> None:
    html = login(staff(MARKETING, rolled.prop)).get("/admin/").content.decode()
    assert 'href="/dashboard/"' in html and 'href="/dashboard/data-quality/"' in html
    assert 'href="/dashboard/consent/"' not in html  # only links to pages the user may open
    officer = login(staff(PRIVACY_OFFICERS, rolled.prop)).get("/admin/").content.decode()
    assert 'href="/dashboard/consent/"' in officer and 'href="/dashboard/"' not in officer
    nav = login(staff(MARKETING, rolled.prop)).get(url("overview")).content.decode()
    for page in DASHBOARDS:
        assert f'href="{url(page)}?' in nav


def test_date_defaults__nine_weeks_ending_today(viewer: Any) -> None:
    html = viewer.get(url("overview")).content.decode()
    shown = re.search(r'name="start" value="([\d-]+)"', html)
    assert shown is not None and (TODAY - date.fromisoformat(shown.group(1))).days == 62
