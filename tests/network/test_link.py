"""Homes talk over a real Mosquitto: records, blocks, sync, presence, outages and crashes."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import aiomqtt
import pytest

from edge_controller.network import (
    BrokerSettings,
    CommunityLink,
    InboundMessage,
    LinkLimits,
    MessageKind,
    NodeStatus,
    Rejection,
    canonical_json,
    message_id,
)

NODE_SCRIPT = Path(__file__).with_name("node_process.py")
WaitUntil = Callable[[Callable[[], bool], float], Awaitable[None]]
# The `make_link` fixture of conftest.py.
LinkFactory = Callable[..., CommunityLink]
# Same pacing as conftest.FAST_LIMITS, which test modules cannot import.
FAST_LIMITS = LinkLimits(reconnect_initial_s=0.05, reconnect_max_s=0.5, publish_timeout_s=5.0)


class Broker(Protocol):
    """What the shared `mosquitto` fixture offers."""

    host: str
    port: int

    def start(self) -> None: ...
    def stop(self) -> None: ...


def settings_of(broker: Broker) -> BrokerSettings:
    # A connection the broker accepts while shutting down never gets a CONNACK, and
    # aiomqtt then waits the whole connect timeout; keep that wait short on loopback.
    return BrokerSettings(host=broker.host, port=broker.port, connect_timeout_s=2.0)


class Inbox:
    """Collects what a link hands to the app."""

    def __init__(self) -> None:
        self.messages: list[InboundMessage] = []

    async def __call__(self, message: InboundMessage) -> None:
        self.messages.append(message)

    def bodies(self) -> list[dict[str, object]]:
        return [message.body for message in self.messages]


@asynccontextmanager
async def node_process(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """A node in a child process (see node_process.py); killed on exit if still running."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(NODE_SCRIPT), *args, stdout=asyncio.subprocess.PIPE
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def expect_line(process: asyncio.subprocess.Process, expected: str) -> None:
    assert process.stdout is not None
    async with asyncio.timeout(10):
        line = (await process.stdout.readline()).decode().strip()
    assert line == expected


async def test_two_homes_exchange_records_blocks_and_sync_messages(
    mosquitto: Broker, make_link: LinkFactory, wait_until: WaitUntil
) -> None:
    home_a = make_link("home-a", settings_of(mosquitto))
    home_b = make_link("home-b", settings_of(mosquitto))
    records_at_a, records_at_b, blocks_at_a, sync_at_a, sync_at_b = (Inbox() for _ in range(5))
    home_a.on_message(MessageKind.RECORD, records_at_a)
    home_b.on_message(MessageKind.RECORD, records_at_b)
    home_a.on_message(MessageKind.BLOCK, blocks_at_a)
    home_a.on_message(MessageKind.SYNC, sync_at_a)

    async def answer_sync(message: InboundMessage) -> None:
        await sync_at_b(message)
        await home_b.send_to(message.sender, {"type": "blocks", "height": 1})

    home_b.on_message(MessageKind.SYNC, answer_sync)
    await home_a.start()
    await home_b.start()
    await wait_until(lambda: home_a.online_peers() == ["home-b"], 5)
    await wait_until(lambda: home_b.online_peers() == ["home-a"], 5)

    offer = {"type": "offer", "resource": "pv-1", "energy_wh": 1500, "price": 250}
    record_id = await home_a.publish(MessageKind.RECORD, offer)
    await home_b.publish(MessageKind.BLOCK, {"height": 1, "previous": "00" * 32})
    await home_a.send_to("home-b", {"type": "get_blocks", "from_height": 0})

    await wait_until(lambda: len(records_at_b.messages) == 1, 5)
    await wait_until(lambda: len(blocks_at_a.messages) == 1 and len(sync_at_a.messages) == 1, 5)
    received = records_at_b.messages[0]
    assert (received.sender, received.message_id, received.body) == ("home-a", record_id, offer)
    assert blocks_at_a.messages[0].sender == "home-b"
    assert sync_at_b.bodies() == [{"type": "get_blocks", "from_height": 0}]
    assert sync_at_a.bodies() == [{"type": "blocks", "height": 1}]
    # A home does not receive its own broadcasts back as news.
    assert records_at_a.messages == []
    assert home_a.stats().echoes == 1
    assert home_a.stats().outbox_pending == 0

    await home_b.stop()
    await wait_until(lambda: home_a.online_peers() == [], 5)
    assert home_a.peers()["home-b"].online is False


