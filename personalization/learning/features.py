"""Signal vectors: the numbers clustering and propensity models read from a visitor.

One function turns the attributes a decision reads (``{"session": …, "visitor": …}``, as
logged in ``Decision.signals``) into a vector, so training and decision time can never
disagree on what a feature means.
"""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Feature:
    name: str
    low: str  # how a cluster well below the average is described
    high: str  # … and well above it


FEATURES: tuple[Feature, ...] = (
    Feature("session.duration_s", "short sessions", "long sessions"),
    Feature("session.page_views", "few pages a session", "many pages a session"),
    Feature("session.max_scroll_depth", "shallow scrolling", "deep scrolling"),
    Feature("session.scroll_speed", "slow scrolling", "fast scrolling"),
    Feature("session.clicks", "few clicks", "many clicks"),
    Feature("visitor.sessions", "few visits", "many visits"),
    Feature("visitor.bounce_rate", "rarely bounces", "often bounces"),
    Feature("visitor.visits_7d", "rarely back this week", "often back this week"),
    Feature("visitor.cart_adds", "rarely adds to cart", "often adds to cart"),
    Feature("visitor.purchases", "rarely buys", "buys often"),
    Feature("visitor.engagement_score", "low engagement", "high engagement"),
    Feature("device.mobile", "mostly desktop", "mostly mobile"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)

# (scope, signal) pairs read by vector(); "device.mobile" is derived.
_PATHS = tuple(tuple(name.split(".", 1)) for name in FEATURE_NAMES)


def _number(value: Any) -> float:
    if value is None or isinstance(value, (dict, list, str)):
        return 0.0
    return float(value)


def vector(signals: dict[str, Any]) -> list[float]:
    """The signal vector of one visitor, in ``FEATURE_NAMES`` order (missing → 0)."""
    session = signals.get("session") or {}
    visitor = signals.get("visitor") or {}
    scopes = {"session": session, "visitor": visitor}
    out: list[float] = []
    for scope, name in _PATHS:
        if scope == "device":
            device = session.get("device_type") or visitor.get("device_type")
            out.append(1.0 if device == "mobile" else 0.0)
        else:
            out.append(_number(scopes[scope].get(name)))
    return out


def describe(standardized: list[float], limit: int = 4, threshold: float = 0.5) -> str:
    """Plain words for a standardized centroid: its most distinctive signals, strongest first."""
    ranked = sorted(
        (i for i, z in enumerate(standardized) if abs(z) >= threshold),
        key=lambda i: -abs(standardized[i]),
    )[:limit]
    if not ranked:
        return "close to the average visitor"
    words = [FEATURES[i].high if standardized[i] > 0 else FEATURES[i].low for i in ranked]
    return ", ".join(words)
