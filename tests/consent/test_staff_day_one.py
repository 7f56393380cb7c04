"""A staff member's first day: what privacy officers and dashboard readers meet first.

Privacy officers download a finished access export from the request page, read an erasure
receipt whose sentence agrees with its table, see deadlines in colour in a queue that fits a
1,280 px screen, and publish a consent-policy version from rows pre-filled with the current
one. Every staff page carries the product's name and icon; the admin's home page lists the
dashboards legibly; charts label days as dates and draw what visitors sent as text, never as
markup; every dashboard says how fresh its data is.

Layout, colour and what Plotly draws are checked in headless Chromium at 1280×900 (the
``page`` fixture); the rest with Django's test client.
"""

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.staticfiles import finders
from django.test import Client
from django.utils import timezone

from consent.models import ConsentPolicy
from consent.services import policy_publish
from consent.services.requests import privacy_request_submit
from dashboard import charts
from dashboard.models import EventFateDaily, RollupKind, RollupState
from personalization.models import Experiment, ExperimentSnapshot
from personalization.permissions import ANALYSTS, MARKETING, PRIVACY_OFFICERS
from personalization.services.ingest import events_ingest
from tests.browser import admin_login
from tests.conftest import make_event
from tests.privacy import media_root, raw_id, request_made, run_work
from tests.targeting import slot

PASSWORD = "pw-Long-enough-123"  # what the ``staff`` fixture gives every user
MARKUP_TYPE = '<a href="https://evil.example/">Schema broken: click to fix</a>'
DASHBOARD_PAGES = {
    "overview": ("/dashboard/", RollupKind.HOURLY, "the hourly rollup"),
    "rules": ("/dashboard/rules/", RollupKind.HOURLY, "the hourly rollup"),
    "retention": ("/dashboard/retention/", RollupKind.RETENTION, "the daily retention rollup"),
    "feedback": ("/dashboard/feedback/", RollupKind.SURVEYS, "the survey rollup"),
    "segments": ("/dashboard/segments/", RollupKind.SEGMENTS, "the segment rollup"),
    "data-quality": ("/dashboard/data-quality/", RollupKind.FATES, "the event-fate rollup"),
    "consent": ("/dashboard/consent/", RollupKind.CONSENT, "the consent rollup"),
}


