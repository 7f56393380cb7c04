"""The guard rails' contract: one table of scenarios (cooldowns, caps per session / day /
week, the session's budget, sticky repeats), each run against both atomic implementations
(Redis: ``hotstate.apply_and_log``'s Lua script; the database: ``decisions.state.db_apply`` and its
conditional upserts) and compared, attempt by attempt and in the state left behind, with
the specification's reference (``personalization.guard_rails.step``). The reference is
itself held to the outcomes written in the table, so neither side can drift alone.

Time is the caller's: every attempt passes its ``now`` (the Lua script never reads Redis's
clock). A sticky repeat is never sent to a back-end (the engine serves it without applying
it): the later attempts and the final state show it counted nothing; the same scenarios
also run through ``decide`` with session stickiness on for those attempts. The race for
the last unit of a cap or of a budget runs on both (the database side needs PostgreSQL).
"""

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection, transaction

from personalization import guard_rails, hotstate
from personalization.decisions import DecideRequest, decide
from personalization.decisions import state as decision_state
from personalization.guard_rails import (
    COOLDOWN,
    FREQUENCY_CAP,
    SESSION_BUDGET,
    GuardRails,
    Keys,
)
from personalization.models import RuleCounter, SessionBudget
from tests.conftest import hot_state_use, is_postgres, needs
from tests.targeting import rule, slot

BACKENDS = ["redis", "database"]
VISITOR = "v-1"
TZ = "UTC"
WED = datetime(2030, 3, 6, 9, 0, 0, 250_000, tzinfo=UTC)  # ISO week 2030-W10
MICRO = timedelta(microseconds=1)
RULE_SLOT = "headline"
MODEL_SLOT = "picks"


@dataclass(frozen=True)
class Attempt:
    """One page's attempt to apply the rule (or, ``model``, a model's answer: budget only)."""

    at: datetime
    session: str = "s-1"
    sticky: bool = False  # a sticky repeat of what the session already shows
    model: bool = False


@dataclass(frozen=True)
class Scenario:
    name: str
    rails: GuardRails
    attempts: tuple[Attempt, ...]
    expected: tuple[str | None, ...]  # each attempt's refusal reason (None: applied/served)
    limit: int | None = None


def at(offset: timedelta, session: str = "s-1", **kw: Any) -> Attempt:
    return Attempt(WED + offset, session, **kw)


