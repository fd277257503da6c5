"""What the block size attacks share: request records that fill blocks, sized as they travel.

A `request` needs no registration, balance or fee on the first rules, so it is what a
member (or anyone holding keys) fills blocks with fastest. Each spammer key signs its
records in sequence; many keys keep every sequence inside the window whatever the
transport's order.
"""

from __future__ import annotations

from typing import Any

from edge_controller.ledger import KeyPair, Record, sign_record
from edge_controller.network.envelope import Envelope
from edge_controller.network.topics import MessageKind

HOUR = 3_600_000


def spam_keys(count: int, tag: str = "spam") -> list[KeyPair]:
    """`count` deterministic spammer keys."""
    return [KeyPair.from_seed(f"{tag}-{i}".encode()) for i in range(count)]


def requests(community: str, keys: list[KeyPair], per_key: int, now: int) -> list[Record]:
    """`per_key` requests from each key (sequences 1..per_key), interleaved across keys so
    that each key's records stay in order while the whole stream is spread over signers."""
    start = now + HOUR
    out = []
    for seq in range(1, per_key + 1):
        for key in keys:
            body = {
                "kind": "request",
                "seq": seq,
                "time": now,
                "mode": "energy",
                "quantity": 1_000 + seq,
                "max_price": 300,
                "start": start,
                "end": start + HOUR,
                "expires": start,
                "resource_kind": "battery",
            }
            out.append(sign_record(key, community, body))
    return out


def message_bytes(kind: MessageKind, sender: str, body: dict[str, Any]) -> int:
    """The bytes `body` takes on the wire from `sender`, envelope included."""
    return len(Envelope.wrap(kind, sender, body).encode())
