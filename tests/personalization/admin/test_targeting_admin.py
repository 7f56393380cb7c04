"""Staff-side targeting: rule forms, history and restore, preview, replay, segment sizes."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from personalization.admin.targeting import segment_size
from personalization.models import Rule, RuleVersion, Segment, SegmentMember
from personalization.permissions import ANALYSTS, MARKETING
from personalization.services.ingest import events_ingest
from personalization.services.replay import rule_replay
from tests.conftest import make_event
from tests.targeting import rule, slot


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def shop_with_slot(shop, consent):
    # No holdout: with the default 5 %, v-1 lands in it for one property id in twenty, and
    # the previews and replays here would show defaults (a flaky test, seen in CI).
    shop.prop.holdout_pct = 0
    shop.prop.save()
    slot(shop.prop, "headline", {"short": {"text": "Quick"}, "long": {"text": "Long"}})
    slot(shop.prop, "cta", {"b": {"label": "Buy"}})
    consent(shop.prop, "v-1")
    consent(shop.prop, "v-2")
    return shop


def form_data(shop, **overrides):
    from personalization.models import Slot, Variant

    headline = Slot.objects.get(property=shop.prop, key="headline")
    data = {
        "property": shop.prop.pk,
        "key": "r1",
        "name": "",
        "slot": headline.pk,
        "variant": Variant.objects.get(slot=headline, key="short").pk,
        "condition": '{"session.duration_s": {"$lt": 30}}',
        "priority": 100,
        "status": "active",
        "cooldown_seconds": 0,
        "min_sample": 200,
        "versions-TOTAL_FORMS": 0,
        "versions-INITIAL_FORMS": 0,
    }
    data.update(overrides)
    return data


def test_rule_admin__save__creates_version_with_author(shop_with_slot, staff):
    user = staff(MARKETING, shop_with_slot.prop)
    response = login(user).post("/admin/personalization/rule/add/", form_data(shop_with_slot))
    assert response.status_code == 302, response.content.decode()[:3000]
    version = RuleVersion.objects.get(rule__key="r1")
    assert version.version == 1 and version.changed_by == user


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"condition": '{"url": {"$regex": "("}}'}, "invalid regular expression"),
        ({"condition": '{"a": {"$foo": 1}}'}, "unknown operator"),
        ({"condition": "{not json"}, "Enter a valid JSON"),
        ({"variant": "cta-b"}, "Choose a variant of the slot"),
    ],
)
def test_rule_admin__bad_input__form_error_and_nothing_saved(
    shop_with_slot, staff, overrides, message
):
    from personalization.models import Variant

    if overrides.get("variant") == "cta-b":
        overrides = {"variant": Variant.objects.get(slot__key="cta", key="b").pk}
    user = staff(MARKETING, shop_with_slot.prop)
    response = login(user).post(
        "/admin/personalization/rule/add/", form_data(shop_with_slot, **overrides)
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Rule.objects.exists()


def test_rule_admin__restore__previous_version_current_again(shop_with_slot, staff):
    r = rule(shop_with_slot.prop, "r", "headline", "short", priority=5)
    client = login(staff(MARKETING, shop_with_slot.prop))
    client.post(
        f"/admin/personalization/rule/{r.pk}/change/",
        form_data(shop_with_slot, key="r", priority=70),
    )
    r.refresh_from_db()
    assert (r.version, r.priority) == (2, 70)
    page = client.get(f"/admin/personalization/rule/{r.pk}/change/").content.decode()
    assert "Restore v1" in page
    client.post(f"/admin/personalization/rule/{r.pk}/restore/1/")
    r.refresh_from_db()
    assert (r.version, r.priority) == (3, 5)


def test_rule_admin__analyst__reads_but_cannot_restore(shop_with_slot, staff):
    r = rule(shop_with_slot.prop, "r", "headline", "short", priority=5)
    r.priority = 9
    from personalization.services.rules import rule_save

    rule_save(rule=r)
    client = login(staff(ANALYSTS, shop_with_slot.prop))
    assert client.get(f"/admin/personalization/rule/{r.pk}/change/").status_code == 200
    assert client.post(f"/admin/personalization/rule/{r.pk}/restore/1/").status_code == 403
    r.refresh_from_db()
    assert r.priority == 9


def test_rule_preview__explains_each_step_without_logging(shop_with_slot, staff):
    from personalization.models import Decision

    r = rule(shop_with_slot.prop, "r", "headline", "short")
    events_ingest(prop=shop_with_slot.prop, events=[make_event()])
    client = login(staff(ANALYSTS, shop_with_slot.prop))
    page = client.get(f"/admin/personalization/rule/{r.pk}/preview/?visitor_id=v-1")
    text = page.content.decode()
    assert "consent to personalization: yes" in text
    assert "headline: rule r (priority 100, in schedule): condition holds" in text
    assert "headline: serves short" in text
    assert not Decision.objects.exists()


def test_rule_preview__sticky_repeat__marked_sticky_not_suppressed(shop_with_slot, staff):
    from personalization.decisions import DecideRequest, decide

    # Given a rule with a cooldown that v-1's current session was already shown
    r = rule(shop_with_slot.prop, "r", "headline", "short", cooldown_seconds=600)
    events_ingest(prop=shop_with_slot.prop, events=[make_event()])
    first = decide(shop_with_slot.prop, DecideRequest("v-1", "s-1", ["headline"]))
    assert first.answers["headline"].key == "r"
    # When an analyst tests the rule against v-1 now, within the cooldown
    client = login(staff(ANALYSTS, shop_with_slot.prop))
    text = client.get(f"/admin/personalization/rule/{r.pk}/preview/?visitor_id=v-1")
    text = text.content.decode()
    # Then the preview says the slot keeps the variant as a sticky repeat, which caps and
    # cooldowns do not count, and does not call the served rule suppressed
    assert "headline: serves short (rule r, sticky): kept from earlier in this session" in text
    assert "caps, cooldowns and the session budget do not count it" in text
    assert "suppressed (cooldown)" not in text


def test_rule_replay__known_sequence__counts_matches_caps_conflicts(shop_with_slot):
    # Given v-1 with three page views in one session and v-2 with one
    t = timezone.now() - timedelta(hours=3)
    events_ingest(
        prop=shop_with_slot.prop,
        events=[
            make_event(at=t),
            make_event(at=t + timedelta(seconds=10)),
            make_event(at=t + timedelta(seconds=20)),
            make_event(visitor_id="v-2", session_id="x", at=t),
        ],
    )
    # And a rule for the second page view on, at most once a session, and a rival rule
    target = rule(
        shop_with_slot.prop,
        "deep",
        "headline",
        "short",
        {"session.page_views": {"$gte": 2}},
        cap_per_session=1,
    )
    rule(shop_with_slot.prop, "rival", "headline", "long")
    # When it is replayed over the last 7 days
    report = rule_replay(rule=target)
    # Then
    assert (report.events, report.sessions, report.decision_points) == (4, 2, 4)
    assert report.sessions_matched == 1
    assert report.applications == 1
    assert dict(report.suppressed) == {"frequency_cap": 1}
    assert dict(report.conflicts) == {"rival": 2}


def test_rule_replay__page__shows_report(shop_with_slot, staff):
    r = rule(shop_with_slot.prop, "r", "headline", "short")
    events_ingest(prop=shop_with_slot.prop, events=[make_event()])
    text = (
        login(staff(MARKETING, shop_with_slot.prop))
        .get(f"/admin/personalization/rule/{r.pk}/replay/")
        .content.decode()
    )
    assert "Applications" in text and "<td>1</td>" in text


def test_segment_size__condition_and_saved_list__estimated(shop_with_slot):
    t = timezone.now() - timedelta(minutes=5)
    events_ingest(
        prop=shop_with_slot.prop,
        events=[
            make_event(at=t),
            make_event(at=t + timedelta(seconds=5)),
            make_event(visitor_id="v-2", session_id="x", at=t),
        ],
    )
    deep = Segment.objects.create(
        property=shop_with_slot.prop, key="deep", condition={"visitor.page_views": {"$gte": 2}}
    )
    assert segment_size(deep) == (1, 2, 2)
    SegmentMember.objects.create(segment=deep, property=shop_with_slot.prop, visitor_id="v-2")
    assert segment_size(deep)[0] == 2


def test_segment_admin__saved_list__members_written(shop_with_slot, staff):
    client = login(staff(MARKETING, shop_with_slot.prop))
    response = client.post(
        "/admin/personalization/segment/add/",
        {
            "property": shop_with_slot.prop.pk,
            "key": "vips",
            "name": "VIPs",
            "condition": "{}",
            "goal": "{}",
            "saved_visitors": "v-1\nv-2\n\nv-1",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert sorted(SegmentMember.objects.values_list("visitor_id", flat=True)) == ["v-1", "v-2"]


def test_slot_admin__variant_content_checked_against_slot_schema(shop, staff):
    client = login(staff(MARKETING, shop.prop))
    response = client.post(
        "/admin/personalization/slot/add/",
        {
            "property": shop.prop.pk,
            "key": "banner",
            "name": "",
            "description": "",
            "default_variant": "default",
            "content_schema": '{"type": "object", "required": ["text"]}',
            "variants-TOTAL_FORMS": 1,
            "variants-INITIAL_FORMS": 0,
            "variants-0-key": "default",
            "variants-0-content": '{"label": "x"}',
            "variants-0-strategy": "",
            "variants-0-strategy_limit": 4,
        },
    )
    assert response.status_code == 200
    assert "must contain" in response.content.decode()


def test_rule_replay__live_rule__fires_on_estimated_page_signals_and_says_where(
    shop_with_slot, staff
):
    # Given v-1's page view with a slow then a fast scroll, and v-2's with slow scrolls only
    t = timezone.now() - timedelta(hours=2)
    events_ingest(
        prop=shop_with_slot.prop,
        events=[
            make_event(at=t),
            make_event(
                "scroll",
                at=t + timedelta(seconds=4),
                properties={"depth_pct": 20, "speed_px_s": 300},
            ),  # fmt: skip
            make_event(
                "scroll",
                at=t + timedelta(seconds=9),
                properties={"depth_pct": 60, "speed_px_s": 2400},
            ),  # fmt: skip
            make_event(visitor_id="v-2", session_id="x", at=t),
            make_event(
                "scroll",
                visitor_id="v-2",
                session_id="x",
                at=t + timedelta(seconds=5),
                properties={"depth_pct": 30, "speed_px_s": 200},
            ),  # fmt: skip
        ],
    )
    # And a live rule: fast scrollers in their first session
    target = rule(
        shop_with_slot.prop,
        "fast",
        "headline",
        "short",
        {"session.page_views": {"$gte": 1}, "page.scroll_speed": {"$gt": 1000}},
    )
    # When it is replayed
    report = rule_replay(rule=target)
    # Then it fired once, in v-1's page, 9 s after the page view, not for v-2
    assert report.live and report.decision_points == 2
    assert (report.applications, report.fired_in_page) == (1, 1)
    assert report.median_seconds_to_fire == 9.0
    assert report.sessions_matched == 1
    # and the page says the page signals were estimated, and how
    assert report.approximations == [
        "page.scroll_speed: the speed the last scroll event recorded (speed_px_s), not the "
        "tracker's one-second window"
    ]
    text = (
        login(staff(MARKETING, shop_with_slot.prop))
        .get(f"/admin/personalization/rule/{target.pk}/replay/")
        .content.decode()
    )
    assert "estimated from the recorded events" in text
    assert "page.scroll_speed: the speed the last scroll event recorded" in text
    assert "median 9.0 s after the page view" in text