def login(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def figure(html: str, script_id: str) -> dict[str, Any]:
    """A chart's figure as the page embeds it (json_script)."""
    found = re.search(
        rf'<script id="{re.escape(script_id)}" type="application/json">(.*?)</script>', html, re.S
    )
    assert found, f"no figure {script_id} on the page"
    return json.loads(found.group(1))


def strings_in(value: Any) -> list[str]:
    """Every string anywhere in a figure's data."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in strings_in(v)]
    return []


def fates(prop: Any, day: date, event_type: str = "page_view", **counts: int) -> None:
    """Rolled-up event fates of one day, and the rollup's watermark."""
    for fate, count in (counts or {"accepted": 10}).items():
        EventFateDaily.objects.create(
            property=prop, day=day, event_type=event_type, fate=fate, count=count
        )
    rolled(prop, RollupKind.FATES, timezone.now())


def rolled(prop: Any, kind: str, at: datetime) -> None:
    RollupState.objects.update_or_create(
        property=prop, kind=kind, defaults={"watermark": at, "last_run_at": at}
    )


def queue_of_three(shop: Any) -> None:
    """GDPR erasure requests received 40, 25 and 0 days ago: overdue, due soon, on time."""
    for days_ago in (40, 25, 0):
        privacy_request_submit(
            property_id=shop.prop.pk,
            kind="erasure",
            regulation="gdpr",
            visitor_id=f"v-{days_ago}",
            received_at=timezone.now() - timedelta(days=days_ago),
            source="officer",
        )


# ============================================================== A. privacy officers


@pytest.mark.django_db
def test_access_request_page__export_ready__offers_the_download_until_it_expires(
    shop: Any, staff: Any, settings: Any, tmp_path: Any
) -> None:
    # Given an access request whose export has been built
    media_root(settings, tmp_path)
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    vid = raw_id()
    events_ingest(prop=shop.prop, events=[make_event(visitor_id=vid)])
    req = run_work(request_made(shop, vid, "access", officer))
    export = req.export  # type: ignore[attr-defined]
    assert export.status == "ready"
    client = login(officer)

    # When the officer opens the request's page
    html = client.get(f"/admin/consent/privacyrequest/{req.pk}/change/").content.decode()

    # Then "export or receipt" shows the progress and a download link with its expiry
    link = f'href="/privacy/exports/{export.token}/"'
    assert link in html, html[html.find("export or receipt") :][:1500]
    until = export.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    assert f"Download</a> (until {until} UTC)" in html
    assert "stores of" in html and "Ready" in html
    # and the link downloads the archive
    download = client.get(f"/privacy/exports/{export.token}/")
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"


@pytest.mark.django_db
def test_erasure_receipt__visitor_with_consent_records__summary_counts_the_kept_rows_listed(
    shop: Any, staff: Any, consent: Any, settings: Any, tmp_path: Any
) -> None:
    # Given an erased visitor who had consented (their consent record stays as proof, and
    # the erasure adds the keyed hash to the suppression list)
    media_root(settings, tmp_path)
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    vid = raw_id()
    consent(shop.prop, vid)
    events_ingest(prop=shop.prop, events=[make_event(visitor_id=vid)])
    req = run_work(request_made(shop, vid, "erasure", officer))

    # When the officer reads the receipt on the request's page
    html = login(officer).get(f"/admin/consent/privacyrequest/{req.pk}/change/").content.decode()

    # Then the sentence counts every kept row its table lists
    start = html.rindex("<table", 0, html.index("rows removed"))
    table = html[start : html.index("</table>", start)]
    kept_column = [
        int(cells[4])
        for cells in re.findall(
            r"<tr><td>(.*?)</td><td>(.*?)</td><td[^>]*>(\d+)</td><td[^>]*>(\d+)</td>"
            r"<td[^>]*>(\d+)</td></tr>",
            table,
        )
    ]
    assert len(kept_column) == len(req.receipt["stores"])
    summary = re.search(r"kept (\d+) proof rows? that holds? only the keyed hash", html)
    assert summary, req.receipt["summary"]
    assert int(summary.group(1)) == sum(kept_column) >= 2
    assert "kept 2 proof rows that hold only" in req.receipt["summary"]


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        (
            {"removed": 1, "stores": 1, "kept": 1},
            "Removed 1 row, cache entry or file from 1 store; "
            "kept 1 proof row that holds only the keyed hash.",
        ),
        (
            {"removed": 7, "stores": 3, "kept": 2},
            "Removed 7 rows, cache entries and files from 3 stores; "
            "kept 2 proof rows that hold only the keyed hash.",
        ),
    ],
)
def test_erasure_receipt_summary__one_or_several__singular_or_plural(
    counts: dict[str, int], expected: str
) -> None:
    from consent.services.erasure import receipt_summary

    # Given counts of one and of several  When the sentence is written  Then it agrees in number
    assert receipt_summary(**counts) == expected