SCENARIOS = [
    Scenario(
        "cooldown_ends_exactly_at_its_end",
        GuardRails(cooldown_s=600),
        (
            at(timedelta(0)),
            at(timedelta(seconds=600) - MICRO),
            at(timedelta(seconds=600)),
            at(timedelta(seconds=1200) - MICRO, "s-2"),
        ),
        (None, COOLDOWN, None, COOLDOWN),
    ),
    Scenario(
        "no_cooldown_and_a_clock_behind_never_waits",
        GuardRails(),
        (at(timedelta(0)), at(-timedelta(seconds=5)), at(-timedelta(seconds=5))),
        (None, None, None),
    ),
    Scenario(
        "session_cap_restarts_in_each_new_session",
        GuardRails(cap_session=2),
        (
            at(timedelta(0)),
            at(timedelta(seconds=1)),
            at(timedelta(seconds=2)),
            at(timedelta(seconds=3), "s-2"),
            # one key per window is kept: back in s-1 after s-2, its count starts again
            at(timedelta(seconds=4)),
        ),
        (None, None, FREQUENCY_CAP, None, None),
    ),
    Scenario(
        "day_cap_rolls_over_at_midnight",
        GuardRails(cap_day=1),
        (
            at(timedelta(hours=14)),
            at(timedelta(hours=15) - MICRO - timedelta(microseconds=250_000), "s-2"),
            at(timedelta(hours=15) - timedelta(microseconds=250_000), "s-3"),
        ),
        (None, FREQUENCY_CAP, None),
    ),
    Scenario(
        "week_cap_rolls_over_on_monday",
        GuardRails(cap_week=2),
        (
            at(timedelta(days=3), "s-1"),  # Saturday
            at(timedelta(days=4), "s-2"),  # Sunday
            at(timedelta(days=4, hours=15) - MICRO - timedelta(microseconds=250_000), "s-3"),
            at(timedelta(days=4, hours=15) - timedelta(microseconds=250_000), "s-4"),  # Monday
        ),
        (None, None, FREQUENCY_CAP, None),
    ),
    Scenario(
        "session_and_day_caps_the_first_full_window_refuses",
        GuardRails(cap_session=3, cap_day=2),
        (
            at(timedelta(0)),
            at(timedelta(seconds=1)),
            at(timedelta(seconds=2)),  # day full (2), session not (2 of 3)
            at(timedelta(days=1)),  # new day: the session's third
            at(timedelta(days=1, seconds=1)),  # session full
        ),
        (None, None, FREQUENCY_CAP, None, FREQUENCY_CAP),
    ),
    Scenario(
        "budget_spent_by_rules_and_models_then_a_new_session",
        GuardRails(),
        (
            at(timedelta(0), model=True),
            at(timedelta(seconds=1)),
            at(timedelta(seconds=2), model=True),
            at(timedelta(seconds=3)),
            at(timedelta(seconds=4), "s-2"),
        ),
        (None, None, SESSION_BUDGET, SESSION_BUDGET, None),
        limit=2,
    ),
    Scenario(
        "cooldown_reported_before_a_spent_budget",
        GuardRails(cooldown_s=60),
        (at(timedelta(0)), at(timedelta(seconds=10)), at(timedelta(seconds=60))),
        (None, COOLDOWN, SESSION_BUDGET),
        limit=1,
    ),
    Scenario(
        "sticky_repeats_count_no_cap_cooldown_or_budget_unit",
        GuardRails(cooldown_s=60, cap_session=2),
        (
            at(timedelta(0)),
            at(timedelta(seconds=10), sticky=True),
            at(timedelta(seconds=20), sticky=True),
            at(timedelta(seconds=30), sticky=True),
            at(timedelta(seconds=60)),  # the cap's second unit, the budget's second
            at(timedelta(seconds=70), sticky=True),
            at(timedelta(seconds=200)),
        ),
        (None, None, None, None, None, None, FREQUENCY_CAP),
        limit=3,
    ),
]


def keys_of(attempt: Attempt) -> Keys:
    day, week = guard_rails.window_keys(attempt.at, TZ)
    return Keys(attempt.session, day, week)


def reference(sc: Scenario) -> tuple[list[str | None], Any, dict[str, int]]:
    """The specification's outcomes, the rule's counters and each session's used budget."""
    counters: Any = None
    used: dict[str, int] = {}
    reasons = []
    for a in sc.attempts:
        out = guard_rails.step(
            None if a.model else sc.rails,
            counters,
            used.get(a.session, 0),
            sc.limit,
            a.at,
            keys_of(a),
            sticky=a.sticky,
        )
        reasons.append(out.reason)
        if not a.model:
            counters = out.counters
        if not a.sticky:
            used[a.session] = out.used
    return reasons, counters, used


def winner(sc: Scenario, a: Attempt, rule_id: int) -> hotstate.Winner:
    if a.model:
        return hotstate.Winner(MODEL_SLOT, f"m:{MODEL_SLOT}", 0, None, None, None, {})
    r = sc.rails
    sticky = {"rule_id": rule_id, "key": "r", "version": 1, "variant": "short", "priority": 0}
    return hotstate.Winner(
        RULE_SLOT, rule_id, r.cooldown_s, r.cap_session, r.cap_day, r.cap_week, sticky
    )


def apply_redis(prop_id: int, sc: Scenario, a: Attempt, rule_id: int) -> str | None:
    k = keys_of(a)
    blocked = hotstate.apply_and_log(
        property_id=prop_id,
        visitor_id=VISITOR,
        session_id=a.session,
        now=a.at,
        day_key=k.day,
        week_key=k.week,
        limit=sc.limit,
        winners=[winner(sc, a, rule_id)],
        entry={},
    )
    return blocked.get(MODEL_SLOT if a.model else RULE_SLOT)


