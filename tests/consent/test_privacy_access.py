"""Access exports: everything held about a visitor, as JSON and CSV, for the property's officers."""

import csv
import io
import json
import zipfile
from datetime import timedelta

import pytest
from django.core import signing
from django.test import Client
from django.utils import timezone

from consent import registry
from consent.exceptions import DomainError
from consent.models import AccessExport, AuditEntry
from consent.services.access import (
    EXPORT_LINK_SECONDS,
    export_link_token,
    export_open_by_link,
    export_path,
    exports_expire,
)
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


# ---- the storefront's download (the API, secret key) ---------------------------------------


def _download_url(shop, req) -> str:
    body = shop.client(shop.sk).get(f"/api/v1/privacy-requests/{req.public_id}").json()
    return body["export"]["download_url"]


def test_access_export__download_url_with_the_secret_key__archive_served_and_audited(
    shop, staff, media
):
    # Given a completed access request, read by the storefront's server with its secret key
    _, req, export = exported(shop, staff, raw_id())
    url = _download_url(shop, req)
    # When the server follows the download link with the same key (no session, no login)
    response = shop.client(shop.sk).get(url)
    # Then the archive comes as an attachment
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith("attachment;")
    assert zipfile.is_zipfile(io.BytesIO(b"".join(response.streaming_content)))
    # And the download is audited under the key (its prefix, never the key)
    entry = AuditEntry.objects.get(action="export.downloaded")
    assert entry.actor is None and entry.target == f"privacy_request:{req.pk}"
    assert entry.actor_label.startswith("api key sk_") and shop.sk not in entry.actor_label


def test_access_export__download_url_without_the_secret_key__refused(shop, staff, media):
    # Given a download link
    officer, req, _ = exported(shop, staff, raw_id())
    url = _download_url(shop, req)
    # When it is followed without a key, with the publishable key, or by a signed-in officer
    # Then each is refused in the API's error shape, and nothing is downloaded
    anonymous = Client().get(url)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "missing_api_key"
    publishable = shop.client(shop.pk).get(url)
    assert publishable.status_code == 403
    assert publishable.json()["error"]["code"] == "permission_denied"
    assert login(officer).get(url).status_code == 401
    assert not AuditEntry.objects.filter(action="export.downloaded").exists()


def test_access_export__download_url_with_another_propertys_key__404(make_shop, staff, media):
    # Given a download link of one shop
    shop, other = make_shop("Alpha"), make_shop("Bravo")
    _, req, _ = exported(shop, staff, raw_id())
    url = _download_url(shop, req)
    # When another shop's secret key follows it  Then it names nothing there
    response = other.client(other.sk).get(url)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "export_not_found"
    assert not AuditEntry.objects.filter(action="export.downloaded").exists()


def test_access_export__download_url_tampered_with__404(shop, staff, media):
    # Given a download link whose signed part was altered (another export's token put in)
    _, req, _ = exported(shop, staff, raw_id())
    url = _download_url(shop, req)
    payload = url.rsplit("/", 1)[1].split(":", 1)[0]
    forged = signing.b64_encode(b'{"p":1,"e":"x","x":9999999999}').decode()
    # When it is followed  Then it names nothing
    response = shop.client(shop.sk).get(url.replace(payload, forged))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "export_not_found"


def test_access_export__download_url_older_than_an_hour__410_and_a_fresh_one_works(
    shop, staff, media
):
    # Given a download link given out more than an hour ago
    _, req, export = exported(shop, staff, raw_id())
    old = export_link_token(
        property_id=shop.prop.pk,
        export_token=str(export.token),
        expires_at=export.expires_at,
        now=timezone.now() - timedelta(seconds=EXPORT_LINK_SECONDS + 1),
    )
    # When it is followed  Then it has expired (410), saying how to get a fresh one
    response = shop.client(shop.sk).get(f"/api/v1/privacy-exports/{old}")
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "export_link_expired"
    # And reading the request again gives a link that works
    assert shop.client(shop.sk).get(_download_url(shop, req)).status_code == 200


def test_access_export__archive_expired__download_url_refused_410(shop, staff, media):
    # Given a download link, then the archive's own expiry passing
    _, req, export = exported(shop, staff, raw_id())
    url = _download_url(shop, req)
    AccessExport.objects.filter(pk=export.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    # When the link is followed  Then the archive is gone (410)
    response = shop.client(shop.sk).get(url)
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "export_expired"


def test_access_export__download_url__never_outlives_the_archive(shop, staff, media):
    # Given an archive expiring in a minute
    _, _, export = exported(shop, staff, raw_id())
    soon = timezone.now() + timedelta(minutes=1)
    link = export_link_token(
        property_id=shop.prop.pk, export_token=str(export.token), expires_at=soon
    )
    # When its link is followed two minutes later  Then the link itself has expired
    with pytest.raises(DomainError) as refused:
        export_open_by_link(
            property_id=shop.prop.pk,
            link_token=link,
            label="api key sk_test",
            now=soon + timedelta(minutes=1),
        )
    assert refused.value.code == "export_link_expired" and refused.value.status_code == 410
