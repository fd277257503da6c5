"""Why a community step was refused: a code for machines and a message for people."""

from __future__ import annotations

from enum import StrEnum


class Problem(StrEnum):
    """Reason codes of the community's steps (found, invite, join, approve)."""

    MALFORMED_INVITATION = "malformed_invitation"
    FORGED_INVITATION = "forged_invitation"
    EXPIRED_INVITATION = "expired_invitation"
    UNKNOWN_INVITATION = "unknown_invitation"
    USED_INVITATION = "used_invitation"
    MALFORMED_REQUEST = "malformed_request"
    FORGED_REQUEST = "forged_request"
    UNKNOWN_REQUEST = "unknown_request"
    RESOURCE_EXISTS = "resource_exists"
    INBOX_FULL = "inbox_full"
    NOT_REGISTRAR = "not_registrar"
    ALREADY_EXISTS = "already_exists"
    LOGIN_TAKEN = "login_taken"
    BAD_INPUT = "bad_input"
    UNKNOWN_MEMBER = "unknown_member"


class CommunityError(Exception):
    """A community step refused: `code` (a `Problem`) and a message a person understands."""

    def __init__(self, code: Problem, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message
