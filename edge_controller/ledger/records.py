"""Signed records: what participants say to the ledger, and the shape each kind must have.

A record travels as `{"body": {...}, "signer": <public key hex>, "sig": <signature hex>}`.
The signature covers the community id and the canonical bytes of the body, so a record
cannot be replayed into another community. The record id is the SHA-256 of the same bytes.
Every body has `kind`, `seq` (the signer's sequence number, strictly increasing, which
makes replays impossible), `time` (UTC ms when it was signed) and an optional `fee`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .canonical import canonical_bytes, canonical_bytes_unchecked
from .errors import Reason, Rejected
from .keys import ACCOUNT_ID_PREFIX, KeyPair, Verifier, account_id

SIGNING_DOMAIN = b"energy-p2p/record/v1:"
MAX_RECORD_BYTES = 4096
# What a record's JSON form adds around its body: the signer and signature are fixed length,
# so a record's bytes on the wire are exactly its body's canonical bytes plus this.
RECORD_FRAME_BYTES = len(canonical_bytes({"body": {}, "sig": "0" * 128, "signer": "0" * 64})) - 2

# Rules 3 on: a member's standing, as its registrar records it (`member` records).
MEMBER_STATUSES = frozenset({"active", "left", "revoked"})
MAX_MEMBER_NAME = 64
# Rules 3 on: what a `sealer` record does to the sealer set.
SEALER_ACTIONS = frozenset({"add", "remove"})
RESOURCE_KINDS = frozenset({"pv", "battery", "fuel_cell", "usb_port", "meter"})
OFFER_MODES = frozenset({"energy", "capacity"})

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_ACCOUNT = re.compile(ACCOUNT_ID_PREFIX + r"[0-9a-f]{40}\Z")
_RESOURCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}\Z")
# A week: longer windows are almost certainly a unit mistake (seconds for milliseconds).
MAX_WINDOW_MS = 7 * 24 * 3600 * 1000
MAX_QUANTITY = 10**12
MAX_AMOUNT = 10**15


# --- field checkers: each returns the value or raises Rejected(MALFORMED, path) -------------

Checker = Callable[[str, Any], Any]


def _bad(path: str, expected: str) -> Rejected:
    return Rejected(Reason.MALFORMED, f"{path}: expected {expected}")


def _is_unicode(value: str) -> bool:
    """Whether `value` has a UTF-8 form: JSON's \\ud800 escapes give strings that do not."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def integer(low: int = 0, high: int = MAX_AMOUNT) -> Checker:
    def check(path: str, value: Any) -> int:
        if type(value) is not int or not low <= value <= high:
            raise _bad(path, f"an integer in [{low}, {high}]")
        return value

    return check


def text(pattern: re.Pattern[str] | None = None, max_length: int = 200) -> Checker:
    def check(path: str, value: Any) -> str:
        if type(value) is not str or len(value) > max_length:
            raise _bad(path, f"a string of at most {max_length} characters")
        if not value.isascii() and not _is_unicode(value):
            raise _bad(path, "text without lone surrogates (it must have a UTF-8 form)")
        if pattern is not None and not pattern.match(value):
            raise _bad(path, f"a string matching {pattern.pattern}")
        return value

    return check


def one_of(choices: frozenset[str]) -> Checker:
    def check(path: str, value: Any) -> str:
        # The type first: a list or a mapping cannot even be looked up in a set.
        if type(value) is not str or value not in choices:
            raise _bad(path, "one of " + ", ".join(sorted(choices)))
        return value

    return check


def list_of(item: Checker, max_items: int) -> Checker:
    def check(path: str, value: Any) -> list[Any]:
        if type(value) is not list or not 1 <= len(value) <= max_items:
            raise _bad(path, f"a list of 1 to {max_items} items")
        return [item(f"{path}[{i}]", v) for i, v in enumerate(value)]

    return check


def obj(fields: Mapping[str, Checker], optional: Mapping[str, Checker] | None = None) -> Checker:
    allowed = set(fields) | set(optional or {})

    def check(path: str, value: Any) -> dict[str, Any]:
        if type(value) is not dict:
            raise _bad(path, "an object")
        for name, checker in fields.items():
            if name not in value:
                raise _bad(f"{path}.{name}", "a value (the field is required)")
            checker(f"{path}.{name}", value[name])
        for name, checker in (optional or {}).items():
            if name in value:
                checker(f"{path}.{name}", value[name])
        extra = set(value) - allowed
        if extra:
            raise Rejected(Reason.MALFORMED, f"{path}: unknown field {sorted(extra)[0]!r}")
        return value

    return check


