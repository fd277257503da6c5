"""Why the ledger refused something: every rejection carries a reason code."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Machine-readable reason codes, logged and returned with every rejection."""

    # shape and signature
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    WRONG_SIGNER = "wrong_signer"
    NOT_REGISTRAR = "not_registrar"
    # replay and duplicates
    DUPLICATE = "duplicate"
    STALE_SEQUENCE = "stale_sequence"
    # time
    EXPIRED = "expired"
    FROM_THE_FUTURE = "from_the_future"
    BAD_WINDOW = "bad_window"
    NOT_DUE = "not_due"
    # references
    UNKNOWN_RESOURCE = "unknown_resource"
    UNKNOWN_OFFER = "unknown_offer"
    UNKNOWN_ACCEPTANCE = "unknown_acceptance"
    UNKNOWN_TRADE = "unknown_trade"
    UNKNOWN_REQUEST = "unknown_request"
    NOT_OWNER = "not_owner"
    NOT_A_PARTY = "not_a_party"
    NOT_ADDRESSEE = "not_addressee"
    OWN_OFFER = "own_offer"
    # market state
    OFFER_CLOSED = "offer_closed"
    EXCEEDS_OFFER = "exceeds_offer"
    BELOW_MINIMUM = "below_minimum"
    EXCEEDS_CAPACITY = "exceeds_capacity"
    EXCEEDS_ENERGY = "exceeds_energy"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    NOT_PENDING = "not_pending"
    TRADE_CLOSED = "trade_closed"
    ALREADY_RATED = "already_rated"
    ALREADY_SETTLED = "already_settled"
    ALREADY_DISPUTED = "already_disputed"
    EXCEEDS_METERED = "exceeds_metered"
    AUCTION_ONLY = "auction_only"
    NOT_AN_AUCTION = "not_an_auction"
    AUCTION_CLOSED = "auction_closed"
    BID_ABOVE_CAP = "bid_above_cap"
    BID_TOO_LOW = "bid_too_low"
    FEE_TOO_LOW = "fee_too_low"
    METER_OVERLAP = "meter_overlap"
    # blocks
    BAD_PROOF = "bad_proof"
    BAD_DIFFICULTY = "bad_difficulty"
    UNKNOWN_PARENT = "unknown_parent"
    BAD_HEIGHT = "bad_height"
    BAD_RECORD_ROOT = "bad_record_root"
    TIME_TOO_FAR_AHEAD = "time_too_far_ahead"
    TIME_BEFORE_PARENT = "time_before_parent"
    OVERSIZE = "oversize"
    WRONG_SEALER = "wrong_sealer"
    SEALED_TOO_RECENTLY = "sealed_too_recently"
    BAD_BLOCK_SIGNATURE = "bad_block_signature"
    INVALID_RECORD = "invalid_record"
    KNOWN_INVALID = "known_invalid"
    WRONG_COMMUNITY = "wrong_community"
    BELOW_METERED = "below_metered"
    EXCEEDS_RATING = "exceeds_rating"
    NO_METER = "no_meter"
    NOT_INDEPENDENT = "not_independent"
    SEQUENCE_JUMP = "sequence_jump"
    BELOW_MIN_BALANCE = "below_min_balance"
    POOL_ACCOUNT_FULL = "pool_account_full"
    UNVERIFIED_PEER = "unverified_peer"
    UNASKED = "unasked"
    REVERTS_FINAL = "reverts_final"
    SEALED_TOO_SOON = "sealed_too_soon"
    EQUIVOCATION = "equivocation"
    SEALER_SUSPENDED = "sealer_suspended"
    BAD_EVIDENCE = "bad_evidence"
    MEMBER_LEFT = "member_left"
    MEMBER_REVOKED = "member_revoked"
    BAD_CHECKPOINT = "bad_checkpoint"
    BAD_SNAPSHOT = "bad_snapshot"
    PRUNED = "pruned"
    ALREADY_SEALER = "already_sealer"
    NOT_A_SEALER = "not_a_sealer"
    LAST_SEALER = "last_sealer"
    TOO_MANY_SEALERS = "too_many_sealers"


class Rejected(Exception):
    """A record or block broke a rule. `reason` is the code; `message` says what was wrong."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.message = message

    def as_dict(self) -> dict[str, str]:
        """The JSON form the API and the sync protocol return."""
        return {"code": self.reason.value, "message": self.message}
