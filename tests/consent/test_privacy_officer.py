"""The privacy officer's workspace: who may open what, consent histories, the audit log."""

import csv
import io
import json

import pytest
from django.test import Client
from django.utils import timezone

from consent.hashing import visitor_key
from consent.models import AuditEntry, ConsentRecord, ImmutableError, PrivacyRequest
from consent.services import policy_publish
from consent.services.audit import audit_record
from consent.services.requests import privacy_request_submit
from personalization.permissions import ANALYSTS, MARKETING, PRIVACY_OFFICERS

HISTORY = "/privacy/consent-history/"
PRIVACY_PAGES = [
    "/admin/consent/privacyrequest/",
    "/admin/consent/privacyrequest/add/",
    "/admin/consent/consentrecord/",
    "/admin/consent/gpcevidence/",
    "/admin/consent/suppression/",
    "/admin/consent/retentionpolicy/",
    "/admin/consent/retentionrun/",
    HISTORY,
]


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def two_shops(make_shop, consent):
    a, b = make_shop("Alpha shop"), make_shop("Bravo shop")
    for shop in (a, b):
        consent(shop.prop, "v-1")
        privacy_request_submit(
            property_id=shop.prop.pk, kind="erasure", regulation="gdpr", visitor_id="v-1"
        )
    return a, b


@pytest.mark.parametrize("page", PRIVACY_PAGES)
def test_privacy_pages__officer__sees_only_own_property(two_shops, staff, page):
    a, b = two_shops
    response = login(staff(PRIVACY_OFFICERS, a.prop)).get(page)
    assert response.status_code == 200
    assert "Bravo" not in response.content.decode()


@pytest.mark.parametrize("role", [MARKETING, ANALYSTS])
@pytest.mark.parametrize("page", PRIVACY_PAGES)
def test_privacy_pages__marketing_and_analysts__refused(two_shops, staff, role, page):
    a, _ = two_shops
    assert login(staff(role, a.prop)).get(page).status_code == 403


def test_privacy_request__officer_of_other_property__404_and_unchanged(two_shops, staff):
    # Given an officer of shop A and a request of shop B
    a, b = two_shops
    client = login(staff(PRIVACY_OFFICERS, a.prop))
    theirs = PrivacyRequest.objects.get(property=b.prop)
    url = f"/admin/consent/privacyrequest/{theirs.pk}/change/"
    # When they open it or act on it  Then 404, and it does not change
    assert client.get(url).status_code == 404
    assert client.post(url, {"action": "deny", "reason": "x"}).status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == "received"
    # and the consent history of B's visitors is not reachable either
    response = client.post(HISTORY, {"property": b.prop.pk, "visitor_id": "v-1", "op": "show"})
    assert response.status_code == 404


def test_privacy_request__officer_form__deny_without_reason_refused_then_denied(shop, staff):
    # Given a received request
    req, _ = privacy_request_submit(
        property_id=shop.prop.pk, kind="erasure", regulation="gdpr", visitor_id="v-1"
    )
    client = login(staff(PRIVACY_OFFICERS, shop.prop))
    url = f"/admin/consent/privacyrequest/{req.pk}/change/"
    # When the officer denies without a reason  Then the form says so and nothing changes
    response = client.post(url, {"action": "deny", "reason": ""})
    assert response.status_code == 200 and "Give the reason" in response.content.decode()
    req.refresh_from_db()
    assert req.status == "received"
    # When with a reason  Then it is denied, and the page shows the audit trail
    client.post(url, {"action": "deny", "reason": "Not our customer."})
    req.refresh_from_db()
    assert req.status == "denied" and req.denial_reason == "Not our customer."
    page = client.get(url).content.decode()
    assert "request.status_changed" in page and "Not our customer." in page


