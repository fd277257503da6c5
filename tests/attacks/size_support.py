"""What the block size attacks share: request records that fill blocks, sized as they travel.

A `request` needs no registration, balance or fee on the first rules, so it is what a
member (or anyone holding keys) fills blocks with fastest. Each spammer key signs its
records in sequence; many keys keep every sequence inside the window whatever the
transport's order.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import paho.mqtt.client as paho

from edge_controller.ledger import KeyPair, Record, sign_record
from edge_controller.network import CommunityTopics, MessageKind
from edge_controller.network.envelope import Envelope, EnvelopeAuth

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
    """The bytes `body` takes on the wire from `sender`, envelope included; blocks and sync
    messages travel signed (the link adds the sender's key and signature), records do not."""
    envelope = Envelope.wrap(kind, sender, body)
    if kind is not MessageKind.RECORD:
        envelope = replace(envelope, auth=EnvelopeAuth("0" * 64, bytes(64)))
    return len(envelope.encode())


class Spammer:
    """Publishes records straight on the community's record topic, each message in its
    signer's name (a message claiming another sender is refused before it costs anything)."""

    def __init__(self, port: int, community: str) -> None:
        self.topic = CommunityTopics(community).broadcast(MessageKind.RECORD)
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        self.client.max_inflight_messages_set(1_000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def push(self, records: list[Record]) -> None:
        """Publish every record (QoS 1) and wait until the broker has them all."""
        sent = [
            self.client.publish(
                self.topic,
                Envelope.wrap(MessageKind.RECORD, r.account, r.to_wire()).encode(),
                qos=1,
            )
            for r in records
        ]
        for info in sent:
            info.wait_for_publish(30)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def refound(community: Any, **consensus: Any) -> None:
    """Give a test community (tests/edge/support) other consensus parameters before any
    record is signed, and rewrite its genesis file."""
    genesis = community.genesis
    community.genesis = replace(genesis, consensus=replace(genesis.consensus, **consensus))
    community.genesis.save(community.genesis_path)


def blocks_of(home: Any) -> list[dict[str, Any]]:
    """Every block of a home's best chain as `GET ledger/blocks` shows it."""
    blocks: list[dict[str, Any]] = []
    while True:
        page = home.get(f"ledger/blocks?from={len(blocks) + 1}&limit=100")["blocks"]
        blocks.extend(page)
        if len(page) < 100:
            return blocks


def forget_session(port: int, node_id: str) -> None:
    """Drop the broker's persistent session of a stopped home, with everything queued for it
    (as a broker restarted without persistence, or an overflowed queue, would): the home can
    then learn what it missed only by syncing with its peers."""
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=f"energy-p2p-{node_id}", clean_session=True
    )
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.disconnect()
    client.loop_stop()