async def test_last_will_marks_a_killed_home_offline(
    mosquitto: Broker, make_link: LinkFactory, wait_until: WaitUntil, tmp_path: Path
) -> None:
    watcher = make_link("watcher", settings_of(mosquitto))
    changes: list[NodeStatus] = []

    async def record_change(status: NodeStatus) -> None:
        changes.append(status)

    watcher.on_peer_change(record_change)
    await watcher.start()
    await watcher.wait_connected()

    args = ["--port", str(mosquitto.port), "--node", "home-c", "--outbox", str(tmp_path / "c")]
    async with node_process(*args, "--wait-connected") as home_c:
        await expect_line(home_c, "connected")
        await wait_until(lambda: watcher.online_peers() == ["home-c"], 5)
        home_c.send_signal(signal.SIGKILL)
        await wait_until(lambda: "home-c" in watcher.peers() and not watcher.online_peers(), 5)

    assert [(change.node_id, change.online) for change in changes] == [
        ("home-c", True),
        ("home-c", False),
    ]
    # The offline status is retained: a home that joins later sees it too.
    latecomer = make_link("latecomer", settings_of(mosquitto))
    await latecomer.start()
    await wait_until(lambda: "home-c" in latecomer.peers(), 5)
    assert latecomer.peers()["home-c"].online is False


async def test_records_published_while_broker_is_down_arrive_when_it_returns(
    persistent_mosquitto: Broker, make_link: LinkFactory, wait_until: WaitUntil
) -> None:
    mosquitto = persistent_mosquitto
    seller = make_link("seller", settings_of(mosquitto))
    buyer = make_link("buyer", settings_of(mosquitto))
    inbox = Inbox()
    buyer.on_message(MessageKind.RECORD, inbox)
    await seller.start()
    await buyer.start()
    await wait_until(lambda: seller.connected and buyer.connected, 5)

    mosquitto.stop()
    await wait_until(lambda: not seller.connected and not buyer.connected, 5)
    sent_ids = [
        await seller.publish(MessageKind.RECORD, {"type": "offer", "number": number})
        for number in range(20)
    ]
    assert seller.stats().outbox_pending == 20

    mosquitto.start()
    await wait_until(lambda: len(inbox.messages) >= 20, 10)
    assert sorted(message.message_id for message in inbox.messages) == sorted(sent_ids)
    await wait_until(lambda: seller.stats().outbox_pending == 0, 5)
    assert seller.stats().published[MessageKind.RECORD] == 20


async def test_records_acknowledged_before_a_kill_9_are_sent_by_the_next_process(
    mosquitto: Broker,
    make_link: LinkFactory,
    wait_until: WaitUntil,
    tmp_path: Path,
    free_tcp_port: int,
) -> None:
    buyer = make_link("buyer", settings_of(mosquitto))
    inbox = Inbox()
    buyer.on_message(MessageKind.RECORD, inbox)
    await buyer.start()
    await buyer.wait_connected()
    outbox = str(tmp_path / "seller-outbox.sqlite3")

    # First life: the broker it points at is down, so nothing can leave before the kill.
    first = ["--port", str(free_tcp_port), "--node", "seller", "--outbox", outbox]
    async with node_process(*first, "--publish", "25") as seller:
        await expect_line(seller, "acked 25")
        seller.send_signal(signal.SIGKILL)
        assert await seller.wait() == -signal.SIGKILL
    assert inbox.messages == []

    second = ["--port", str(mosquitto.port), "--node", "seller", "--outbox", outbox]
    async with node_process(*second, "--drain") as seller:
        await expect_line(seller, "drained")
        assert await seller.wait() == 0

    await wait_until(lambda: len(inbox.messages) >= 25, 5)
    numbers = sorted(int(str(message.body["number"])) for message in inbox.messages)
    assert numbers == list(range(25))


