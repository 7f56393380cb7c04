"""The one application error type. Views map it to the documented error shape.

It lives in the consent app because that app is the lowest layer (it imports
no other project app); ``personalization.exceptions`` re-exports it.

``details`` is always an object (README, "Errors"): when the request's content is at fault
it lists every problem found under ``errors``, each a :func:`problem`; other keys are
particular to an error code (``max`` and ``received`` of a batch too large, …).
"""

from collections.abc import Mapping, Sequence
from typing import Any

Problem = dict[str, str]


def problem(path: str, code: str, message: str) -> Problem:
    """One problem with a request's content: where (a dotted path, ``""`` for the body
    itself, a query parameter by its name), a machine code, and what is wrong."""
    return {"path": path, "code": code, "message": message}


class DomainError(Exception):
    status_code = 400

    def __init__(
        self,
        code: str,
        message: str,
        *,
        details: Mapping[str, Any] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        if status is not None:
            self.status_code = status

    @classmethod
    def from_problems(
        cls,
        code: str,
        problems: Sequence[Problem],
        *,
        status: int | None = None,
        **context: Any,
    ) -> "DomainError":
        """A refusal of the request's content: the first problem says why, all are listed."""
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return cls(
            code,
            f"{first['path'] or 'body'}: {first['message']}{more}",
            details={"errors": list(problems), **context},
            status=status,
        )
