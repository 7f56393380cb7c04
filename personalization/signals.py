"""Moved: live visitor and session state is ``personalization.visitor_state`` (Django
calls something else "signals"). This name stays only until the decision engine's
rewrite imports the new one; nothing else may import it."""

from .visitor_state import signals_for

__all__ = ["signals_for"]