async def test_a_record_goes_out_only_once_ready_and_never_when_ready_fails(
    mosquitto: Broker, make_link: LinkFactory, wait_until: WaitUntil, tmp_path: Path
) -> None:
    # `ready` is the node's fsync of its ledger, overlapping the outbox write.
    buyer = make_link("buyer", settings_of(mosquitto))
    inbox = Inbox()
    buyer.on_message(MessageKind.RECORD, inbox)
    seller = make_link("seller", settings_of(mosquitto))
    await buyer.start()
    await seller.start()
    await seller.wait_connected()
    await wait_until(lambda: buyer.online_peers() == ["seller"], 5)

    on_disk = asyncio.Event()

    async def slow_disk() -> None:
        await on_disk.wait()

    async def failed_disk() -> None:
        raise OSError("the ledger's fsync failed")

    held = asyncio.create_task(seller.publish(MessageKind.RECORD, {"n": "held"}, slow_disk))
    with pytest.raises(OSError, match="fsync failed"):
        await seller.publish(MessageKind.RECORD, {"n": "refused"}, failed_disk)
    await seller.publish(MessageKind.RECORD, {"n": "plain"})
    await wait_until(lambda: len(inbox.messages) == 1, 5)
    assert inbox.bodies() == [{"n": "plain"}]
    assert not held.done()

    on_disk.set()
    await held
    await wait_until(lambda: len(inbox.messages) == 2, 5)
    assert inbox.bodies() == [{"n": "plain"}, {"n": "held"}]
    await wait_until(lambda: seller.stats().outbox_pending == 0, 5)
    # Taken back out of the file too: a restart does not send it after all.
    await seller.stop()
    again = make_link("seller", settings_of(mosquitto), outbox=tmp_path / "seller-outbox.sqlite3")
    await again.start()
    assert again.stats().outbox_pending == 0


def envelope(sender: str, body: dict[str, Any], kind: str = "record") -> bytes:
    """A well-formed envelope, built by hand as another implementation would."""
    return canonical_json(
        {"v": 1, "id": message_id(body), "kind": kind, "from": sender, "body": body}
    )


async def test_hostile_messages_are_refused_with_their_reason_and_the_link_keeps_working(
    mosquitto: Broker, make_link: LinkFactory, wait_until: WaitUntil
) -> None:
    async def check_signature(message: InboundMessage) -> str | None:
        return "bad_signature" if message.body.get("signature") == "forged" else None

    limits = replace(FAST_LIMITS, max_message_bytes=4096, rate_per_second=1.0, rate_burst=5)
    home = make_link("home", settings_of(mosquitto), limits=limits, validator=check_signature)
    inbox = Inbox()
    home.on_message(MessageKind.RECORD, inbox)

    async def failing_block_handler(message: InboundMessage) -> None:
        raise RuntimeError("the ledger choked")

    home.on_message(MessageKind.BLOCK, failing_block_handler)
    await home.start()
    await home.wait_connected()

    records = home.topics.records
    good = {"type": "offer", "signature": "valid"}
    # Each hostile sender has its own name so only the flooder meets the rate limit.
    hostile: list[tuple[str, bytes]] = [
        (records, b"{" + b" " * 5000 + b"}"),  # oversized
        (records, b'{"v": 1, "id": '),  # malformed JSON
        (records, b"[1, 2, 3]"),  # not an object
        (records, b"\xff\xfe not utf-8"),  # not even text
        (records, canonical_json({"v": 1, "kind": "record", "from": "mallory"})),  # no id/body
        (records, envelope("mallory-1", good).replace(b'"v":1', b'"v":"1"')),  # bad field
        (records, envelope("mallory-2", good, kind="block")),  # kind does not match the topic
        (records, envelope("mallory-3", good).replace(b'"valid"', b'"VALID"')),  # body tampered
        (records, envelope("mallory-4", {"type": "offer", "signature": "forged"})),
        (home.topics.blocks, envelope("mallory-5", {"height": 7}, kind="block")),
    ]
    hostile += [(records, envelope("flooder", {"n": n, "signature": "ok"})) for n in range(20)]

    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as attacker:
        for topic, payload in hostile:
            await attacker.publish(topic, payload, qos=1)
        await attacker.publish(records, envelope("alice", good), qos=1)
        # The same record again (at-least-once redelivery) reaches the app only once.
        await attacker.publish(records, envelope("alice", good), qos=1)
        await attacker.publish(records, envelope("bob", {**good, "type": "request"}), qos=1)

    await wait_until(lambda: [m.sender for m in inbox.messages][-1:] == ["bob"], 5)
    assert home.rejections == Counter(
        {
            Rejection.OVERSIZED: 1,
            Rejection.MALFORMED_JSON: 3,
            Rejection.MISSING_FIELD: 1,
            Rejection.BAD_FIELD: 1,
            Rejection.KIND_MISMATCH: 1,
            Rejection.ID_MISMATCH: 1,
            "invalid:bad_signature": 1,
            Rejection.HANDLER_ERROR: 1,
            Rejection.RATE_LIMITED: 15,
            Rejection.DUPLICATE: 1,
        }
    )
    assert [m.sender for m in inbox.messages] == ["flooder"] * 5 + ["alice", "bob"]
    assert home.stats().rejected == home.rejections
    assert home.connected

    # Still working for its own traffic after all that.
    await home.publish(MessageKind.RECORD, {"type": "offer", "after": "attack"})
    await wait_until(lambda: home.stats().outbox_pending == 0, 5)


