"""Why the app refused an action: a machine-readable code, a sentence, and what kind of
refusal it is. The app and USB charging raise it; the API alone maps `Why` to an HTTP
status, so nothing below the API knows it is behind HTTP."""

from __future__ import annotations

from enum import Enum
from typing import Any

from edge_controller.ledger import Reason, Rejected


class Why(Enum):
    """The kind of refusal, in the caller's terms."""

    INVALID = "invalid"  # the request itself is wrong: a field, a shape, a range
    NOT_FOUND = "not_found"  # it names something this home does not know
    CONFLICT = "conflict"  # well formed, but the state of things refuses it now
    STORAGE = "storage"  # this home could not store it (a full or failing disk): nothing done


_NOT_FOUND = {
    Reason.UNKNOWN_OFFER,
    Reason.UNKNOWN_TRADE,
    Reason.UNKNOWN_ACCEPTANCE,
    Reason.UNKNOWN_RESOURCE,
    Reason.UNKNOWN_REQUEST,
}


class Refusal(Exception):
    """An action was refused; `code` is machine-readable, `details` are more fields for
    the caller (the pairing code of a phone not yet paired)."""

    def __init__(
        self,
        code: str,
        message: str,
        why: Why = Why.CONFLICT,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.why = why
        self.details = details or {}

    @classmethod
    def from_rejection(cls, exc: Rejected) -> Refusal:
        """The ledger's refusal of a record, as the app's refusal of the action."""
        if exc.reason is Reason.MALFORMED:
            return cls(exc.reason.value, exc.message, Why.INVALID)
        if exc.reason in _NOT_FOUND:
            return cls(exc.reason.value, exc.message, Why.NOT_FOUND)
        return cls(exc.reason.value, exc.message, Why.CONFLICT)