@pytest.mark.django_db(transaction=True)
def test_privacy_queue__1280_wide__days_left_visible_beside_the_filters_and_coloured(
    page: Any, live_server: Any, shop: Any, staff: Any
) -> None:
    # Given an officer's queue with an overdue, a due-soon and an on-time request
    queue_of_three(shop)
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    admin_login(page, live_server, officer.username, PASSWORD)

    # When they open it in a 1280×900 window
    page.goto(f"{live_server.url}/admin/consent/privacyrequest/")
    cells = page.locator("#result_list td.field-days_left")
    assert cells.count() == 3

    # Then every days-left cell lies in the window, inside the list's visible area and left
    # of the filter panel, and nothing covers it
    screen = page.viewport_size
    results = page.locator("#changelist .results").bounding_box()
    panel = page.locator("#changelist-filter").bounding_box()
    assert screen is not None and results is not None and panel is not None
    for i in range(cells.count()):
        box = cells.nth(i).bounding_box()
        assert box is not None and box["width"] > 20, box
        right = box["x"] + box["width"]
        assert box["x"] >= 0 and right <= screen["width"], (box, screen)
        assert right <= results["x"] + results["width"] + 0.5, (box, results)
        assert right <= panel["x"], (box, panel)
        on_top = cells.nth(i).evaluate(
            "cell => { const r = cell.getBoundingClientRect();"
            " const hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);"
            " return cell.contains(hit); }"
        )
        assert on_top, f"cell {i} is covered"
    # and the deadlines are in colour (red overdue, orange due soon), from the stylesheet
    overdue = page.locator("#result_list .deadline.overdue")
    soon = page.locator("#result_list .deadline.due-soon")
    assert re.fullmatch(r"overdue by \d+ d", overdue.inner_text().strip())
    assert overdue.evaluate("e => getComputedStyle(e).color") == "rgb(186, 33, 33)"
    assert soon.evaluate("e => getComputedStyle(e).color") == "rgb(179, 107, 0)"
    # and the page's CSP refused nothing (an inline style would be a console error)
    assert page.console_errors == [], page.console_errors


@pytest.mark.django_db
def test_consent_policy_add__property_with_versions__rows_prefilled_from_the_last_version(
    shop: Any, staff: Any
) -> None:
    # Given a property whose current version (2) added an "ads" purpose, for the EU
    current = ConsentPolicy.objects.get(property=shop.prop, version=1).purposes
    policy_publish(
        property_id=shop.prop.pk,
        purposes=[*current, {"key": "ads", "title": "Ads", "text": "Partner ads & offers."}],
        jurisdictions=["EU"],
    )
    client = login(staff(PRIVACY_OFFICERS, shop.prop))

    # When an officer adds a version
    html = client.get("/admin/consent/consentpolicy/add/").content.decode()

    # Then each purpose of version 2 is a row of key, title and text, ready to edit
    assert re.search(r'name="purposes-0-key"[^>]*value="analytics"[^>]*readonly', html)
    assert 'name="purposes-3-key" id="id_purposes-3-key" value="ads"' in html
    assert 'name="purposes-3-title" id="id_purposes-3-title" value="Ads"' in html
    assert ">Partner ads &amp; offers.</textarea>" in html
    # with blank rows for new purposes, the jurisdictions as text, and no JSON box
    assert 'name="purposes-5-key"' in html and 'name="purposes-6-key"' not in html
    assert re.search(r'name="jurisdictions" value="EU"', html)
    assert '<textarea name="purposes"' not in html and "[{" not in html


@pytest.mark.django_db
def test_consent_policy_add__rows_posted__publishes_the_version_and_names_it(
    shop: Any, staff: Any
) -> None:
    # Given the add form's rows: the built-in purposes reworded, and a new one
    client = login(staff(PRIVACY_OFFICERS, shop.prop))
    form = {"property": shop.prop.pk, "purposes-rows": "5", "jurisdictions": "EU, US-CA"}
    for i, purpose in enumerate(ConsentPolicy.objects.get(property=shop.prop).purposes):
        form |= {f"purposes-{i}-{k}": purpose[k] for k in ("key", "title", "text")}
    form |= {"purposes-0-text": "We count visits.", "purposes-3-key": "newsletter"}
    form |= {"purposes-3-title": "Newsletter", "purposes-3-text": "We e-mail offers."}

    # When the officer saves
    response = client.post("/admin/consent/consentpolicy/add/", form, follow=True)

    # Then version 2 is published with those purposes and jurisdictions
    html = response.content.decode()
    policy = ConsentPolicy.objects.get(property=shop.prop, version=2)
    assert policy.purpose_keys == [
        "analytics",
        "personalization",
        "granular_tracking",
        "newsletter",
    ]
    assert policy.purposes[0]["text"] == "We count visits."
    assert policy.jurisdictions == ["EU", "US-CA"]
    # and the message names the version it published
    assert "Shop v2" in html and "was added successfully" in html, html[:3000]
    assert "vNone" not in html and f"“{shop.prop.pk} v" not in html
    assert str(policy) == "Shop v2"


