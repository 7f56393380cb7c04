"""What goes into a decision and what comes out: the request, each slot's answer, the
result, and the reasons a candidate is suppressed."""

import uuid
from dataclasses import dataclass, field
from typing import Any

from .. import guard_rails
from ..models import SourceKind

# Why a candidate was not served (the decision log's ``suppressed[].reason``). The guard
# rails' reasons are defined once, in ``guard_rails``.
COOLDOWN = guard_rails.COOLDOWN
FREQUENCY_CAP = guard_rails.FREQUENCY_CAP
SESSION_BUDGET = guard_rails.SESSION_BUDGET
CONFLICT = "conflict"
CONSENT = "consent"
HOLDOUT = "holdout"


@dataclass(frozen=True)
class DecideRequest:
    visitor_id: str
    session_id: str
    slots: list[str]
    context: dict[str, Any] = field(default_factory=dict)
    gpc: bool = False
    ip: str | None = None


@dataclass
class SlotAnswer:
    slot: str
    variant: str
    content: dict
    kind: str = SourceKind.DEFAULT
    key: str = ""
    version: int | None = None
    priority: int = 0
    # A sticky repeat: the slot keeps what an earlier adjustment of this session showed.
    # Not a new application: no cap, cooldown or budget unit is taken for it.
    sticky: bool = False

    @property
    def is_default(self) -> bool:
        """A logged answer from no rule, experiment or rollout (a control is not a default)."""
        return self.kind == SourceKind.DEFAULT

    def source(self) -> dict[str, Any]:
        source: dict[str, Any] = {"kind": self.kind}
        if self.key:
            source["key"] = self.key
        if self.version is not None:
            source["version"] = self.version
        if self.sticky:
            source["sticky"] = True
        return source


@dataclass
class DecisionResult:
    decision_id: uuid.UUID
    personalized: bool
    answers: dict[str, SlotAnswer]
    suppressed: list[dict[str, str]]
    unknown_slots: list[str]
    holdout: bool = False
    logged: bool = True
    trace: list[str] = field(default_factory=list)
    # Whether the visitor grants personalization (not suppressed): without it every answer is
    # the slot's default (OFREP tells such a default apart: reason DISABLED).
    consented: bool = True
    # The live plan: entries the page may apply by itself when their ``when`` holds (``plans``).
    live: list[dict[str, Any]] = field(default_factory=list)

    def as_response(self) -> dict[str, Any]:
        response = {
            "decision_id": str(self.decision_id),
            "personalized": self.personalized,
            "slots": {
                key: {"variant": a.variant, "content": a.content, "source": a.source()}
                for key, a in self.answers.items()
            },
            "suppressed": self.suppressed,
            "unknown_slots": self.unknown_slots,
        }
        if self.live:
            response["live"] = self.live
        return response


@dataclass(frozen=True)
class ModelWin:
    """A model-served answer being applied: it takes a unit of the session's budget and is
    remembered for stickiness, like a rule's; it has no cooldown or caps of its own."""

    key: str
    version: int | None
    variant: str
    cooldown_s: int = 0
    cap_session: int | None = None
    cap_day: int | None = None
    cap_week: int | None = None
    priority: int = 0

    @property
    def id(self) -> str:
        """The winner's name in the Lua apply: never a rule id (digits), so no counters."""
        return f"m:{self.key}"
