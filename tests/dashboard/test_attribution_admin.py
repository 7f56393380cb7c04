"""Marketing sets a slot's attribution window in the admin; what it types is checked."""

from html import unescape

from django.test import Client

from consent.models import AuditEntry
from dashboard.models import AttributionWindow
from personalization.permissions import ANALYSTS, MARKETING
from tests.targeting import slot

URL = "/admin/dashboard/attributionwindow/"


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_attribution_window_admin__valid__saved_audited_and_recompute_announced(shop, staff):
    slot(shop.prop, "headline", {"short": {"text": "Quick"}})
    client = login(staff(MARKETING, shop.prop))
    response = client.post(
        f"{URL}add/",
        {"property": shop.prop.pk, "slot_key": "headline", "seconds": 2700},
        follow=True,
    )
    assert response.status_code == 200
    window = AttributionWindow.objects.get()
    assert (window.property, window.slot_key, window.seconds) == (shop.prop, "headline", 2700)
    page = unescape(response.content.decode())
    assert "recompute this property's figures with the new window" in page
    assert AuditEntry.objects.filter(
        kind="configuration", action="attributionwindow.added", property=shop.prop
    ).exists()


def test_attribution_window_admin__unknown_slot_or_out_of_bounds__refused(shop, staff):
    slot(shop.prop, "headline", {"short": {"text": "Quick"}})
    client = login(staff(MARKETING, shop.prop))
    cases = [
        ({"slot_key": "hedline", "seconds": 600}, "has no slot 'hedline'; its slots: headline"),
        ({"slot_key": "headline", "seconds": 59}, "greater than or equal to 60"),
        ({"slot_key": "headline", "seconds": 86401}, "less than or equal to 86400"),
    ]
    for fields, message in cases:
        response = client.post(f"{URL}add/", {"property": shop.prop.pk, **fields})
        assert response.status_code == 200, message
        assert message in unescape(response.content.decode()), message
    assert not AttributionWindow.objects.exists()


def test_attribution_window_admin__analyst__reads_but_cannot_add(shop, staff):
    AttributionWindow.objects.create(property=shop.prop, slot_key="headline", seconds=600)
    client = login(staff(ANALYSTS, shop.prop))
    assert client.get(URL).status_code == 200
    response = client.post(
        f"{URL}add/", {"property": shop.prop.pk, "slot_key": "headline", "seconds": 900}
    )
    assert response.status_code == 403
    assert AttributionWindow.objects.get().seconds == 600
