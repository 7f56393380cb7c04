"""Deadlines: calendar months for GDPR (clamped at month end), days for CCPA; the queue flags."""

from datetime import date, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from consent.models import PrivacyRequest
from consent.selectors import days_left, deadline_flag
from consent.services.requests import due_date_for, privacy_request_submit
from personalization.permissions import PRIVACY_OFFICERS


@pytest.mark.parametrize(
    ("received", "due", "extended"),
    [
        (date(2027, 1, 31), date(2027, 2, 28), date(2027, 4, 30)),
        (date(2028, 1, 31), date(2028, 2, 29), date(2028, 4, 30)),  # leap year
        (date(2027, 1, 30), date(2027, 2, 28), date(2027, 4, 30)),
        (date(2027, 3, 31), date(2027, 4, 30), date(2027, 6, 30)),
        (date(2027, 8, 31), date(2027, 9, 30), date(2027, 11, 30)),
        (date(2027, 11, 30), date(2027, 12, 30), date(2028, 2, 29)),
        (date(2027, 12, 15), date(2028, 1, 15), date(2028, 3, 15)),  # across the year
        (date(2027, 12, 31), date(2028, 1, 31), date(2028, 3, 31)),
        (date(2027, 2, 28), date(2027, 3, 28), date(2027, 5, 28)),
    ],
)
def test_due_date__gdpr__one_calendar_month_clamped_extended_to_three(received, due, extended):
    # Given a GDPR request received on a day  When its deadline is computed
    # Then it is the same day a month later (or that month's last day), three when extended
    assert due_date_for("gdpr", received) == due
    assert due_date_for("gdpr", received, extended=True) == extended


@pytest.mark.parametrize(
    ("received", "due", "extended"),
    [
        (date(2026, 12, 20), date(2027, 2, 3), date(2027, 3, 20)),
        (date(2028, 1, 15), date(2028, 2, 29), date(2028, 4, 14)),  # leap year
        (date(2027, 1, 15), date(2027, 3, 1), date(2027, 4, 15)),
        (date(2027, 10, 31), date(2027, 12, 15), date(2028, 1, 29)),
    ],
)
def test_due_date__ccpa__45_days_extended_by_45(received, due, extended):
    assert due_date_for("ccpa", received) == due
    assert due_date_for("ccpa", received, extended=True) == extended
    assert (due - received).days == 45 and (extended - received).days == 90


def test_due_date__unknown_regulation__refused():
    from consent.exceptions import DomainError

    with pytest.raises(DomainError):
        due_date_for("lgpd", date(2027, 1, 1))


def make(shop, days_ago: int, regulation: str = "gdpr", visitor: str = "v") -> PrivacyRequest:
    req, _ = privacy_request_submit(
        property_id=shop.prop.pk,
        kind="erasure",
        regulation=regulation,
        visitor_id=f"{visitor}-{days_ago}",
        received_at=timezone.now() - timedelta(days=days_ago),
        source="officer",
    )
    return req


def test_queue__flags__overdue_and_due_within_seven_days(shop):
    # Given GDPR requests received 40, 25 and 0 days ago (a month is 28 to 31 days)
    overdue, soon, fresh = make(shop, 40), make(shop, 25), make(shop, 0)
    today = timezone.now().date()
    # When the queue computes days left  Then each is flagged by its deadline
    assert days_left(overdue, today) < 0 and deadline_flag(overdue, today) == "overdue"
    assert 0 <= days_left(soon, today) <= 7 and deadline_flag(soon, today) == "due_soon"
    assert days_left(fresh, today) >= 28 and deadline_flag(fresh, today) == ""


def test_queue__admin__sorted_by_due_date_with_days_left_and_flags(shop, staff):
    # Given requests due at different dates, one of them closed
    fresh, overdue, soon = make(shop, 0), make(shop, 40), make(shop, 25)
    closed = make(shop, 45, visitor="w")
    PrivacyRequest.objects.filter(pk=closed.pk).update(status="denied", denial_reason="x")
    client = Client()
    client.force_login(staff(PRIVACY_OFFICERS, shop.prop))
    # When the officer opens the queue
    html = client.get("/admin/consent/privacyrequest/").content.decode()
    # Then open requests come first, by due date, with days left and flags
    positions = [html.index(f"request #{r.pk}<") for r in (overdue, soon, fresh, closed)]
    assert positions == sorted(positions)
    assert "overdue by" in html and 'class="deadline due-soon"' in html
    overdue_only = client.get("/admin/consent/privacyrequest/?deadline=overdue").content.decode()
    assert f"request #{overdue.pk}<" in overdue_only and f"request #{fresh.pk}<" not in overdue_only
    soon_only = client.get("/admin/consent/privacyrequest/?deadline=due_soon").content.decode()
    assert f"request #{soon.pk}<" in soon_only and f"request #{overdue.pk}<" not in soon_only