@pytest.mark.django_db
def test_consent_policy_add__published__the_message_names_the_version(
    shop: Any, staff: Any
) -> None:
    # Given an officer publishing a version with the current purposes (as JSON, the way an
    # older form or a script posts them)
    client = login(staff(PRIVACY_OFFICERS, shop.prop))
    purposes = ConsentPolicy.objects.get(property=shop.prop, version=1).purposes
    # When they save
    response = client.post(
        "/admin/consent/consentpolicy/add/",
        {"property": shop.prop.pk, "purposes": json.dumps(purposes), "jurisdictions": ""},
        follow=True,
    )
    # Then one message says which version of which property was published
    messages = [str(m) for m in response.context["messages"]]
    assert messages == ["The consent policy “Shop v2” was added successfully."], messages


@pytest.mark.django_db(transaction=True)
def test_consent_policy_add__officer_picks_another_property__rows_of_that_property_shown(
    page: Any, live_server: Any, make_shop: Any, staff: Any
) -> None:
    # Given an officer of two properties, the second with an "ads" purpose in its version 2
    alpha, bravo = make_shop("Alpha"), make_shop("Bravo")
    current = ConsentPolicy.objects.get(property=bravo.prop, version=1).purposes
    policy_publish(
        property_id=bravo.prop.pk,
        purposes=[*current, {"key": "ads", "title": "Ads", "text": "Partner ads."}],
    )
    officer = staff(PRIVACY_OFFICERS, alpha.prop, bravo.prop)
    admin_login(page, live_server, officer.username, PASSWORD)
    page.goto(f"{live_server.url}/admin/consent/consentpolicy/add/")
    assert page.input_value("#id_property") == str(alpha.prop.pk)
    assert page.input_value("#id_purposes-3-key") == ""

    # When they choose the second property
    with page.expect_navigation():
        page.select_option("#id_property", str(bravo.prop.pk))

    # Then the rows are that property's current version, the property stays chosen
    assert page.input_value("#id_property") == str(bravo.prop.pk)
    assert page.input_value("#id_purposes-3-key") == "ads"
    assert page.input_value("#id_purposes-3-text") == "Partner ads."
    assert page.console_errors == [], page.console_errors


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"purposes-3-key": "ads", "purposes-3-title": "Ads"},
            "Row 4 (ads): give the text shown to visitors.",
        ),
        (
            {"purposes-3-key": "bad key!", "purposes-3-text": "Something."},
            "Row 4 (bad key!): a key holds only letters, digits and _.",
        ),
        (
            {"purposes-3-key": "analytics", "purposes-3-text": "Again."},
            "Row 4 (analytics): this key is already listed above.",
        ),
        ({"purposes-1-remove": "on"}, "Row 2: personalization is built in and cannot be removed."),
    ],
)
@pytest.mark.django_db
def test_consent_policy_add__invalid_row__refused_naming_the_row_and_nothing_published(
    shop: Any, staff: Any, change: dict[str, str], message: str
) -> None:
    # Given the add form's rows with one wrong
    client = login(staff(PRIVACY_OFFICERS, shop.prop))
    form = {"property": shop.prop.pk, "purposes-rows": "5", "jurisdictions": ""}
    for i, purpose in enumerate(ConsentPolicy.objects.get(property=shop.prop).purposes):
        form |= {f"purposes-{i}-{k}": purpose[k] for k in ("key", "title", "text")}
    # When the officer saves
    response = client.post("/admin/consent/consentpolicy/add/", form | change)
    # Then the form comes back naming the row, with what was typed, and nothing is published
    html = response.content.decode()
    assert response.status_code == 200
    assert message in html, html[:4000]
    assert 'name="purposes-3-key"' in html
    assert not ConsentPolicy.objects.filter(property=shop.prop, version=2).exists()


# ============================================================== B. dashboards and chrome