def apply_database(prop_id: int, sc: Scenario, a: Attempt, rule_id: int) -> str | None:
    k = keys_of(a)
    with transaction.atomic():
        blocked = decision_state.db_apply(
            property_id=prop_id,
            visitor_id=VISITOR,
            session_id=a.session,
            now=a.at,
            day_key=k.day,
            week_key=k.week,
            limit=sc.limit,
            winners=[winner(sc, a, rule_id)],
        )
    return blocked.get(MODEL_SLOT if a.model else RULE_SLOT)


APPLY = {"redis": apply_redis, "database": apply_database}


def counters_tuple(c: Any) -> tuple | None:
    if c is None:
        return None
    fields = ("session_key", "session_count", "day_key", "day_count", "week_key", "week_count")
    return (*(getattr(c, f) for f in fields), c.last_applied_at)


def stored_state(backend: str, prop_id: int, rule_id: int, sessions: set[str]) -> tuple:
    """The rule's counters and each session's used budget, as the back-end holds them."""
    if backend == "redis":
        used = {}
        rows: dict[int, Any] = {}
        for s in sessions:
            rows, budget = hotstate.state_get(prop_id, VISITOR, s)
            used[s] = budget.adjustments
        return counters_tuple(rows.get(rule_id)), used
    row = RuleCounter.objects.filter(property_id=prop_id, rule_id=rule_id).first()
    budgets = dict(
        SessionBudget.objects.filter(property_id=prop_id).values_list("session_id", "adjustments")
    )
    return counters_tuple(row), {s: budgets.get(s, 0) for s in sessions}


@pytest.fixture
def contract_shop(shop):
    shop.prop.holdout_pct = 0
    shop.prop.timezone = TZ
    shop.prop.save()
    slot(shop.prop, RULE_SLOT, {"short": {"text": "x"}})
    return shop


@pytest.fixture
def clean_log():
    """The apply-level runs queue empty log entries in Redis: dropped afterwards."""
    yield
    r = hotstate.client()
    if r is not None:
        for log, _ in hotstate._log_shards(r):
            r.delete(log)


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda sc: sc.name)
def test_guard_rails_reference__scenario__gives_the_tabled_outcomes(sc):
    # Given a scenario of attempts at given times and sessions
    # When the specification's reference runs it
    reasons, _, _ = reference(sc)
    # Then each attempt's outcome is the one written in the table
    assert reasons == list(sc.expected)


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda sc: sc.name)
@pytest.mark.parametrize("backend", BACKENDS)
def test_guard_rails_contract__scenario__backend_equals_reference(
    backend, sc, contract_shop, settings, clean_log
):
    # Given the back-end (counters and budgets in Redis, or in the database), and a rule
    hot_state_use(settings, backend)
    prop_id = contract_shop.prop.pk
    rule_id = rule(contract_shop.prop, "r", RULE_SLOT, "short").pk
    expected_reasons, expected_counters, expected_used = reference(sc)
    # When each attempt goes through the back-end's atomic apply at its own time (a sticky
    # repeat is served without applying anything: it is not sent)
    got = [None if a.sticky else APPLY[backend](prop_id, sc, a, rule_id) for a in sc.attempts]
    # Then every attempt's outcome is the reference's, and so is the state left behind
    assert got == expected_reasons
    sessions = {a.session for a in sc.attempts}
    assert stored_state(backend, prop_id, rule_id, sessions) == (
        counters_tuple(expected_counters),
        {s: expected_used.get(s, 0) for s in sessions},
    )


ENGINE_SCENARIOS = [sc for sc in SCENARIOS if not any(a.model for a in sc.attempts)]


