"""One decision's context: what each stage of the pipeline reads and what it adds."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import guard_rails
from ..models import Property
from ..ruleset import CompiledRule, RuleSet
from .answers import DecideRequest, DecisionResult, ModelWin

if TYPE_CHECKING:
    from consent.selectors import EffectiveConsent

    from .state import VisitorState


@dataclass(slots=True)
class Counters:
    """The visitor's counters for the decision's rules, and the windows they are read in."""

    session_key: str
    day_key: str
    week_key: str
    now: datetime
    rows: dict[int, Any]

    def block_reason(self, rule: CompiledRule) -> str | None:
        """The specification's verdict (``guard_rails.verdict``) on the rule's counters."""
        row = self.rows.get(rule.id)
        if row is None:  # never applied: nothing can block it (the verdict's first case)
            return None
        return guard_rails.verdict(
            guard_rails.GuardRails.of(rule),
            row,
            self.now,
            self.session_key,
            self.day_key,
            self.week_key,
        )


@dataclass(slots=True)
class Decision:
    """The context the stages share, filled in the order they run."""

    prop: Property
    request: DecideRequest
    now: datetime
    ruleset: RuleSet
    result: DecisionResult
    # The slots asked for that the property has, in the order asked.
    known: list[str]
    dry_run: bool = False
    # Where the visitor's state is read and the outcome applied and logged (``state``).
    state: "VisitorState | None" = None
    # The dry run's explanation (``result.trace``), else None.
    explain: Callable[[str], None] | None = None
    # Loaded: consent, the attributes conditions read, the holdout.
    consent: "EffectiveConsent | None" = None
    attributes: dict[str, Any] = field(default_factory=dict)
    # Why every candidate is suppressed (no consent, the holdout), or None.
    blanket: str | None = None
    # Each slot's rules in their schedule now, the counters, the session's budget.
    live_by_slot: dict[str, list[CompiledRule]] = field(default_factory=dict)
    counters: Counters | None = None
    sticky: dict[str, dict] = field(default_factory=dict)
    used: int = 0
    limit: int | None = None
    # The answers being applied (counted, budgeted, made sticky) when the decision is logged.
    winners: dict[str, "CompiledRule | ModelWin"] = field(default_factory=dict)
    # Live rules whose condition still depends on the page, by slot, with what remains of it.
    offers: dict[str, list[tuple[CompiledRule, dict]]] = field(default_factory=dict)
    # "load" (decide), or "page" for a live plan entry fired in the page (``firings``): then
    # the page-load decision it came from and the page signals the firing read.
    trigger: str = "load"
    parent_decision_id: str | None = None
    page_signals: dict[str, Any] | None = None

    def suppress(self, slot_key: str, candidate: str, reason: str) -> None:
        self.result.suppressed.append({"slot": slot_key, "candidate": candidate, "reason": reason})