@pytest.mark.django_db
def test_staff_pages__dashboard_and_consent_history__carry_the_product_name(
    shop: Any, staff: Any
) -> None:
    # Given a staff user holding the dashboards and the privacy role
    user = staff(MARKETING, shop.prop)
    header, title = str(admin.site.site_header), str(admin.site.site_title)
    assert header != "Django administration"  # set once, on admin.site
    client = login(user)
    officer = login(staff(PRIVACY_OFFICERS, shop.prop))
    # When they open a dashboard and the consent-history page
    pages = {
        "/dashboard/": client.get("/dashboard/").content.decode(),
        "/dashboard/data-quality/": client.get("/dashboard/data-quality/").content.decode(),
        "/privacy/consent-history/": officer.get("/privacy/consent-history/").content.decode(),
    }
    # Then each is titled and headed with the product's name, never Django's
    for path, html in pages.items():
        assert "Django administration" not in html and "Django site admin" not in html, path
        assert re.search(rf'<div id="site-name"><a href="/admin/">{re.escape(header)}</a>', html)
        found = re.search(r"<title>(.*?)</title>", html, re.S)
        assert found and found.group(1).strip().endswith(f"| {title}"), (path, found)
    assert "<title>Overview | " in pages["/dashboard/"]
    assert "<title>Consent history | " in pages["/privacy/consent-history/"]


@pytest.mark.django_db(transaction=True)
def test_admin_index__1280_wide__each_dashboard_link_on_one_line(
    page: Any, live_server: Any, shop: Any, staff: Any
) -> None:
    # Given a user who may open every dashboard
    user = staff(MARKETING, shop.prop)
    from personalization.permissions import role_grant

    role_grant(user, shop.prop, PRIVACY_OFFICERS)
    admin_login(page, live_server, user.username, PASSWORD)

    # When they open the admin's home page in a 1280×900 window
    page.goto(f"{live_server.url}/admin/")
    links = page.locator("#dashboards-module th a")
    assert links.all_inner_texts() == ["Overview", "Data quality", "Consent", "API reference"]

    # Then each link reads on one line, beside its description
    for i in range(links.count()):
        link = links.nth(i)
        box = link.bounding_box()
        size = float(link.evaluate("a => parseFloat(getComputedStyle(a).fontSize)"))
        assert box is not None and box["height"] < 2 * size, (link.inner_text(), box)
        assert len(link.evaluate("a => Array.from(a.getClientRects())")) == 1
        cell = link.locator("xpath=ancestor::tr[1]/td").bounding_box()
        assert cell is not None and cell["x"] >= box["x"] + box["width"]
    # and the module stays clear of the recent-actions panel, without a CSP refusal
    module = page.locator("#dashboards-module").bounding_box()
    sidebar = page.locator("#content-related").bounding_box()
    assert module is not None and sidebar is not None
    assert module["x"] + module["width"] <= sidebar["x"]
    assert page.console_errors == [], page.console_errors


@pytest.mark.django_db
def test_favicon__any_page__linked_in_the_head_and_served_at_favicon_ico(
    shop: Any, staff: Any
) -> None:
    # Given the icon among the static files
    found = finders.find("dashboard/favicon.svg")
    assert isinstance(found, str)
    with open(found, encoding="utf-8") as f:
        assert f.read().lstrip().startswith("<svg")
    # When a browser asks for /favicon.ico  Then it is sent to that file
    response = Client().get("/favicon.ico")
    assert response.status_code in (301, 302)
    assert response["Location"] == "/static/dashboard/favicon.svg"
    # and the admin (login included), the dashboards and the privacy pages link it
    icon = '<link rel="icon" href="/static/dashboard/favicon.svg" type="image/svg+xml">'
    client = login(staff(MARKETING, shop.prop))
    officer = login(staff(PRIVACY_OFFICERS, shop.prop))
    for html in (
        Client().get("/admin/login/").content.decode(),
        client.get("/admin/").content.decode(),
        client.get("/dashboard/").content.decode(),
        officer.get("/privacy/consent-history/").content.decode(),
    ):
        assert icon in html and 'href="data:,"' not in html