async def test_username_and_password_are_required_by_a_secured_broker(
    password_mosquitto: BrokerSettings, make_link: LinkFactory, wait_until: WaitUntil
) -> None:
    seller = make_link("seller", password_mosquitto)
    buyer = make_link("buyer", password_mosquitto)
    intruder = make_link("intruder", replace(password_mosquitto, password="guess"))
    inbox = Inbox()
    buyer.on_message(MessageKind.RECORD, inbox)
    for link in (seller, buyer, intruder):
        await link.start()
    await wait_until(lambda: seller.connected and buyer.connected, 5)

    await seller.publish(MessageKind.RECORD, {"type": "offer", "energy_wh": 500})
    await wait_until(lambda: len(inbox.messages) == 1, 5)
    assert inbox.messages[0].sender == "seller"
    await wait_until(lambda: intruder.stats().last_error is not None, 5)
    assert "not authori" in str(intruder.stats().last_error).lower()
    assert not intruder.connected
    assert intruder.stats().connections == 0
    assert "intruder" not in buyer.peers()


async def test_a_refused_password_is_followed_at_once_by_the_next_one(
    password_mosquitto: BrokerSettings, make_link: LinkFactory, wait_until: WaitUntil
) -> None:
    """A joined home tries its own password, then its invitation's: before the approval
    puts its own in force the broker refuses the first, and the link tries the second next;
    with every password wrong, it keeps trying as it would with one."""
    correct = password_mosquitto.password
    assert correct is not None
    home = make_link(
        "home", replace(password_mosquitto, password="mine", fallback_passwords=(correct,))
    )
    stranger = make_link(
        "stranger", replace(password_mosquitto, password="a", fallback_passwords=("b",))
    )
    await home.start()
    await stranger.start()
    await wait_until(lambda: home.connected, 3)
    assert home.stats().connections == 1
    await wait_until(lambda: stranger.stats().last_error is not None, 5)
    assert not stranger.connected and stranger.stats().connections == 0


async def test_tls_with_a_client_certificate_carries_records(
    tls_mosquitto: BrokerSettings, make_link: LinkFactory, wait_until: WaitUntil
) -> None:
    seller = make_link("seller", tls_mosquitto)
    buyer = make_link("buyer", tls_mosquitto)
    # Under TLS 1.3 the broker refuses a missing certificate after the handshake, so the
    # client only notices when no CONNACK comes: a short connect timeout keeps this quick.
    without_certificate = make_link(
        "stranger",
        replace(tls_mosquitto, tls_cert_file=None, tls_key_file=None, connect_timeout_s=1.0),
    )
    inbox = Inbox()
    buyer.on_message(MessageKind.RECORD, inbox)
    for link in (seller, buyer, without_certificate):
        await link.start()
    await wait_until(lambda: seller.connected and buyer.connected, 5)

    await seller.publish(MessageKind.RECORD, {"type": "offer", "energy_wh": 700})
    await wait_until(lambda: len(inbox.messages) == 1, 5)
    assert inbox.messages[0].body == {"type": "offer", "energy_wh": 700}
    await wait_until(lambda: without_certificate.stats().last_error is not None, 5)
    assert not without_certificate.connected