HEX64 = text(_HEX64, 64)
ACCOUNT = text(_ACCOUNT, 42)
RESOURCE_ID = text(_RESOURCE_ID, 64)
TIME = integer(0, 2**53)
QUANTITY = integer(1, MAX_QUANTITY)
PRICE = integer(0, 10**9)
AMOUNT = integer(1, MAX_AMOUNT)
WH = integer(0, MAX_QUANTITY)

SIGNATURE = text(re.compile(r"[0-9a-f]{128}\Z"), 128)
# A block header's fields, as blocks carry them and as equivocation evidence quotes them.
HEADER_SHAPE = obj(
    {
        "version": integer(1, 1),
        "height": integer(0, 2**53),
        "prev": HEX64,
        "root": HEX64,
        "time": integer(0, 2**53),
        "difficulty": integer(0, 256),
        "nonce": integer(0, 2**64 - 1),
        "sealer": HEX64,
    },
    # Rules 3 on, at checkpoint heights only (`checkpoint.py`): absent elsewhere, so the
    # hashes of headers without it stay what they were.
    {"checkpoint": HEX64},
)
SIGNED_HEADER = obj({"header": HEADER_SHAPE, "sig": SIGNATURE})

COMMON = {"kind": text(None, 32), "seq": integer(1, 2**53), "time": TIME}
COMMON_OPTIONAL = {"fee": integer(0, MAX_AMOUNT)}

# Each kind's own fields: (required, optional). The rules in `rules.py` give them meaning.
KINDS: dict[str, tuple[dict[str, Checker], dict[str, Checker]]] = {
    "registration": (
        {
            "resource": RESOURCE_ID,
            "owner": ACCOUNT,
            "resource_kind": one_of(RESOURCE_KINDS),
            "power_w": integer(0, MAX_QUANTITY),
            "capacity_wh": WH,
        },
        {"available_wh": WH, "meter": HEX64, "location": text(None, 120)},
    ),
    "resource_update": ({"resource": RESOURCE_ID, "available_wh": WH}, {}),
    "offer": (
        {
            "resource": RESOURCE_ID,
            "mode": one_of(OFFER_MODES),
            "quantity": QUANTITY,
            "price": PRICE,
            "start": TIME,
            "end": TIME,
            "expires": TIME,
        },
        {
            "to": list_of(ACCOUNT, 32),
            "min_quantity": QUANTITY,
            "request": HEX64,
            "auction": obj({"closes": TIME, "cap": PRICE}),
        },
    ),
    "request": (
        {
            "mode": one_of(OFFER_MODES),
            "quantity": QUANTITY,
            "max_price": PRICE,
            "start": TIME,
            "end": TIME,
            "expires": TIME,
        },
        {"resource_kind": one_of(RESOURCE_KINDS)},
    ),
    "acceptance": ({"offer": HEX64, "quantity": QUANTITY}, {"price": PRICE}),
    "confirmation": ({"acceptance": HEX64}, {}),
    "rejection": ({"target": HEX64}, {"reason": text(None, 200)}),
    "cancel": ({"offer": HEX64}, {}),
    "bid": ({"offer": HEX64, "price": PRICE}, {}),
    "termination": ({"trade": HEX64}, {"at": TIME}),
    "meter_reading": (
        {
            "resource": RESOURCE_ID,
            "start": TIME,
            "end": TIME,
            "export_wh": WH,
            "import_wh": WH,
        },
        {},
    ),
    "settlement": ({"trade": HEX64, "delivered_wh": WH}, {}),
    "dispute": ({"trade": HEX64, "measured_wh": WH}, {"reason": text(None, 200)}),
    "rating": ({"trade": HEX64, "score": integer(0, 10)}, {"comment": text(None, 200)}),
    "topup": ({"to": ACCOUNT, "amount": AMOUNT}, {"memo": text(None, 200)}),
    "transfer": ({"to": ACCOUNT, "amount": AMOUNT}, {"memo": text(None, 200)}),
    # Rules 3 on: the registrar names a member and says whether it is still one.
    "member": (
        {"account": ACCOUNT, "name": text(None, MAX_MEMBER_NAME)},
        {"status": one_of(MEMBER_STATUSES)},
    ),
    # Rules 3 on: the registrar adds a sealer key to the set, or removes one from it.
    "sealer": ({"key": HEX64, "action": one_of(SEALER_ACTIONS)}, {}),
    # Two headers one sealer signed at one height: the proof that it equivocated.
    "equivocation": ({"first": SIGNED_HEADER, "second": SIGNED_HEADER}, {}),
}

