"""Learning from the log: segment discovery (clustering), propensity models and scoring,
and the feedback loop that guards rules with the experiments' statistics. The dashboards'
summary of it is ``overview.learning_overview`` (figures: the decision path, which imports
``scoring`` through this package, never loads plotly)."""