@pytest.mark.django_db
def test_data_quality_charts__days__a_date_axis_labelled_by_day(shop: Any, staff: Any) -> None:
    # Given event fates rolled up for one day only (where plotly.js picked hours)
    day = timezone.now().date() - timedelta(days=1)
    fates(shop.prop, day, accepted=10, quarantined=2)
    # When the data-quality page is opened
    html = login(staff(ANALYSTS, shop.prop)).get("/dashboard/data-quality/").content.decode()
    # Then both charts draw days on a date axis: whole-day ticks labelled as dates
    for script_id in ("figure-fates", "figure-problems"):
        axis = figure(html, script_id)["layout"]["xaxis"]
        assert axis["type"] == "date", (script_id, axis)
        assert axis["tickformat"] == "%Y-%m-%d" and axis["hoverformat"] == "%Y-%m-%d"
        assert axis["dtick"] == 24 * 3600 * 1000 and axis["tick0"] == day.isoformat()
        assert axis["range"] == [
            (day - timedelta(days=1)).isoformat(),
            (day + timedelta(days=1)).isoformat(),
        ]


def test_day_axis__nine_weeks__weekly_date_ticks() -> None:
    # Given nine weeks of days  When they are drawn  Then one date label a week
    days = [date(2026, 1, 1) + timedelta(days=n) for n in range(63)]
    figure_ = charts.bars(days, {"Events": [1.0] * 63}, y_title="Events")
    axis = figure_["layout"]["xaxis"]
    assert axis["type"] == "date" and axis["tickformat"] == "%Y-%m-%d"
    assert axis["dtick"] == 7 * 24 * 3600 * 1000 and "range" not in axis
    # and a series of snapshot times (datetimes) is not a day axis
    times = [datetime(2026, 1, 1, h, tzinfo=UTC) for h in range(3)]
    lines = charts.lines({"lift": [(t, 0.1) for t in times]}, y_title="Lift")
    assert "type" not in lines["layout"]["xaxis"]


@pytest.mark.django_db(transaction=True)
def test_data_quality_chart__event_type_with_a_link__legend_is_text_not_a_link(
    page: Any, live_server: Any, shop: Any, staff: Any
) -> None:
    # Given an event type that is a link, rolled up among the day's fates
    day = timezone.now().date() - timedelta(days=1)
    fates(shop.prop, day, accepted=10)
    fates(shop.prop, day, MARKUP_TYPE, quarantined=3)
    viewer = staff(ANALYSTS, shop.prop)
    admin_login(page, live_server, viewer.username, PASSWORD)

    # When the data-quality page is drawn
    page.goto(f"{live_server.url}/dashboard/data-quality/")
    legend = page.locator("#chart-problems .legend")
    legend.first.wait_for(state="attached")

    # Then the legend shows the characters that were sent, and holds no link
    assert page.locator("#chart-problems .legend a").count() == 0
    assert page.locator("#chart-problems a").count() == 0
    assert MARKUP_TYPE in legend.first.text_content()
    # and its day axis reads as dates
    ticks = [t.strip() for t in page.locator("#chart-problems .xtick").all_text_contents()]
    assert ticks and all(re.fullmatch(r"\d{4}-\d\d-\d\d", t) for t in ticks), ticks
    assert page.console_errors == [], page.console_errors


MARKUP = '<a href="https://evil.example/">x</a><b>y</b>'
FIGURE_FUNCTIONS = {
    "lines": lambda: charts.lines({MARKUP: [(MARKUP, 1.0)]}, y_title=MARKUP, x_title=MARKUP),
    "bars": lambda: charts.bars([MARKUP], {MARKUP: [1.0]}, y_title=MARKUP),
    "forest": lambda: charts.forest([MARKUP], [0.1], [(0.0, 0.2)], x_title=MARKUP),
    "heatmap": lambda: charts.heatmap(
        [MARKUP], [MARKUP], [[0.5]], x_title=MARKUP, y_title=MARKUP, cell_text=[[MARKUP]]
    ),
}


@pytest.mark.parametrize("name", sorted(FIGURE_FUNCTIONS))
def test_figure_functions__markup_in_every_label__drawn_as_escaped_text(name: str) -> None:
    # Given labels, names and cell text holding markup  When a figure is built
    built = FIGURE_FUNCTIONS[name]()
    # Then no string of it holds a tag (plotly.js shows the entities as the characters)
    drawn = strings_in(built["data"]) + strings_in(
        {k: v for k, v in built["layout"].items() if k in ("xaxis", "yaxis")}
    )
    assert not [s for s in drawn if "<" in s and "%{" not in s], drawn
    assert '&lt;a href="https://evil.example/"&gt;x&lt;/a&gt;&lt;b&gt;y&lt;/b&gt;' in drawn


