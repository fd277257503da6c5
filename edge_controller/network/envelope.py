"""The bytes on the wire: canonical JSON, message ids, the envelope and the status message.

An envelope wraps every record, block and sync message::

    {"body": {...}, "from": "<sender node id>", "id": "<sha256 of canonical body>",
     "kind": "record" | "block" | "sync", "v": 1,
     "auth": {"key": "<sender's public key, hex>", "sig": "<signature, hex>"}}

The id is the SHA-256 of the canonical JSON of the body, so the same message always has
the same id (receivers drop duplicates by it) and a receiver can check it. `auth` (on
sync messages and on the blocks topic) is the sender's signature of `signed_bytes`: the
topic (community and addressee), the sender and the id, so a signed message cannot be
replayed to another node or under another sender. Which key may sign for a sender id is
the app's to say; an older node ignores the field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, TypeVar

from edge_controller.network.defence import MessageRejectedError, Rejection
from edge_controller.network.topics import MessageKind, is_valid_id

ENVELOPE_VERSION = 1
JsonObject = dict[str, Any]

_ENVELOPE_KINDS = frozenset({MessageKind.RECORD, MessageKind.BLOCK, MessageKind.SYNC})
_STATES = frozenset({"online", "offline"})
_T = TypeVar("_T")
_AUTH_DOMAIN = b"energy-p2p envelope\0"
_HEX = frozenset("0123456789abcdef")


def canonical_json(value: object) -> bytes:
    """Sorted keys, no whitespace, UTF-8; NaN and infinities are refused."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def message_id(body: JsonObject) -> str:
    """The id of a message body: hex SHA-256 of its canonical JSON."""
    return hashlib.sha256(canonical_json(body)).hexdigest()


def signed_bytes(topic: str, sender: str, message_id: str) -> bytes:
    """The bytes an envelope's `auth` signature covers."""
    return _AUTH_DOMAIN + f"{topic}\0{sender}\0{message_id}".encode()


@dataclass(frozen=True)
class EnvelopeAuth:
    """Who signed an envelope: a public key (hex) and its signature of `signed_bytes`."""

    key: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    """A record, block or sync message with its id and sender."""

    kind: MessageKind
    message_id: str
    sender: str
    body: JsonObject
    auth: EnvelopeAuth | None = None

    @classmethod
    def wrap(cls, kind: MessageKind, sender: str, body: JsonObject) -> Envelope:
        """Envelope ``body`` from ``sender``; the id is computed from the body."""
        if kind not in _ENVELOPE_KINDS:
            raise ValueError(f"{kind} messages are not enveloped")
        if not isinstance(body, dict):
            raise TypeError("a message body is a JSON object (dict)")
        return cls(kind, message_id(body), sender, body)

    def encode(self) -> bytes:
        """Canonical JSON of the envelope."""
        document: JsonObject = {
            "v": ENVELOPE_VERSION,
            "id": self.message_id,
            "kind": str(self.kind),
            "from": self.sender,
            "body": self.body,
        }
        if self.auth is not None:
            document["auth"] = {"key": self.auth.key, "sig": self.auth.sig.hex()}
        return canonical_json(document)


def envelope_overhead(sender: str) -> int:
    """The bytes an envelope from ``sender`` adds around its body, for the longest kind,
    signed: blocks and sync messages carry an `auth`, and a body sized without it would
    make a message over the limit."""
    auth = EnvelopeAuth("0" * 64, bytes(64))
    empty = max(
        len(Envelope(kind, "0" * 64, sender, {}, auth).encode()) for kind in _ENVELOPE_KINDS
    )
    return empty - len(canonical_json({}))


@dataclass(frozen=True)
class NodeStatus:
    """A node's presence as it publishes it (retained) and as its last will says."""

    node_id: str
    online: bool
    version: str
    time_ms: int

    def encode(self) -> bytes:
        """Canonical JSON of the status."""
        return canonical_json(
            {
                "node_id": self.node_id,
                "state": "online" if self.online else "offline",
                "version": self.version,
                "time_ms": self.time_ms,
            }
        )


