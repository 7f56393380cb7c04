"""Learning from the log: segment discovery (clustering), propensity models and scoring,
and the feedback loop that guards rules with the experiments' statistics."""

from typing import Any


def learning_overview(prop: Any) -> dict[str, Any]:
    """Clusters and model versions of a property, for the dashboards' Segments page."""
    from .overview import learning_overview as overview

    return overview(prop)