@pytest.mark.parametrize("name", sorted(DASHBOARD_PAGES))
@pytest.mark.django_db
def test_dashboard_page__rollup_ran__says_data_as_of_its_watermark(
    shop: Any, staff: Any, name: str
) -> None:
    # Given every rollup of the property run, each at its own time
    base = datetime(2026, 3, 4, 5, 0, tzinfo=UTC)
    for n, kind in enumerate(RollupKind):
        rolled(shop.prop, kind.value, base + timedelta(minutes=10 * n))
    path, kind, _ = DASHBOARD_PAGES[name]
    watermark = RollupState.objects.get(property=shop.prop, kind=kind).watermark
    role = PRIVACY_OFFICERS if name == "consent" else MARKETING
    # When the page is opened
    html = login(staff(role, shop.prop)).get(path).content.decode()
    # Then it says how fresh its data is: the watermark of the rollup it reads
    assert f'id="data-as-of">Data as of {watermark:%Y-%m-%d %H:%M} UTC.</p>' in html


@pytest.mark.parametrize("name", sorted(DASHBOARD_PAGES))
@pytest.mark.django_db
def test_dashboard_page__rollup_never_ran__says_there_is_no_data_yet(
    shop: Any, staff: Any, name: str
) -> None:
    # Given a property no rollup has run for
    path, _, rollup = DASHBOARD_PAGES[name]
    role = PRIVACY_OFFICERS if name == "consent" else MARKETING
    # When the page is opened
    html = login(staff(role, shop.prop)).get(path).content.decode()
    # Then it says so, naming what has not run
    assert f"Data as of: no data yet — {rollup} has not run." in html
    if name in ("overview", "rules"):
        assert "no data yet — the hourly rollup has not run" in html


@pytest.mark.django_db
def test_experiments_page__no_snapshot_or_no_exposure__says_so_plainly(
    shop: Any, staff: Any
) -> None:
    # Given two experiments: one never snapshotted, one snapshotted before any exposure
    headline = slot(shop.prop, "headline", {"short": {"text": "Quick"}})
    variants = [{"variant": "default", "weight": 0.5}, {"variant": "short", "weight": 0.5}]
    fresh = Experiment.objects.create(
        property=shop.prop, key="fresh", slot=headline, variants=variants
    )
    idle = Experiment.objects.create(
        property=shop.prop, key="idle", slot=headline, variants=variants
    )
    taken = timezone.now() - timedelta(hours=1)
    ExperimentSnapshot.objects.create(
        experiment=idle,
        computed_at=taken,
        results={"srm_p_value": None, "recommendation": "keep running", "goals": []},
    )
    # When the experiments page is opened
    html = login(staff(MARKETING, shop.prop)).get("/dashboard/experiments/").content.decode()
    # Then neither shows an empty p-value
    assert "p = ." not in html and "p = <" not in html
    # the first says it has no snapshot yet, the second that the check is not computed yet
    section = html[html.index(f'id="experiment-{fresh.key}"') :]
    assert f'id="no-snapshot-{fresh.key}">No results snapshot yet' in section
    idle_section = html[html.index(f'id="experiment-{idle.key}"') :]
    assert "Sample-ratio check: not computed yet (no visitor has been exposed)." in idle_section
    # and the page is as of the latest snapshot
    assert f"Data as of {taken:%Y-%m-%d %H:%M} UTC." in html


@pytest.mark.django_db
def test_experiments_page__no_snapshot_at_all__no_data_yet(shop: Any, staff: Any) -> None:
    # Given no experiment has been snapshotted  When the page is opened  Then it says so
    html = login(staff(MARKETING, shop.prop)).get("/dashboard/experiments/").content.decode()
    assert "Data as of: no data yet — no experiment results snapshot has been taken" in html
