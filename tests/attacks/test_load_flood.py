"""A flood under changing sender ids on a real Mosquitto: a known peer's records and blocks
keep flowing, because strangers share one bounded lane per kind of message and are shed
there, cheaply, before anything else is done with them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edge_controller.network import (
    BrokerSettings,
    CommunityLink,
    InboundMessage,
    LinkLimits,
    MessageKind,
    Rejection,
    canonical_json,
    message_id,
)
from tests.conftest import Mosquitto

COMMUNITY = "flood-street"
FLOOD = 20_000
RECORDS = 100
BLOCKS = 10
# The production limits: the peer paces its sending below 40 messages a second.
LIMITS = LinkLimits(reconnect_initial_s=0.05, reconnect_max_s=0.5, publish_timeout_s=5.0)


def envelope(sender: str, body: dict[str, Any]) -> bytes:
    return canonical_json(
        {"v": 1, "id": message_id(body), "kind": "record", "from": sender, "body": body}
    )


def flood(port: int, topic: str) -> None:
    """`FLOOD` well-formed records, each under a sender id never seen before."""
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    for n in range(FLOOD):
        client.publish(topic, envelope(f"mallory-{n}", {"n": n, "junk": "x" * 200}), qos=0)
    client.loop_stop()
    client.disconnect()


async def test_a_flood_under_changing_sender_ids_does_not_crowd_out_a_known_peer(
    tmp_path: Path, community_broker: Mosquitto
) -> None:
    mosquitto = community_broker
    broker = BrokerSettings(host=mosquitto.host, port=mosquitto.port, connect_timeout_s=2.0)
    home = CommunityLink(
        node_id="home",
        community_id=COMMUNITY,
        broker=broker,
        outbox_path=tmp_path / "home.sqlite3",
        limits=LIMITS,
        known_sender={"peer"}.__contains__,
    )
    peer = CommunityLink(
        node_id="peer",
        community_id=COMMUNITY,
        broker=broker,
        outbox_path=tmp_path / "peer.sqlite3",
        limits=LIMITS,
    )
    got: dict[str, list[InboundMessage]] = {"peer": [], "strangers": []}

    async def handle(message: InboundMessage) -> None:
        # As the ledger node's handler does (the outbox, a worker thread) it awaits
        # something: meanwhile the flood is read from the socket and queues up.
        await asyncio.sleep(0.0005)
        got["peer" if message.sender == "peer" else "strangers"].append(message)
        if message.sender == "peer":
            latency.append(time.monotonic() - sent[message.message_id])
            if len(got["peer"]) == RECORDS + BLOCKS:
                all_in.set()

    async def ignore(message: InboundMessage) -> None:
        return None

    all_in = asyncio.Event()
    sent: dict[str, float] = {}
    latency: list[float] = []
    home.on_message(MessageKind.RECORD, handle)
    home.on_message(MessageKind.BLOCK, handle)
    peer.on_message(MessageKind.RECORD, ignore)
    try:
        await home.start()
        await peer.start()
        await home.wait_connected()
        await peer.wait_connected()
        flooding = asyncio.create_task(
            asyncio.to_thread(flood, mosquitto.port, home.topics.records)
        )
        await asyncio.sleep(0.2)
        for n in range(RECORDS):
            sent[await peer.publish(MessageKind.RECORD, {"seq": n})] = time.monotonic()
            if n % (RECORDS // BLOCKS) == 0:
                sent[await peer.publish(MessageKind.BLOCK, {"height": n})] = time.monotonic()
        await flooding
        async with asyncio.timeout(30):
            await all_in.wait()
    finally:
        await peer.stop()
        await home.stop()

    shed = home.rejections[Rejection.LANE_FULL]
    print(
        f"flood {FLOOD}: handled {len(got['strangers'])}, shed {shed} in the strangers' lane,"
        f" {home.rejections[Rejection.INBOUND_QUEUE_FULL]} lost in the client's queue;"
        f" peer {len(got['peer'])} of {RECORDS + BLOCKS}, at most {max(latency):.2f} s late"
    )
    assert [m.body.get("seq") for m in got["peer"] if m.kind is MessageKind.RECORD] == list(
        range(RECORDS)
    )
    assert shed > 0 and home.rejections[Rejection.INBOUND_QUEUE_FULL] == 0