def parse_json_object(payload: bytes, max_bytes: int) -> JsonObject:
    """Decode a payload of at most ``max_bytes`` into a JSON object, or refuse it.

    The size is checked before parsing so an oversized payload costs no parsing.
    """
    if len(payload) > max_bytes:
        raise MessageRejectedError(Rejection.OVERSIZED, f"{len(payload)} bytes > limit {max_bytes}")
    try:
        value = json.loads(payload, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        # UnicodeDecodeError and JSONDecodeError are ValueErrors; deep nesting is RecursionError.
        raise MessageRejectedError(Rejection.MALFORMED_JSON, str(error)[:200]) from None
    if not isinstance(value, dict):
        raise MessageRejectedError(Rejection.MALFORMED_JSON, f"top level is {type(value).__name__}")
    return value


def envelope_sender(document: JsonObject) -> str:
    """The sender an envelope claims, checked only for shape (the app checks signatures).

    Read before the rest of the envelope so rate limiting runs before the costly checks.
    """
    sender = _field(document, "from", str)
    if not is_valid_id(sender):
        raise MessageRejectedError(Rejection.BAD_FIELD, "'from' is not a node id")
    return sender


def parse_envelope(document: JsonObject, kind: MessageKind) -> Envelope:
    """Check the envelope fields of a message received on a ``kind`` topic."""
    version = _field(document, "v", int)
    if version != ENVELOPE_VERSION:
        raise MessageRejectedError(Rejection.UNSUPPORTED_VERSION, f"envelope version {version}")
    if _field(document, "kind", str) != kind:
        raise MessageRejectedError(
            Rejection.KIND_MISMATCH, f"{document['kind']!r} on a {kind} topic"
        )
    sender = envelope_sender(document)
    claimed_id = _field(document, "id", str)
    body = _field(document, "body", dict)
    try:
        actual_id = message_id(body)
    except ValueError as error:
        raise MessageRejectedError(Rejection.BAD_FIELD, f"body: {error}") from None
    if claimed_id != actual_id:
        raise MessageRejectedError(
            Rejection.ID_MISMATCH, f"id {claimed_id[:16]}... is not the body's hash"
        )
    auth = _auth(document["auth"]) if "auth" in document else None
    return Envelope(kind, actual_id, sender, body, auth)


def _auth(value: object) -> EnvelopeAuth:
    """An envelope's `auth` field: a 32-byte key and a 64-byte signature, lowercase hex."""
    if not isinstance(value, dict) or set(value) != {"key", "sig"}:
        raise MessageRejectedError(Rejection.BAD_FIELD, "'auth' is not {key, sig}")
    key, sig = value["key"], value["sig"]
    if not (_is_hex(key, 64) and _is_hex(sig, 128)):
        raise MessageRejectedError(Rejection.BAD_FIELD, "'auth' key or sig is not hex")
    return EnvelopeAuth(key, bytes.fromhex(sig))


def _is_hex(value: object, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and set(value) <= _HEX


def parse_status(document: JsonObject, node_id: str) -> NodeStatus:
    """Check a status message received on the status topic of ``node_id``."""
    claimed_node = _field(document, "node_id", str)
    if claimed_node != node_id:
        raise MessageRejectedError(
            Rejection.SENDER_MISMATCH, f"status of {claimed_node!r} on {node_id!r}"
        )
    state = _field(document, "state", str)
    if state not in _STATES:
        raise MessageRejectedError(Rejection.BAD_FIELD, f"state {state!r}")
    return NodeStatus(
        node_id=node_id,
        online=state == "online",
        version=_field(document, "version", str),
        time_ms=_field(document, "time_ms", int),
    )


def _field(document: JsonObject, name: str, expected: type[_T]) -> _T:
    if name not in document:
        raise MessageRejectedError(Rejection.MISSING_FIELD, f"no {name!r}")
    value = document[name]
    # bool is an int subclass; a version or a time of `true` is not acceptable.
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise MessageRejectedError(Rejection.BAD_FIELD, f"{name!r} is not a {expected.__name__}")
    return value


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")
