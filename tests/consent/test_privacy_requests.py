"""Data-subject requests over the API and through the officer's services: statuses, bad input."""

from datetime import timedelta

import pytest
from django.utils import timezone

from consent.exceptions import DomainError
from consent.models import AuditEntry, ConsentRecord, PrivacyRequest
from consent.selectors import consent_effective, request_audit_trail
from consent.services.requests import (
    due_date_for,
    privacy_request_submit,
    request_assign,
    request_deny,
    request_extend,
    request_start,
    request_verify_identity,
)
from personalization.permissions import MARKETING, PRIVACY_OFFICERS
from personalization.services.ingest import events_ingest
from tests.conftest import make_event
from tests.privacy import media_root, raw_id, run_work

URL = "/api/v1/privacy-requests"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    """No test here writes archives to the real MEDIA_ROOT."""
    return media_root(settings, tmp_path)


def submit(shop, key=None, **body):
    data = {"kind": "erasure", "visitor_id": "v-1", "regulation": "gdpr", "contact": "a@b.example"}
    data.update(body)
    return shop.client(key or shop.sk).post(URL, data, format="json")


def test_privacy_request__secret_key__202_with_id_status_and_due_date(shop):
    # Given a storefront server with its secret key
    # When it submits an erasure request
    response = submit(shop)
    # Then it is received, with the GDPR deadline a month from today
    assert response.status_code == 202
    body = response.json()
    req = PrivacyRequest.objects.get()
    assert body == {
        "id": str(req.public_id),
        "status": "received",
        "due_at": due_date_for("gdpr", timezone.now().date()).isoformat(),
    }
    assert req.source == "api" and req.visitor_id == "v-1" and req.contact == "a@b.example"
    entry = AuditEntry.objects.get(action="request.received")
    assert (
        entry.actor_label.startswith("api key sk_") and entry.target == f"privacy_request:{req.pk}"
    )


def test_privacy_request__publishable_key__403_and_nothing_recorded(shop):
    response = submit(shop, key=shop.pk)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert not PrivacyRequest.objects.exists()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"kind": "delete_everything"}, "invalid_request"),
        ({"regulation": "lgpd"}, "invalid_request"),
        ({"visitor_id": ""}, "invalid_request"),
        ({"visitor_id": "x" * 129}, "invalid_request"),
        ({"contact": "c" * 255}, "invalid_request"),
    ],
)
def test_privacy_request__bad_input__error_shape_and_nothing_recorded(shop, body, code):
    # Given a request with one bad field  When it is submitted
    response = submit(shop, **body)
    # Then the documented error shape names the fault, and nothing is recorded
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert not PrivacyRequest.objects.exists()
    assert not AuditEntry.objects.filter(action__startswith="request.").exists()


def test_privacy_request__duplicate_while_open__merged_and_says_so(shop):
    # Given an open erasure request for v-1
    first = submit(shop).json()
    before = PrivacyRequest.objects.values().get()
    # When the same visitor asks again, with another contact
    response = submit(shop, contact="other@b.example")
    # Then it is accepted (202, as the contract says) merged into the open request, and
    # says so; nothing recorded changes
    assert response.status_code == 202
    body = response.json()
    assert body["id"] == first["id"] and body["merged"] is True
    assert "merged" in body["message"]
    assert PrivacyRequest.objects.values().get() == before
    assert AuditEntry.objects.filter(action="request.merged").count() == 1
    # and another kind for the same visitor is a request of its own
    assert submit(shop, kind="opt_out").status_code == 202


def test_privacy_request__detail__status_for_its_property_only(make_shop):
    # Given a request of one shop
    mine, other = make_shop("Mine"), make_shop("Other")
    created = submit(mine).json()
    # When each shop reads it
    own = mine.client(mine.sk).get(f"{URL}/{created['id']}")
    theirs = other.client(other.sk).get(f"{URL}/{created['id']}")
    # Then its own shop sees the status, the other a 404
    assert own.status_code == 200
    assert own.json()["status"] == "received" and own.json()["due_at"] == created["due_at"]
    assert own.json()["export"] is None and own.json()["receipt"] is None
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "not_found"
    assert mine.client(mine.pk).get(f"{URL}/{created['id']}").status_code == 403


