"""The error an API action is refused with: shared by the home and the parts it drives
(USB charging), so a refusal reaches the API as it was raised, without conversion."""

from __future__ import annotations

from typing import Any

from edge_controller.ledger import Reason, Rejected

_NOT_FOUND = {
    Reason.UNKNOWN_OFFER,
    Reason.UNKNOWN_TRADE,
    Reason.UNKNOWN_ACCEPTANCE,
    Reason.UNKNOWN_RESOURCE,
    Reason.UNKNOWN_REQUEST,
}


class ActionError(Exception):
    """An API action was refused; `code` is machine-readable, `status` the HTTP status."""

    def __init__(
        self, code: str, message: str, status: int = 400, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.details = details or {}  # more fields of the error body (a pairing code)

    @classmethod
    def from_rejection(cls, exc: Rejected) -> ActionError:
        if exc.reason is Reason.MALFORMED:
            return cls(exc.reason.value, exc.message, 422)
        if exc.reason in _NOT_FOUND:
            return cls(exc.reason.value, exc.message, 404)
        return cls(exc.reason.value, exc.message, 409)