@pytest.mark.parametrize("sc", ENGINE_SCENARIOS, ids=lambda sc: sc.name)
@pytest.mark.parametrize("backend", BACKENDS)
def test_guard_rails_contract__scenario_through_decide__answers_follow_the_reference(
    backend, sc, contract_shop, consent, settings
):
    # Given the back-end, a rule with the scenario's guard rails and the session budget,
    # and session stickiness on exactly for the attempts that are sticky repeats
    hot_state_use(settings, backend)
    prop = contract_shop.prop
    prop.max_adjustments_per_session = sc.limit or 0
    r = sc.rails
    rule(
        prop,
        "r",
        RULE_SLOT,
        "short",
        cooldown_seconds=r.cooldown_s,
        cap_per_session=r.cap_session,
        cap_per_day=r.cap_day,
        cap_per_week=r.cap_week,
    )
    consent(prop, VISITOR)
    expected, _, _ = reference(sc)
    # When the storefront asks at each attempt's time
    got = []
    for a in sc.attempts:
        prop.session_stickiness = a.sticky
        prop.save()
        result = decide(prop, DecideRequest(VISITOR, a.session, [RULE_SLOT]), now=a.at)
        answer = result.answers[RULE_SLOT]
        reasons = [s["reason"] for s in result.suppressed if s["candidate"] == "rule:r"]
        got.append((answer.is_default, answer.sticky, reasons))
    # Then a refused attempt gets the default and its reason, an applied one the rule's
    # variant, and a sticky repeat the same variant marked sticky, never suppressed
    assert got == [
        (reason is not None, a.sticky, [] if reason is None else [reason])
        for a, reason in zip(sc.attempts, expected, strict=True)
    ]


RACES = {
    # the rule's day cap has one unit left; eight sessions race for it
    "last_unit_of_a_cap": (GuardRails(cap_day=2), None, [f"s-{n}" for n in range(8)]),
    # the session's budget has one unit left; eight pages of the session race for it
    "last_unit_of_a_budget": (GuardRails(), 2, ["s-1"] * 8),
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("race", list(RACES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_guard_rails_contract__racing_for_the_last_unit__exactly_one_wins(
    backend, race, make_shop, settings, clean_log
):
    # Given the back-end (the database's conditional upserts need PostgreSQL's concurrency)
    hot_state_use(settings, backend)
    if backend == "database":
        needs(is_postgres(), "this test needs PostgreSQL (set DATABASE_URL=postgres://…)")
    rails, limit, sessions = RACES[race]
    shop = make_shop()
    slot(shop.prop, RULE_SLOT, {"short": {"text": "x"}})
    rule_id = rule(shop.prop, "r", RULE_SLOT, "short").pk
    sc = Scenario(race, rails, (), (), limit)
    apply = APPLY[backend]
    # and one unit already taken (in s-1), leaving the last one
    assert apply(shop.prop.pk, sc, Attempt(WED), rule_id) is None
    barrier = threading.Barrier(len(sessions))
    outcomes: list[str | None] = []

    def one(session: str) -> None:
        try:
            barrier.wait()
            outcomes.append(apply(shop.prop.pk, sc, Attempt(WED + MICRO, session), rule_id))
        finally:
            connection.close()

    # When they all try to take it at once
    threads = [threading.Thread(target=one, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then exactly one wins, the others are refused for the spent cap or budget
    reason = FREQUENCY_CAP if limit is None else SESSION_BUDGET
    assert sorted(outcomes, key=str) == [None] + [reason] * (len(sessions) - 1)


@pytest.mark.parametrize(
    "now, tz, day, week",
    [
        # local midnight, not UTC's, starts the day
        (datetime(2030, 3, 6, 22, 59, 59, 999_999, tzinfo=UTC), "Europe/Paris", "2030-03-06",
         "2030-W10"),
        (datetime(2030, 3, 6, 23, 0, tzinfo=UTC), "Europe/Paris", "2030-03-07", "2030-W10"),
        # ISO weeks: Sunday ends one, Monday starts the next
        (datetime(2030, 3, 10, 23, 59, 59, 999_999, tzinfo=UTC), "UTC", "2030-03-10",
         "2030-W10"),
        (datetime(2030, 3, 11, tzinfo=UTC), "UTC", "2030-03-11", "2030-W11"),
        # the ISO week's year, not the calendar's
        (datetime(2030, 12, 31, 12, tzinfo=UTC), "UTC", "2030-12-31", "2031-W01"),
        # an unknown time zone falls back to UTC
        (datetime(2030, 3, 6, 23, 30, tzinfo=UTC), "Nowhere/Else", "2030-03-06", "2030-W10"),
    ],
)  # fmt: skip
def test_guard_rails_window_keys__instant_and_time_zone__day_and_iso_week(now, tz, day, week):
    # Given an instant and a property's time zone
    # When the window keys are derived
    keys = guard_rails.window_keys(now, tz)
    # Then they are the local date and the local ISO week
    assert keys == (day, week)