def test_opt_out_request__applied_on_receipt__personalization_refused_analytics_kept(shop, consent):
    # Given a visitor who granted everything
    consent(shop.prop, "v-1")
    # When the storefront sends their opt-out
    response = submit(shop, kind="opt_out", regulation="ccpa")
    # Then it completes at once with an opt-out record (method api), analytics kept
    assert response.status_code == 202 and response.json()["status"] == "completed"
    record = ConsentRecord.objects.order_by("-id").first()
    assert record.method == "api"
    assert record.refused == ["granular_tracking", "personalization"]
    effective = consent_effective(shop.prop.pk, "v-1")
    assert effective.purposes == {
        "analytics": True,
        "personalization": False,
        "granular_tracking": False,
    }
    # and granular events are dropped from then on
    result = events_ingest(
        prop=shop.prop, events=[make_event("scroll", properties={"depth_pct": 10}), make_event()]
    )
    assert result.dropped_no_consent == 1 and result.accepted == 1
    req = PrivacyRequest.objects.get()
    assert req.visitor_id == "" and req.completed_at is not None


def test_request__status_changes__each_audited_with_actor(shop, staff, consent):
    # Given a received access request and an officer
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    consent(shop.prop, "v-1")
    req, _ = privacy_request_submit(
        property_id=shop.prop.pk, kind="access", regulation="gdpr", visitor_id="v-1"
    )
    # When the officer works it
    request_assign(request=req, user=officer, assignee=officer)
    request_verify_identity(request=req, user=officer)
    req = request_start(request=req, user=officer)
    req = run_work(req)
    # Then each step is in its audit trail: who, what, when
    trail = [(e.action, e.details.get("to"), e.actor_label) for e in request_audit_trail(req)]
    assert trail == [
        ("request.received", None, "system"),
        ("request.assigned", officer.username, officer.username),
        ("request.status_changed", "identity_verified", officer.username),
        ("request.status_changed", "in_progress", officer.username),
        ("request.status_changed", "completed", "system"),
    ]
    assert req.status == "completed" and req.visitor_id == ""


def test_request__start_before_identity_verified__refused(shop, staff):
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    req, _ = privacy_request_submit(
        property_id=shop.prop.pk, kind="erasure", regulation="gdpr", visitor_id="v-1"
    )
    with pytest.raises(DomainError) as err:
        request_start(request=req, user=officer)
    assert err.value.code == "invalid_transition"
    req.refresh_from_db()
    assert req.status == "received"


def test_request__deny__needs_reason_then_closed_with_it(shop, staff):
    # Given a received request
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    req, _ = privacy_request_submit(
        property_id=shop.prop.pk, kind="erasure", regulation="gdpr", visitor_id="v-1"
    )
    # When the officer denies it without a reason, Then it is refused and nothing changes
    with pytest.raises(DomainError) as err:
        request_deny(request=req, user=officer, reason="  ")
    assert err.value.code == "reason_required"
    req.refresh_from_db()
    assert req.status == "received"
    # When with a reason, Then it is denied, the reason recorded, the raw id dropped
    req = request_deny(request=req, user=officer, reason="Identity could not be verified.")
    assert req.status == "denied" and req.denial_reason == "Identity could not be verified."
    assert req.visitor_id == ""
    # and a closed request changes no more
    with pytest.raises(DomainError):
        request_verify_identity(request=req, user=officer)