_BODY_CHECKERS: dict[str, Checker] = {
    kind: obj({**COMMON, **required}, {**COMMON_OPTIONAL, **optional})
    for kind, (required, optional) in KINDS.items()
}


def check_body(body: Any) -> dict[str, Any]:
    """Check a record body's shape; raise `Rejected(MALFORMED)` naming the bad field."""
    if type(body) is not dict:
        raise _bad("body", "an object")
    kind = body.get("kind")
    checker = _BODY_CHECKERS.get(kind) if isinstance(kind, str) else None
    if checker is None:
        raise _bad("body.kind", "one of " + ", ".join(sorted(KINDS)))
    result: dict[str, Any] = checker("body", body)
    return result


def signing_message(community: str, signer: str, body_bytes: bytes) -> bytes:
    """The exact bytes a record's signature covers, and whose hash is the record id: the
    community, the signer's key (two signers of equal bodies make two records) and the body."""
    return SIGNING_DOMAIN + community.encode() + b":" + signer.encode() + b":" + body_bytes


@dataclass(frozen=True, slots=True)
class Record:
    """A signed record whose shape is valid. Its signature is checked by `verify`."""

    id: str
    body: dict[str, Any]
    signer: str
    sig: bytes
    account: str
    size: int
    body_bytes: bytes

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def seq(self) -> int:
        return int(self.body["seq"])

    @property
    def fee(self) -> int:
        return int(self.body.get("fee", 0))

    @property
    def wire_size(self) -> int:
        """The bytes of this record's canonical JSON form (`to_wire`), exactly."""
        return len(self.body_bytes) + RECORD_FRAME_BYTES

    def to_wire(self) -> dict[str, Any]:
        """The JSON object form that travels between nodes and sits in blocks."""
        return {"body": self.body, "signer": self.signer, "sig": self.sig.hex()}

    def verify(self, community: str, verifier: Verifier) -> None:
        """Raise `Rejected(BAD_SIGNATURE)` unless the signer signed this body."""
        message = signing_message(community, self.signer, self.body_bytes)
        if not verifier.verify(self.signer, self.sig, message):
            raise Rejected(Reason.BAD_SIGNATURE, f"record {self.id[:12]} has a bad signature")


def record_id(community: str, signer: str, body_bytes: bytes) -> str:
    return hashlib.sha256(signing_message(community, signer, body_bytes)).hexdigest()


def parse_record(wire: Any, community: str) -> Record:
    """Turn a record's JSON form into a `Record`, or raise `Rejected` with the reason.

    Checks shape and sizes only; the signature is checked by `Record.verify` and the
    meaning by the ledger's rules.
    """
    if type(wire) is not dict or set(wire) != {"body", "signer", "sig"}:
        raise _bad("record", "an object with exactly body, signer and sig")
    signer, sig = wire["signer"], wire["sig"]
    if type(signer) is not str or not _HEX64.match(signer):
        raise _bad("record.signer", "a 32-byte public key in lowercase hex")
    if type(sig) is not str or len(sig) != 128:
        raise _bad("record.sig", "a 64-byte signature in hex")
    try:
        sig_bytes = bytes.fromhex(sig)
    except ValueError:
        raise _bad("record.sig", "a 64-byte signature in hex") from None
    body = check_body(wire["body"])
    # check_body admitted only integers, strings, lists and objects of known fields: the
    # body is canonical-safe, so the encoder need not walk it again.
    body_bytes = canonical_bytes_unchecked(body)
    size = len(body_bytes) + 192
    if size > MAX_RECORD_BYTES:
        raise Rejected(Reason.OVERSIZE, f"record is {size} bytes, at most {MAX_RECORD_BYTES}")
    return Record(
        id=record_id(community, signer, body_bytes),
        body=body,
        signer=signer,
        sig=sig_bytes,
        account=account_id(signer),
        size=size,
        body_bytes=body_bytes,
    )


def sign_record(key: KeyPair, community: str, body: dict[str, Any]) -> Record:
    """Sign a body with `key` and return the record (its shape is checked too)."""
    check_body(body)
    body_bytes = canonical_bytes(body)
    sig = key.sign(signing_message(community, key.public_hex, body_bytes))
    return Record(
        id=record_id(community, key.public_hex, body_bytes),
        body=body,
        signer=key.public_hex,
        sig=sig,
        account=key.account,
        size=len(body_bytes) + 192,
        body_bytes=body_bytes,
    )