def test_privacy_request__officer_enters_duplicate__merged_and_told(shop, staff):
    # Given an open erasure request from the storefront
    privacy_request_submit(
        property_id=shop.prop.pk, kind="erasure", regulation="gdpr", visitor_id="v-7"
    )
    client = login(staff(PRIVACY_OFFICERS, shop.prop))
    # When an officer enters the same request received by e-mail
    response = client.post(
        "/admin/consent/privacyrequest/add/",
        {
            "property": shop.prop.pk,
            "kind": "erasure",
            "regulation": "gdpr",
            "visitor_id": "v-7",
            "contact": "",
            "received_on": timezone.now().date().isoformat(),
            "note": "",
        },
        follow=True,
    )
    # Then it is merged into the open one, and the officer is told
    assert PrivacyRequest.objects.count() == 1
    assert "was merged into" in response.content.decode()


def test_privacy_request__officer_enters_access_for_unknown_visitor__recorded_and_warned(
    shop, staff
):
    client = login(staff(PRIVACY_OFFICERS, shop.prop))
    response = client.post(
        "/admin/consent/privacyrequest/add/",
        {
            "property": shop.prop.pk,
            "kind": "access",
            "regulation": "ccpa",
            "visitor_id": "nobody",
            "received_on": timezone.now().date().isoformat(),
        },
        follow=True,
    )
    # The request is recorded (it must be answered, with "nothing held"), and the officer
    # is warned in case the id was mistyped
    assert response.status_code == 200
    assert "Nothing is held about this visitor id" in response.content.decode()
    assert PrivacyRequest.objects.get().kind == "access"


def test_consent_history__officer__reads_and_exports_by_visitor_id(shop, staff, consent):
    # Given a visitor who consented, then withdrew personalization
    consent(shop.prop, "v-42")
    consent(shop.prop, "v-42", {"analytics": True, "personalization": False})
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    client = login(officer)
    form = {"property": shop.prop.pk, "visitor_id": "v-42"}
    # When the officer looks them up  Then the full history shows, oldest first
    page = client.post(HISTORY, {**form, "op": "show"}).content.decode()
    assert page.count("<td>banner</td>") == 2
    assert page.index("analytics, granular_tracking, personalization") < page.index(
        "<td>analytics</td>"
    )
    # When they export it as CSV and JSON  Then both hold every record
    rows = list(
        csv.DictReader(io.StringIO(client.post(HISTORY, {**form, "op": "csv"}).content.decode()))
    )
    assert [r["granted"] for r in rows] == [
        "analytics granular_tracking personalization",
        "analytics",
    ]
    body = json.loads(client.post(HISTORY, {**form, "op": "json"}).content)
    assert [r["method"] for r in body["records"]] == ["banner", "banner"]
    assert {r["visitor_key"] for r in body["records"]} == {visitor_key(shop.prop.pk, "v-42")}
    # and each look and export is in the audit log, under the keyed hash only
    actions = list(AuditEntry.objects.filter(actor=officer).values_list("action", flat=True))
    assert sorted(actions) == [
        "consent_history.exported",
        "consent_history.exported",
        "consent_history.viewed",
    ]
    assert not AuditEntry.objects.filter(details__icontains="v-42").exists()
    assert not AuditEntry.objects.filter(target__icontains="v-42").exists()


def test_consent_history__unknown_visitor__says_so(shop, staff):
    client = login(staff(PRIVACY_OFFICERS, shop.prop))
    response = client.post(
        HISTORY, {"property": shop.prop.pk, "visitor_id": "never-seen", "op": "csv"}
    )
    assert response.status_code == 404
    assert "No consent records for this visitor id" in response.content.decode()


