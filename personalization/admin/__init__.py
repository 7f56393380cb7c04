"""The admin of personalization, one module a room: properties (properties, API keys, event
types, quarantine, visitors), targeting (slots, segments, rules), experiments (goals,
experiments, rollouts), learning (clusters, propensity models, guardrails) and surveys; the
inlines they share in ``mixins``. Django's autodiscovery imports this package, and each
module registers its admins on import."""

from . import experiments, learning, properties, surveys, targeting

__all__ = ["experiments", "learning", "properties", "surveys", "targeting"]
