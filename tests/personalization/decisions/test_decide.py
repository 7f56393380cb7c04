"""POST /api/v1/decide and the engine's guard rails."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from consent.selectors import consent_history
from personalization.decisions import DecideRequest, decide, engine, in_holdout, stages
from personalization.hotstate import decision_log_flush
from personalization.models import Adjustment, Decision, Rule, RuleVersion
from personalization.services.ingest import events_ingest
from personalization.services.rules import rule_restore, rule_save
from tests.conftest import hot_state_use, make_event
from tests.targeting import rule, slot

URL = "/api/v1/decide"
SLOTS = ["headline", "cta", "newsletter_popup"]


@pytest.fixture
def store(shop, consent):
    """A shop with three slots, no holdout, and a consenting visitor v-1."""
    shop.prop.holdout_pct = 0
    shop.prop.save()
    slot(shop.prop, "headline", {"short": {"text": "Quick picks"}, "long": {"text": "Read on"}})
    slot(shop.prop, "cta", {"b": {"label": "Buy now"}})
    slot(shop.prop, "newsletter_popup", {"late": {"delay_ms": 30000}})
    consent(shop.prop, "v-1")
    return shop


def ask(store, visitor="v-1", session="s-1", slots=SLOTS, now=None, **context):
    return decide(store.prop, DecideRequest(visitor, session, list(slots), context), now=now)


def test_decide__no_rules__every_slot_default_and_logged(store):
    response = store.client().post(
        URL, {"visitor_id": "v-1", "session_id": "s-1", "slots": SLOTS}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["personalized"] is False and body["unknown_slots"] == []
    assert body["slots"]["headline"] == {
        "variant": "default",
        "content": {"text": "headline default"},
        "source": {"kind": "default"},
    }
    decision_log_flush()  # with Redis, acknowledged decisions wait there for the flush
    decision = Decision.objects.get(decision_id=body["decision_id"])
    assert decision.personalized is False
    assert Adjustment.objects.filter(decision=decision, is_default=True).count() == 3


def test_decide__rule_on_live_signals__serves_its_variant(store):
    # Given a rule for short sessions of visitors who bounce often
    rule(
        store.prop,
        "fast-bouncers",
        "headline",
        "short",
        {"session.duration_s": {"$lt": 30}, "visitor.bounce_rate": {"$gt": 0.5}},
    )
    # And a visitor whose earlier visit bounced and whose current session is 10 s old
    t = timezone.now()
    events_ingest(
        prop=store.prop,
        events=[
            make_event(session_id="s-0", at=t - timedelta(days=2)),
            make_event(session_id="s-1", at=t - timedelta(seconds=10)),
            make_event("click", session_id="s-1", properties={"element_id": "x"}, at=t),
        ],
    )
    # When the storefront asks
    body = (
        store.client()
        .post(URL, {"visitor_id": "v-1", "session_id": "s-1", "slots": ["headline"]}, format="json")
        .json()
    )
    # Then the rule's variant is served with its source
    assert body["personalized"] is True
    assert body["slots"]["headline"] == {
        "variant": "short",
        "content": {"text": "Quick picks"},
        "source": {"kind": "rule", "key": "fast-bouncers", "version": 1},
    }
    decision_log_flush()
    decision = Decision.objects.get(decision_id=body["decision_id"])
    assert decision.signals["visitor"]["bounce_rate"] == 1.0
    assert Adjustment.objects.get(decision=decision).source_key == "fast-bouncers"


def test_decide__context_attributes__read_by_conditions(store):
    rule(store.prop, "free-plan", "cta", "b", {"plan": "free"})
    assert ask(store, plan="x").answers["cta"].variant == "default"
    result = decide(
        store.prop, DecideRequest("v-1", "s-1", ["cta"], {"attributes": {"plan": "free"}})
    )
    assert result.answers["cta"].variant == "b"


def test_decide__no_personalization_consent__defaults_and_suppressed(store, consent):
    rule(store.prop, "all", "headline", "short")
    consent(store.prop, "v-2", {"analytics": True, "personalization": False})
    result = ask(store, visitor="v-2", slots=["headline"])
    assert result.personalized is False and result.answers["headline"].is_default
    assert result.suppressed == [{"slot": "headline", "candidate": "rule:all", "reason": "consent"}]
    decision_log_flush()
    assert Decision.objects.get(decision_id=result.decision_id).personalized is False


def test_decide__gpc_header__opt_out_recorded_and_defaults(store):
    rule(store.prop, "all", "headline", "short")
    body = (
        store.client(HTTP_SEC_GPC="1")
        .post(URL, {"visitor_id": "v-1", "session_id": "s-1", "slots": ["headline"]}, format="json")
        .json()
    )
    assert body["slots"]["headline"]["variant"] == "default"
    assert body["suppressed"][0]["reason"] == "consent"
    assert consent_history(store.prop.pk, "v-1")[-1].method == "gpc"


def test_decide__holdout__deterministic_defaults(store, consent):
    rule(store.prop, "all", "headline", "short")
    store.prop.holdout_pct = 50
    store.prop.save()
    visitors = [f"h-{n}" for n in range(40)]
    held = [v for v in visitors if in_holdout(store.prop, v)]
    assert 5 < len(held) < 35  # about half
    for v in visitors[:10]:
        consent(store.prop, v)
        first = ask(store, visitor=v, slots=["headline"])
        second = ask(store, visitor=v, slots=["headline"], session="s-2")
        assert first.holdout == second.holdout == (v in held)
        assert first.answers["headline"].is_default == (v in held)
        if v in held:
            assert first.suppressed[0]["reason"] == "holdout"


def test_decide__cooldown__blocks_until_it_expires(store):
    store.prop.session_stickiness = False
    store.prop.save()
    rule(store.prop, "r", "headline", "short", cooldown_seconds=600)
    t0 = timezone.now()
    assert ask(store, slots=["headline"], now=t0).answers["headline"].variant == "short"
    blocked = ask(store, slots=["headline"], now=t0 + timedelta(minutes=5))
    assert blocked.answers["headline"].is_default
    assert blocked.suppressed == [{"slot": "headline", "candidate": "rule:r", "reason": "cooldown"}]
    later = ask(store, slots=["headline"], now=t0 + timedelta(minutes=11))
    assert later.answers["headline"].variant == "short"


def test_decide__session_cap__resets_in_new_session(store):
    store.prop.session_stickiness = False
    store.prop.save()
    rule(store.prop, "r", "headline", "short", cap_per_session=2)
    results = [ask(store, slots=["headline"]).answers["headline"].variant for _ in range(3)]
    assert results == ["short", "short", "default"]
    assert ask(store, session="s-2", slots=["headline"]).answers["headline"].variant == "short"


def test_decide__day_cap__resets_next_day(store):
    store.prop.session_stickiness = False
    store.prop.save()
    rule(store.prop, "r", "headline", "short", cap_per_day=1)
    day = timezone.now().replace(hour=10, minute=0)
    assert ask(store, now=day, slots=["headline"]).answers["headline"].variant == "short"
    capped = ask(store, session="s-2", now=day + timedelta(hours=2), slots=["headline"])
    assert capped.suppressed[0]["reason"] == "frequency_cap"
    assert (
        ask(store, session="s-3", now=day + timedelta(days=1), slots=["headline"])
        .answers["headline"]
        .variant
        == "short"
    )


def test_decide__week_cap__counts_across_days(store):
    store.prop.session_stickiness = False
    store.prop.save()
    rule(store.prop, "r", "headline", "short", cap_per_week=2)
    monday = timezone.now() - timedelta(days=timezone.now().weekday())
    monday = monday.replace(hour=9)
    got = [
        ask(store, session=f"s-{d}", now=monday + timedelta(days=d), slots=["headline"])
        .answers["headline"]
        .variant
        for d in range(4)
    ]
    assert got == ["short", "short", "default", "default"]


def test_decide__two_rules_one_slot__priority_wins_other_conflict(store):
    rule(store.prop, "low", "headline", "long", priority=10)
    rule(store.prop, "high", "headline", "short", priority=20)
    result = ask(store, slots=["headline"])
    assert result.answers["headline"].key == "high"
    assert result.suppressed == [
        {"slot": "headline", "candidate": "rule:low", "reason": "conflict"}
    ]


def test_decide__equal_priority__deterministic_tie_break_by_key(store):
    rule(store.prop, "b-rule", "headline", "long")
    rule(store.prop, "a-rule", "headline", "short")
    assert {
        ask(store, session=f"s-{n}", slots=["headline"]).answers["headline"].key for n in range(3)
    } == {"a-rule"}


def test_decide__session_budget__limits_adjustments(store):
    store.prop.max_adjustments_per_session = 1
    store.prop.save()
    rule(store.prop, "h", "headline", "short")
    rule(store.prop, "c", "cta", "b")
    result = ask(store, slots=["headline", "cta"])
    assert result.answers["headline"].key == "h" and result.answers["cta"].is_default
    assert result.suppressed == [{"slot": "cta", "candidate": "rule:c", "reason": "session_budget"}]


def test_decide__stickiness__keeps_variant_unless_override(store):
    # Given a session that was shown rule "first"
    rule(store.prop, "first", "headline", "long", priority=10)
    assert ask(store, slots=["headline"]).answers["headline"].key == "first"
    # When a higher-priority rule without override starts to apply, the variant stays
    second = rule(store.prop, "second", "headline", "short", priority=20)
    kept = ask(store, slots=["headline"])
    assert kept.answers["headline"].key == "first"
    assert {"slot": "headline", "candidate": "rule:second", "reason": "conflict"} in kept.suppressed
    # And a fresh session gets the higher-priority rule
    assert ask(store, session="s-9", slots=["headline"]).answers["headline"].key == "second"
    # When it may override stickiness, it replaces the variant
    second.stickiness_override = True
    rule_save(rule=second)
    assert ask(store, slots=["headline"]).answers["headline"].key == "second"


def test_decide__sticky_repeat__not_a_new_adjustment_against_budget(store):
    store.prop.max_adjustments_per_session = 2
    store.prop.save()
    rule(store.prop, "h", "headline", "short")
    rule(store.prop, "c", "cta", "b")
    for _ in range(3):
        assert ask(store, slots=["headline"]).answers["headline"].key == "h"
    assert ask(store, slots=["cta"]).answers["cta"].key == "c"


@pytest.fixture(params=["database", "redis"])
def backend(request, settings):
    """Each hot-state back-end in turn: counters and sticky slots in the database, or in
    Redis (skipped on a laptop without it)."""
    hot_state_use(settings, request.param)
    return request.param


def test_decide__sticky_repeats_of_a_capped_rule__marked_sticky_never_suppressed(backend, store):
    # Given session stickiness (the default) and a rule capped at 3 a session, with a
    # one-minute cooldown
    rule(store.prop, "r", "headline", "short", cap_per_session=3, cooldown_seconds=60)
    body = {"visitor_id": "v-1", "session_id": "s-1", "slots": ["headline"]}
    # When the visitor views 8 pages of one session
    answers = [store.client().post(URL, body, format="json").json() for _ in range(8)]
    # Then the first page is the rule's application, and the 7 others its sticky repeats:
    # the same variant, marked sticky in the answer's source, and never listed as
    # suppressed (for a cooldown or a cap) while its variant is served
    assert [a["slots"]["headline"]["variant"] for a in answers] == ["short"] * 8
    assert answers[0]["slots"]["headline"]["source"] == {"kind": "rule", "key": "r", "version": 1}
    for answer in answers[1:]:
        assert answer["slots"]["headline"]["source"] == {
            "kind": "rule",
            "key": "r",
            "version": 1,
            "sticky": True,
        }
        assert answer["suppressed"] == []
    # And a new session, once the cooldown is over, gets a new application (not a repeat)
    later = ask(store, session="s-2", slots=["headline"], now=timezone.now() + timedelta(minutes=2))
    assert later.answers["headline"].key == "r" and not later.answers["headline"].sticky
    decision_log_flush()
    assert Decision.objects.filter(suppressed=[]).count() == 9


def test_decide__sticky_repeat_of_a_capped_rule__counts_no_unit_of_the_cap(backend, store):
    # Given a rule that may apply twice a session, and stickiness switched off and on
    rule(store.prop, "r", "headline", "short", cap_per_session=2)
    # When the visitor sees it once, then 5 sticky repeats, then stickiness goes off
    assert ask(store, slots=["headline"]).answers["headline"].sticky is False
    assert all(ask(store, slots=["headline"]).answers["headline"].sticky for _ in range(5))
    store.prop.session_stickiness = False
    store.prop.save()
    # Then the cap still has its second application left, and only then blocks
    second = ask(store, slots=["headline"])
    assert second.answers["headline"].key == "r" and second.answers["headline"].sticky is False
    third = ask(store, slots=["headline"])
    assert third.answers["headline"].is_default
    assert third.suppressed == [
        {"slot": "headline", "candidate": "rule:r", "reason": "frequency_cap"}
    ]


def test_decide__unknown_slots__listed_not_failing(store):
    result = ask(store, slots=["headline", "nope"])
    assert result.unknown_slots == ["nope"] and list(result.answers) == ["headline"]


def test_decide__broken_rule__skipped_rest_served(store):
    good = rule(store.prop, "good", "headline", "short", priority=1)
    bad = rule(store.prop, "bad", "headline", "long", priority=99)
    Rule.objects.filter(pk=bad.pk).update(condition={"url": {"$regex": "("}})
    from personalization.config_version import config_bump

    config_bump(store.prop.pk)
    assert ask(store, slots=["headline"]).answers["headline"].key == good.key


def test_decide__rule_change__seen_by_next_decision(store):
    r = rule(store.prop, "r", "headline", "short", condition={"plan": "pro"})
    assert ask(store, slots=["headline"]).answers["headline"].is_default
    r.condition = {}
    rule_save(rule=r)
    assert ask(store, slots=["headline"]).answers["headline"].variant == "short"


def test_decide__paused_or_scheduled_rule__not_applied(store):
    rule(store.prop, "paused", "headline", "short", status="paused")
    rule(store.prop, "future", "headline", "long", starts_at=timezone.now() + timedelta(days=1))
    assert ask(store, slots=["headline"]).answers["headline"].is_default


def test_rule_versions__each_change_recorded__restore_brings_back(store):
    r = rule(store.prop, "r", "headline", "short", priority=5)
    r.priority = 50
    r.condition = {"plan": "pro"}
    rule_save(rule=r)
    versions = list(RuleVersion.objects.filter(rule=r).order_by("version"))
    assert [v.version for v in versions] == [1, 2]
    assert versions[1].changes == ["condition", "priority"]
    rule_restore(rule=r, version=1)
    r.refresh_from_db()
    assert (r.version, r.priority, r.condition) == (3, 5, {})
    assert RuleVersion.objects.get(rule=r, version=3).note == "restored version 1"


BAD = [
    ({"session_id": "s", "slots": ["a"]}, "invalid_request"),
    ({"visitor_id": "v", "session_id": "s", "slots": []}, "invalid_request"),
    ({"visitor_id": "v", "session_id": "s", "slots": "headline"}, "invalid_request"),
    (
        {"visitor_id": "v", "session_id": "s", "slots": [f"s{n}" for n in range(51)]},
        "too_many_slots",
    ),
    (
        {
            "visitor_id": "v",
            "session_id": "s",
            "slots": ["a"],
            "context": {"attributes": {"plan": {"nested": True}}},
        },
        "invalid_request",
    ),
    ({"visitor_id": "v", "session_id": "s", "slots": ["a"], "context": "x"}, "invalid_request"),
    ({"visitor_id": 5, "session_id": "s", "slots": ["a"]}, "invalid_request"),
    ([1], "invalid_request"),
]


@pytest.mark.parametrize(("body", "code"), BAD)
def test_decide__bad_body__400_in_error_shape(store, body, code):
    response = store.client().post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert not Decision.objects.exists()


def test_decide__the_events_context__accepted_and_its_utm_readable(store):
    # Given a rule on the campaign the visitor came from
    rule(store.prop, "spring-mail", "cta", "b", {"context.utm.campaign": "spring"})
    # When the page sends decide the same context it sends with its events
    context = {
        "url": "https://shop.example/",
        "referrer": "https://mail.example/",
        "user_agent": "Mozilla/5.0",
        "title": "Shop",
        "locale": "en-GB",
        "timezone": "Europe/London",
        "screen": "1440x900",
        "utm": {"source": "newsletter", "medium": "email", "campaign": "spring"},
        "attributes": {"plan": "free"},
    }
    body = {"visitor_id": "v-1", "session_id": "s-1", "slots": ["cta"], "context": context}
    response = store.client().post(URL, body, format="json")
    # Then it is accepted, and conditions can read it
    assert response.status_code == 200, response.content
    assert response.json()["slots"]["cta"]["variant"] == "b"
    # while a key neither kind of request knows is still refused, by name
    body["context"] = {**context, "utm_source": "x"}
    response = store.client().post(URL, body, format="json")
    assert response.status_code == 400
    assert "utm_source" in response.json()["error"]["message"]


def test_decide__engine_fails_inside__every_slot_default_and_the_failure_logged(
    store, monkeypatch, caplog
):
    # Given a rule that would apply, and an engine that fails while evaluating (a bug)
    rule(store.prop, "free-plan", "cta", "b", {"plan": "free"})

    def broken(*args, **kwargs):
        raise RuntimeError("a bug inside the engine")

    monkeypatch.setattr(stages, "rule_matches", broken)
    body = {
        "visitor_id": "v-1",
        "session_id": "s-1",
        "slots": ["headline", "cta", "nope"],
        "context": {"attributes": {"plan": "free"}},
    }
    # When the storefront asks
    response = store.client().post(URL, body, format="json")
    # Then every slot still gets an answer: its default (docs/CONTRACT.md), never a 500
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["personalized"] is False and data["unknown_slots"] == ["nope"]
    assert {k: v["variant"] for k, v in data["slots"].items()} == {
        "headline": "default",
        "cta": "default",
    }
    assert all(v["source"] == {"kind": "default"} for v in data["slots"].values())
    # and the failure is in the log, with its traceback; nothing was counted or logged
    assert "serving defaults" in caplog.text and "a bug inside the engine" in caplog.text
    decision_log_flush()
    assert not Decision.objects.exists() and not Adjustment.objects.exists()


def test_decide__rule_set_cannot_compile__defaults_read_from_the_slots(store, monkeypatch):
    # Given a property whose rule set fails to compile (a bug), nothing compiled before
    def broken(*args, **kwargs):
        raise RuntimeError("cannot compile")

    monkeypatch.setattr(engine, "ruleset_for", broken)
    body = {"visitor_id": "v-1", "session_id": "s-1", "slots": ["cta", "newsletter_popup", "x"]}
    # When the storefront asks  Then every slot still gets its stored default
    response = store.client().post(URL, body, format="json")
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["slots"] == {
        key: {
            "variant": "default",
            "content": {"text": f"{key} default"},
            "source": {"kind": "default"},
        }
        for key in ("cta", "newsletter_popup")
    }
    assert data["unknown_slots"] == ["x"] and data["personalized"] is False


def test_decide__bearer_in_any_case__accepted(store):
    # Authentication schemes are case-insensitive: "bearer" is "Bearer"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"bearer {store.pk}")
    body = {"visitor_id": "v-1", "session_id": "s-1", "slots": ["cta"]}
    assert client.post(URL, body, format="json").status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Basic {store.pk}")
    assert client.post(URL, body, format="json").status_code == 401


def test_decide__no_key__401(store):
    response = Client().post(
        URL, {"visitor_id": "v", "session_id": "s", "slots": ["a"]}, content_type="application/json"
    )
    assert response.status_code == 401


def test_decide__bounded_queries__whatever_the_number_of_rules(
    store, django_assert_max_num_queries
):
    for n in range(50):
        rule(
            store.prop,
            f"r{n:02d}",
            "headline",
            "short",
            {"session.duration_s": {"$gt": 1000 + n}, "plan": {"$in": ["a", "b"]}},
        )
    rule(store.prop, "winner", "cta", "b")
    ask(store)  # compile once
    with django_assert_max_num_queries(14):
        result = ask(store, session="s-2")
    assert result.answers["cta"].key == "winner"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("hot_state", ["database", "redis"])
def test_decide__concurrent_decisions__never_exceed_a_cap(
    postgres_only, make_shop, consent, settings, hot_state
):
    # Given the counters in the database (conditional upserts) or in Redis (a Lua script)
    hot_state_use(settings, hot_state)
    # and a rule that may apply once a day, and eight racing page views in eight sessions
    shop = make_shop()
    shop.prop.holdout_pct = 0
    shop.prop.save()
    slot(shop.prop, "headline", {"short": {"text": "x"}})
    rule(shop.prop, "once", "headline", "short", cap_per_day=1)
    consent(shop.prop, "v-1")
    barrier = threading.Barrier(8)
    variants: list[str] = []

    def one(n: int) -> None:
        barrier.wait()
        result = decide(shop.prop, DecideRequest("v-1", f"s-{n}", ["headline"]))
        variants.append(result.answers["headline"].variant)
        connection.close()

    threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then exactly one got the adjustment, and every decision was logged once
    assert sorted(variants) == ["default"] * 7 + ["short"]
    decision_log_flush()
    assert Decision.objects.count() == 8
    assert Adjustment.objects.filter(is_default=False).count() == 1


@override_settings(DECIDE_REDIS_URL="")  # the database path (Redis: all-or-nothing in Lua)
def test_decide__log_write_fails__defaults_and_nothing_counted(postgres_only, store):
    # Given a rule, and a database that refuses decision-log rows (a real trigger)
    from personalization.models import RuleCounter, SessionBudget

    rule(store.prop, "r", "headline", "short", cap_per_session=1)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse_log() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'log unavailable'; END $$ LANGUAGE plpgsql;"
            "CREATE TRIGGER refuse_log BEFORE INSERT ON personalization_decision "
            "FOR EACH ROW EXECUTE FUNCTION refuse_log();"
        )
    # When the storefront asks
    result = ask(store, slots=["headline"])
    # Then the adjustment is not made: the slot gets its default, and no cap was used
    assert result.answers["headline"].is_default and result.logged is False
    assert not RuleCounter.objects.exists() and not SessionBudget.objects.exists()
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER refuse_log ON personalization_decision")
    assert ask(store, slots=["headline"]).answers["headline"].variant == "short"