def test_request__extend__once_with_reason_and_new_deadline(shop, staff):
    # Given a GDPR request received ten days ago
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    received = timezone.now() - timedelta(days=10)
    req, _ = privacy_request_submit(
        property_id=shop.prop.pk,
        kind="erasure",
        regulation="gdpr",
        visitor_id="v-1",
        received_at=received,
        source="officer",
    )
    assert req.due_date == due_date_for("gdpr", received.date())
    # When it is extended without and then with a reason
    with pytest.raises(DomainError):
        request_extend(request=req, user=officer, reason="")
    req = request_extend(request=req, user=officer, reason="Many systems to search.")
    # Then the deadline is three months from receipt, and a second extension is refused
    assert req.status == "extended" and req.extension_reason == "Many systems to search."
    assert req.due_date == due_date_for("gdpr", received.date(), extended=True)
    with pytest.raises(DomainError):
        request_extend(request=req, user=officer, reason="again")
    entry = AuditEntry.objects.get(action="request.status_changed", details__to="extended")
    assert entry.details["reason"] == "Many systems to search."
    # and the work can still be done after verification
    request_verify_identity(request=req, user=officer)
    assert request_start(request=req, user=officer).status == "in_progress"


def test_request__extend_after_deadline__refused(shop, staff):
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    req, _ = privacy_request_submit(
        property_id=shop.prop.pk,
        kind="erasure",
        regulation="ccpa",
        visitor_id="v-1",
        received_at=timezone.now() - timedelta(days=50),
        source="officer",
    )
    with pytest.raises(DomainError) as err:
        request_extend(request=req, user=officer, reason="late")
    assert err.value.code == "extension_too_late"


def test_request__assign_to_marketing__refused(shop, staff):
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    marketer = staff(MARKETING, shop.prop)
    req, _ = privacy_request_submit(
        property_id=shop.prop.pk, kind="erasure", regulation="gdpr", visitor_id="v-1"
    )
    with pytest.raises(DomainError) as err:
        request_assign(request=req, user=officer, assignee=marketer)
    assert err.value.code == "invalid_assignee"


def test_request__received_in_the_future__refused(shop):
    with pytest.raises(DomainError) as err:
        privacy_request_submit(
            property_id=shop.prop.pk,
            kind="erasure",
            regulation="gdpr",
            visitor_id="v-1",
            received_at=timezone.now() + timedelta(days=2),
        )
    assert err.value.code == "invalid_received_at"
    assert not PrivacyRequest.objects.exists()


def test_access_request__completed__detail_gives_download_link(shop, staff, consent, media):
    # Given a completed access request
    officer = staff(PRIVACY_OFFICERS, shop.prop)
    vid = raw_id()
    consent(shop.prop, vid)
    created = submit(shop, kind="access", visitor_id=vid).json()
    req = PrivacyRequest.objects.get()
    request_verify_identity(request=req, user=officer)
    run_work(request_start(request=req, user=officer))
    # When the storefront reads it
    body = shop.client(shop.sk).get(f"{URL}/{created['id']}").json()
    # Then it is completed, with a download link for the secret key and the archive's expiry
    assert body["status"] == "completed"
    export = body["export"]
    assert export["status"] == "ready" and export["expires_at"]
    assert export["progress"]["stores_done"] == export["progress"]["stores_total"] > 0
    assert export["download_url"].startswith("http://testserver/api/v1/privacy-exports/")


def test_openapi__privacy_request_endpoints__documented(db):
    from django.test import Client

    paths = Client().get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    assert "post" in paths["/api/v1/privacy-requests"]
    assert "get" in paths["/api/v1/privacy-requests/{request_id}"]


def test_privacy_request__access_for_a_visitor_nothing_is_held_about__accepted(shop):
    # Given a visitor id the property holds nothing about  When access is asked for
    response = submit(shop, kind="access", visitor_id="never-seen")
    # Then it is a request like any other (202, the contract's answer), recorded with its
    # deadline: "we hold nothing" is the answer the export will give
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "received" and body["due_at"]
    assert PrivacyRequest.objects.get().kind == "access"
