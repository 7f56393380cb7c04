"""The guard rails of a decision, specified once: cooldowns, frequency caps per session /
day / week, the session's budget of adjustments, and what session stickiness exempts.

This module is the specification and the reference implementation, pure Python with no
I/O. Three places enforce it and all take their rules from here:

- the engine's filter (``decisions.context.Counters.block_reason`` calls ``verdict``);
- Redis: the Lua script of ``hotstate`` (its reason codes, "no limit" sentinel and the
  cooldown's cut-off come from here);
- the database: ``db.rule_counter_apply`` (its "no cap" sentinel, the cut-off, and the
  reason it gives when it refuses).

``tests/personalization/decisions/test_guard_rails_contract.py`` runs one table of scenarios
(times, sessions, day and week rollovers, budget, sticky repeats, a race for the last unit
of a cap) through both atomic implementations and compares each with ``step``, the reference
here.

The rules:

1. **Cooldown.** A rule that last applied at ``t`` may apply again from ``t + cooldown``
   (inclusive: exactly at the end of the cooldown it applies). No cooldown (0): no wait,
   whatever the clock says.
2. **Caps.** A window (the session, the day, the ISO week) is named by a key: the session
   id, the local date (``2026-03-02``) and the local ISO week (``2026-W10``) in the
   property's time zone (``window_keys``). A rule capped at ``n`` in a window may apply
   while fewer than ``n`` applications were counted under the window's current key; a new
   key (a new session, a new day, a new week) starts its count again. ``None``: no cap.
3. **Session budget.** A session may receive at most ``limit`` adjustments (a property's
   ``max_adjustments_per_session``; 0 means no limit, ``session_limit``). It is checked
   after the rule's own cooldown and caps (a rule they refuse is refused for them, as the
   engine's filters list it, whatever the budget), and a model's answer (no cooldown, no
   caps) takes a unit of it too.
4. **Stickiness.** A sticky repeat (a slot keeps in a session what an earlier adjustment
   showed) is not an application: it counts no cap, cooldown or budget unit, and is never
   refused by them.
5. **Counting.** An application sets the rule's last application time to ``now`` and, in
   each window, counts 1 under the current key (restarting at 1 when the key changed).
"""

import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

# Reasons a candidate is refused (the decision log's ``suppressed[].reason``).
COOLDOWN = "cooldown"
FREQUENCY_CAP = "frequency_cap"
SESSION_BUDGET = "session_budget"

# How the atomic implementations spell "no cap" / "no limit" / "no cooldown".
NO_LIMIT = -1  # Lua arguments: no cap, no session budget
NO_CUTOFF = ""  # Lua arguments: no cooldown
BIG = 2**31 - 1  # SQL: a cap no count reaches (an int column's maximum)


@dataclass(frozen=True)
class GuardRails:
    """A rule's guard rails (a model's answer has none: ``GuardRails()``)."""

    cooldown_s: int = 0
    cap_session: int | None = None
    cap_day: int | None = None
    cap_week: int | None = None

    @classmethod
    def of(cls, rule: Any) -> "GuardRails":
        """Of anything with the four attributes (a compiled rule, a ``hotstate.Winner``)."""
        return cls(rule.cooldown_s, rule.cap_session, rule.cap_day, rule.cap_week)

    def cooldown_cutoff(self, now: datetime) -> datetime | None:
        """Applications after this instant block a new one now (None: no cooldown)."""
        return now - timedelta(seconds=self.cooldown_s) if self.cooldown_s else None

    def caps(self) -> tuple[int | None, int | None, int | None]:
        """The caps in the order of the windows: session, day, week."""
        return self.cap_session, self.cap_day, self.cap_week


class CounterState(Protocol):
    """A rule's counters for a visitor: a ``RuleCounter`` row or ``hotstate.CounterState``."""

    session_key: str
    session_count: int
    day_key: str
    day_count: int
    week_key: str
    week_count: int
    last_applied_at: datetime


@dataclass(frozen=True)
class Counters:
    """The reference's own counter state (what ``count`` returns)."""

    session_key: str
    session_count: int
    day_key: str
    day_count: int
    week_key: str
    week_count: int
    last_applied_at: datetime


@dataclass(frozen=True)
class Keys:
    """The current window keys of a decision."""

    session: str
    day: str
    week: str


def window_keys(now: datetime, tz_name: str) -> tuple[str, str]:
    """The day and week keys of ``now`` in the time zone (UTC when it is unknown)."""
    try:
        local = now.astimezone(zoneinfo.ZoneInfo(tz_name))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        local = now
    year, week, _ = local.isocalendar()
    return local.date().isoformat(), f"{year}-W{week:02d}"


def session_limit(max_adjustments_per_session: int | None) -> int | None:
    """A property's setting as a limit: 0 (or unset) means no limit."""
    return max_adjustments_per_session or None


def verdict(
    rails: GuardRails,
    state: CounterState | None,
    now: datetime,
    session_key: str,
    day_key: str,
    week_key: str,
) -> str | None:
    """Why the rule may not apply now (``COOLDOWN``, ``FREQUENCY_CAP``), or None."""
    if state is None:
        return None
    cutoff = rails.cooldown_cutoff(now)
    if cutoff is not None and state.last_applied_at > cutoff:
        return COOLDOWN
    windows = (
        (rails.cap_session, state.session_key == session_key, state.session_count),
        (rails.cap_day, state.day_key == day_key, state.day_count),
        (rails.cap_week, state.week_key == week_key, state.week_count),
    )
    if any(cap is not None and same and count >= cap for cap, same, count in windows):
        return FREQUENCY_CAP
    return None


def budget_verdict(used: int, limit: int | None) -> str | None:
    """``SESSION_BUDGET`` when the session has used its adjustments, else None."""
    return SESSION_BUDGET if limit is not None and used >= limit else None


def count(state: CounterState | None, now: datetime, keys: Keys) -> Counters:
    """The counters after one application now."""
    if state is None:
        return Counters(keys.session, 1, keys.day, 1, keys.week, 1, now)
    return Counters(
        keys.session,
        state.session_count + 1 if state.session_key == keys.session else 1,
        keys.day,
        state.day_count + 1 if state.day_key == keys.day else 1,
        keys.week,
        state.week_count + 1 if state.week_key == keys.week else 1,
        now,
    )


@dataclass(frozen=True)
class Outcome:
    """One attempt's result: the reason it was refused (None: applied, or a sticky repeat
    served) and the state after it."""

    reason: str | None
    counters: Counters | CounterState | None
    used: int


def step(
    rails: GuardRails | None,
    state: CounterState | None,
    used: int,
    limit: int | None,
    now: datetime,
    keys: Keys,
    *,
    sticky: bool = False,
) -> Outcome:
    """The reference: one attempt to apply a rule (``rails``) or a model's answer (None:
    no counters, only the budget), given the rule's counters and the session's used budget.
    The rule's cooldown and caps first, then the budget; a sticky repeat counts nothing."""
    if sticky:
        return Outcome(None, state, used)
    reason = None
    if rails is not None:
        reason = verdict(rails, state, now, keys.session, keys.day, keys.week)
    reason = reason or budget_verdict(used, limit)
    if reason is not None:
        return Outcome(reason, state, used)
    return Outcome(None, state if rails is None else count(state, now, keys), used + 1)
