"""Access exports: everything held about a visitor, as JSON and CSV, for the property's officers."""

import csv
import io
import json
import zipfile
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from consent import registry
from consent.models import AccessExport, AuditEntry
from consent.services.access import export_path, exports_expire
from personalization.permissions import ANALYSTS, MARKETING, PRIVACY_OFFICERS
from tests.privacy import media_root, raw_id, request_made, run_work, visitor_everywhere


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    """No test here writes archives to the real MEDIA_ROOT."""
    return media_root(settings, tmp_path)


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def exported(shop, staff, vid):
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    visitor_everywhere(shop, vid)
    req = run_work(request_made(shop, vid, "access", officer))
    return officer, req, AccessExport.objects.get(request=req)


def test_access_export__visitor_everywhere__archive_holds_every_store_as_json_and_csv(
    shop, staff, media
):
    # Given a visitor present in every store  When their access request is worked
    vid = raw_id()
    _, req, export = exported(shop, staff, vid)
    # Then the request is completed and the archive is ready, its progress complete
    assert req.status == "completed" and export.status == "ready"
    assert (
        export.stores_done == export.stores_total == len([s for s in registry.stores() if s.export])
    )
    path = export_path(export, shop.prop.pk)
    assert path.is_relative_to(media / "privacy-exports") and vid not in str(path)
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        document = json.loads(archive.read("export.json"))
        events_csv = list(
            csv.DictReader(io.StringIO(archive.read("personalization.events.csv").decode()))
        )
    # and it holds events, quarantine, signals, consent history, adjustments, segments, GPC
    assert document["visitor_id"] == vid
    rows = {label: len(store["rows"]) for label, store in document["stores"].items()}
    for label in (
        "personalization.events",
        "personalization.quarantine",
        "personalization.visitors",
        "personalization.sessions",
        "consent.records",
        "consent.gpc_evidence",
        "personalization.decisions",
        "personalization.adjustments",
        "personalization.segment_members",
        "personalization.survey_responses",
    ):
        assert rows[label] >= 1, label
        assert f"{label}.csv" in names
    assert rows["personalization.events"] == len(events_csv) == 3
    assert {r["visitor_id"] for r in events_csv} == {vid}
    consent_rows = document["stores"]["consent.records"]["rows"]
    assert [r["method"] for r in consent_rows] == ["banner", "gpc"]
    assert "consent.access_exports" not in document["stores"]  # no download tokens inside


def test_access_export__visitor_nothing_is_held_about__archive_says_so(shop, staff, media):
    # Given an access request about a visitor id the property holds nothing about
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    req = run_work(request_made(shop, raw_id(), "access", officer))
    # When it is worked  Then it completes, and the archive says nothing is held
    export = AccessExport.objects.get(request=req)
    assert req.status == "completed" and export.status == "ready"
    with zipfile.ZipFile(export_path(export, shop.prop.pk)) as archive:
        readme = archive.read("README.txt").decode()
        document = json.loads(archive.read("export.json"))
    assert "Nothing is held about this visitor id" in readme
    # only the request itself, which is data about them too
    rows = {label: len(store["rows"]) for label, store in document["stores"].items()}
    assert rows.pop("consent.privacy_requests") == 1 == export.rows
    assert set(rows.values()) == {0}


def test_access_export__visitor_everywhere__readme_lists_rows_without_nothing_held(
    shop, staff, media
):
    _, _, export = exported(shop, staff, raw_id())
    with zipfile.ZipFile(export_path(export, shop.prop.pk)) as archive:
        readme = archive.read("README.txt").decode()
    assert "Nothing is held" not in readme
    assert "personalization.events: 3 rows." in readme


def test_access_export__officer_of_the_property__downloads_and_it_is_audited(shop, staff, media):
    # Given a ready export
    officer, req, export = exported(shop, staff, raw_id())
    # When its officer downloads it
    response = login(officer).get(f"/privacy/exports/{export.token}/")
    # Then the archive comes as an attachment, and the download is in the audit log
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    assert zipfile.is_zipfile(io.BytesIO(b"".join(response.streaming_content)))
    entry = AuditEntry.objects.get(action="export.downloaded")
    assert entry.actor == officer and entry.target == f"privacy_request:{req.pk}"


def test_access_export__other_roles_and_properties__refused(make_shop, staff, media):
    # Given a ready export of one shop
    shop, other = make_shop("Alpha"), make_shop("Bravo")
    _, _, export = exported(shop, staff, raw_id())
    url = f"/privacy/exports/{export.token}/"
    # When marketing and analysts of that shop, and an officer of another, ask for it
    # Then marketing and analysts get 403, the other shop's officer a 404
    assert login(staff(MARKETING, shop.prop)).get(url).status_code == 403
    assert login(staff(ANALYSTS, shop.prop)).get(url).status_code == 403
    assert login(staff(PRIVACY_OFFICERS, other.prop)).get(url).status_code == 404
    assert Client().get(url).status_code == 302  # to the login page
    assert not AuditEntry.objects.filter(action="export.downloaded").exists()


def test_access_export__expired__link_refused_and_file_removed(shop, staff, media):
    # Given a ready export whose link has expired
    officer, _, export = exported(shop, staff, raw_id())
    AccessExport.objects.filter(pk=export.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    # When its officer follows the link  Then it is gone (410)
    assert login(officer).get(f"/privacy/exports/{export.token}/").status_code == 410
    # When the hourly expiry runs  Then the file leaves the disk
    assert exports_expire() == 1
    export.refresh_from_db()
    assert export.status == "expired" and not export_path(export, shop.prop.pk).exists()
    assert exports_expire() == 0