def test_consent_history__officer_records_consent__method_officer_and_audited(shop, staff):
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    client = login(officer)
    form = {"property": shop.prop.pk, "visitor_id": "v-phone", "op": "record"}
    # When the officer records a consent given by telephone
    client.post(HISTORY, {**form, "policy_version": 1, "granted": ["analytics"]})
    # Then it is recorded with method officer, and audited
    record = ConsentRecord.objects.get()
    assert record.method == "officer" and record.granted == ["analytics"]
    assert AuditEntry.objects.filter(action="consent.recorded", actor=officer).exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"policy_version": 9, "granted": ["analytics"]}, "no consent policy version 9"),
        ({"policy_version": 1, "granted": ["ads"]}, "does not define: ads"),
    ],
)
def test_consent_history__record_bad_input__error_and_nothing_recorded(shop, staff, extra, message):
    # Given a policy v2 that adds "ads" (so the form offers it) while v1 does not define it
    policy_publish(
        property_id=shop.prop.pk,
        purposes=[
            *shop.prop.consent_policies.get(version=1).purposes,
            {"key": "ads", "title": "Ads", "text": "Partner ads."},
        ],
    )
    client = login(staff(PRIVACY_OFFICERS, shop.prop))
    form = {"property": shop.prop.pk, "visitor_id": "v-1", "op": "record", **extra}
    response = client.post(HISTORY, form)
    assert message in response.content.decode()
    assert not ConsentRecord.objects.exists()


def test_audit_log__officer_reads_privacy_entries_of_own_property_only(two_shops, staff):
    a, b = two_shops
    audit_record(
        action="rule.changed", property_id=a.prop.pk, target="rule:1", kind="configuration"
    )
    client = login(staff(PRIVACY_OFFICERS, a.prop))
    page = client.get("/admin/consent/auditentry/").content.decode()
    # Privacy entries of A (its policy publication and request) show; B's and config don't
    assert "policy.published" in page and "request.received" in page
    assert "rule.changed" not in page and "Bravo" not in page
    theirs = AuditEntry.objects.filter(property=b.prop).first()
    assert client.get(f"/admin/consent/auditentry/{theirs.pk}/change/").status_code == 404


def test_audit_log__marketing_reads_configuration_entries_only(two_shops, staff):
    a, _ = two_shops
    audit_record(
        action="rule.changed", property_id=a.prop.pk, target="rule:1", kind="configuration"
    )
    page = login(staff(MARKETING, a.prop)).get("/admin/consent/auditentry/").content.decode()
    assert "rule.changed" in page and "request.received" not in page


def test_audit_log__nobody_edits_it(two_shops, staff):
    a, _ = two_shops
    entry = AuditEntry.objects.filter(property=a.prop).first()
    admin = login(staff(superuser=True))
    url = f"/admin/consent/auditentry/{entry.pk}/change/"
    # The page is read-only even for a superuser, and POST, add and delete are refused
    page = admin.get(url).content.decode()
    assert 'name="_save"' not in page and 'name="_continue"' not in page
    assert admin.post(url, {"action": "hacked"}).status_code == 403
    assert admin.get("/admin/consent/auditentry/add/").status_code == 403
    assert admin.get(f"/admin/consent/auditentry/{entry.pk}/delete/").status_code == 403
    entry.action = "hacked"
    with pytest.raises(ImmutableError):
        entry.save()
    with pytest.raises(ImmutableError):
        entry.delete()


def test_policy_publish__audited_with_actor_and_version(shop, staff):
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    client = login(officer)
    purposes = shop.prop.consent_policies.get(version=1).purposes
    client.post(
        "/admin/consent/consentpolicy/add/",
        {"property": shop.prop.pk, "purposes": json.dumps(purposes), "jurisdictions": '["EU"]'},
    )
    entry = AuditEntry.objects.get(action="policy.published", actor=officer)
    assert entry.details["version"] == 2 and entry.details["jurisdictions"] == ["EU"]


def test_opt_out__entered_by_officer__applied_with_method_officer(shop, staff, consent):
    # Given a visitor who granted everything, and an officer with their letter
    consent(shop.prop, "v-letter")
    client = login(staff(PRIVACY_OFFICERS, shop.prop))
    # When the officer enters the opt-out
    client.post(
        "/admin/consent/privacyrequest/add/",
        {
            "property": shop.prop.pk,
            "kind": "opt_out",
            "regulation": "ccpa",
            "visitor_id": "v-letter",
            "received_on": timezone.now().date().isoformat(),
        },
    )
    # Then it is applied at once with method officer, and the request is completed
    record = ConsentRecord.objects.order_by("-id").first()
    assert record.method == "officer" and "personalization" in record.refused
    assert PrivacyRequest.objects.get().status == "completed"
