"""The decision pipeline: ``engine.decide`` and what it takes and gives."""

from .answers import DecideRequest, DecisionResult, SlotAnswer
from .engine import decide
from .stages import in_holdout

__all__ = ["DecideRequest", "DecisionResult", "SlotAnswer", "decide", "in_holdout"]
