"""The one application error type. Views map it to the documented error shape.

It lives in the consent app because that app is the lowest layer (it imports
no other project app); ``personalization.exceptions`` re-exports it.
"""

from typing import Any


class DomainError(Exception):
    status_code = 400

    def __init__(
        self, code: str, message: str, *, details: Any = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        if status is not None:
            self.status_code = status
