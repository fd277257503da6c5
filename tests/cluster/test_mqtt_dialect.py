"""What NATS's MQTT listener accepts that Mosquitto does not, and the other way round.

Both brokers run side by side (Mosquitto, and the three-node cluster of deploy/nats/ with
one login per home); each check says what each broker does, and the edge controller keeps
to what both accept: MQTT 3.1.1, QoS 0 and 1, ids without "." " " "*" ">", persistent
sessions, retained presence cleared by an empty message. Then the cluster refuses a home
that publishes as another.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_controller.bench.brokers import (
    BrokerMissing,
    Certificates,
    MosquittoBroker,
    NatsCluster,
    nats_binary,
)
from edge_controller.network import BrokerSettings, CommunityLink, LinkLimits, MessageKind
from edge_controller.network.topics import CommunityTopics, is_valid_id

pytestmark = pytest.mark.slow

COMMUNITY = "c0ffee"
HOMES = {"epalice": "alice-secret", "epbob": "bob-secret"}
TOPICS = CommunityTopics(COMMUNITY)


@dataclass
class Broker:
    """One of the two brokers under test, and how a home logs in to it."""

    name: str
    port: int
    certificates: Certificates
    logins: bool

    def login(self, node: str) -> tuple[str, str] | None:
        return (node, HOMES[node]) if self.logins else None


@pytest.fixture(scope="module")
def brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Broker]]:
    try:
        nats_binary()
    except BrokerMissing as missing:
        pytest.skip(str(missing))
    folder = tmp_path_factory.mktemp("dialect")
    cluster = NatsCluster(folder / "nats", COMMUNITY, HOMES)
    mosquitto = MosquittoBroker(folder / "mosquitto", cluster.certificates)
    try:
        cluster.start()
        mosquitto.start()
        yield {
            "mosquitto": Broker("mosquitto", mosquitto.port, cluster.certificates, False),
            "nats": Broker("nats", cluster.nodes[0].mqtt_port, cluster.certificates, True),
        }
    finally:
        mosquitto.stop()
        cluster.stop()


class Client:
    """A paho client that records what happens to it."""

    def __init__(
        self,
        broker: Broker,
        node: str,
        *,
        client_id: str | None = None,
        protocol: int = paho.MQTTv311,
        clean: bool = True,
    ) -> None:
        self.connack: list[bool] = []
        self.closed = False
        self.messages: list[paho.MQTTMessage] = []
        self.granted: list[int] = []
        self._sent: paho.MQTTMessageInfo | None = None
        version5 = protocol == paho.MQTTv5
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"{node}-{time.monotonic_ns()}",
            protocol=protocol,
            clean_session=None if version5 else clean,
        )
        self.client.tls_set_context(broker.certificates.client_context())
        if (login := broker.login(node)) is not None:
            self.client.username_pw_set(*login)
        self.client.on_connect = lambda _c, _u, _f, code, _p=None: self.connack.append(
            not code.is_failure
        )
        self.client.on_disconnect = lambda *_args: setattr(self, "closed", True)
        self.client.on_message = lambda _c, _u, message: self.messages.append(message)
        self.client.on_subscribe = lambda _c, _u, _m, codes, _p=None: self.granted.extend(
            code.value for code in codes
        )
        self.client.connect("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()
        wait(lambda: self.connack or self.closed, "an answer to CONNECT")

    @property
    def accepted(self) -> bool:
        return bool(self.connack and self.connack[0]) and not self.closed

    def subscribe(self, topic: str, qos: int = 1) -> None:
        # Wait for this SUBACK, not any: a second subscription is not in place until then.
        before = len(self.granted)
        self.client.subscribe(topic, qos)
        wait(lambda: len(self.granted) > before, f"the SUBACK of {topic}")

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self._sent = self.client.publish(topic, payload, qos=qos, retain=retain)

    @property
    def acknowledged(self) -> bool:
        """Whether the broker acknowledged the last publish (QoS 1)."""
        return self._sent is not None and self._sent.is_published()

    def close(self) -> None:
        # Gone on the broker's side before the test goes on: a QoS 1 message sent into a
        # closing session waits out NATS's ack_wait (30 s) before it is sent again.
        self.client.disconnect()
        wait(lambda: self.closed, "the disconnection")
        self.client.loop_stop()


def wait(condition: object, what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def delivered(receiver: Client, topic: str, payload: bytes) -> bool:
    return any(m.topic == topic and m.payload == payload for m in receiver.messages)


@pytest.mark.parametrize("name", ["mosquitto", "nats"])
def test_mqtt_5_is_refused_by_nats_only_so_homes_speak_3_1_1(
    brokers: dict[str, Broker], name: str
) -> None:
    client = Client(brokers[name], "epalice", protocol=paho.MQTTv5)
    assert client.accepted is (name == "mosquitto")
    client.close()
    assert Client(brokers[name], "epalice").accepted


@pytest.mark.parametrize("name", ["mosquitto", "nats"])
def test_qos_2_and_dots_or_spaces_in_topics_close_a_nats_connection(
    brokers: dict[str, Broker], name: str
) -> None:
    broker = brokers[name]
    receiver = Client(broker, "epbob")
    receiver.subscribe(TOPICS.records)
    refused = [(TOPICS.records, 2), (f"{TOPICS.base}/sync/a.b", 1), (f"{TOPICS.base}/sync/a b", 1)]
    for topic, qos in refused:
        sender = Client(broker, "epalice")
        sender.publish(topic, b"probe", qos=qos)
        if name == "nats":
            wait(lambda s=sender: s.closed, f"NATS to close the connection after {topic}")
        else:
            after = f"after {topic} {qos}".encode()
            sender.publish(TOPICS.records, after, qos=1)
            wait(lambda a=after: delivered(receiver, TOPICS.records, a), "Mosquitto to go on")
            assert not sender.closed
        sender.close()
    # The edge controller never makes such a topic: its ids refuse what NATS refuses.
    assert not any(is_valid_id(bad) for bad in ("a.b", "a b", "a*", "a>", "a/b", "a+", "a#"))


@pytest.mark.parametrize("name", ["mosquitto", "nats"])
def test_a_qos_2_subscription_is_granted_as_qos_1_by_nats(
    brokers: dict[str, Broker], name: str
) -> None:
    client = Client(brokers[name], "epbob")
    client.subscribe(TOPICS.blocks, qos=2)
    assert client.granted == [2 if name == "mosquitto" else 1]
    client.close()


@pytest.mark.parametrize("name", ["mosquitto", "nats"])
def test_both_keep_retained_presence_and_queue_qos_1_for_a_persistent_session(
    brokers: dict[str, Broker], name: str
) -> None:
    broker = brokers[name]
    status = TOPICS.status("epalice")
    alice = Client(broker, "epalice")
    alice.publish(status, b'{"online": true}', retain=True)
    away = Client(broker, "epbob", client_id=f"bob-{name}", clean=False)
    away.subscribe(TOPICS.records)
    away.close()
    alice.publish(TOPICS.records, b"while away")
    wait(lambda: alice.acknowledged, "the PUBACK of what was sent while Bob was away")
    late = Client(broker, "epbob")
    late.subscribe(TOPICS.all_statuses)
    wait(lambda: delivered(late, status, b'{"online": true}'), "the retained status")
    assert [m.retain for m in late.messages if m.topic == status] == [True]
    back = Client(broker, "epbob", client_id=f"bob-{name}", clean=False)
    wait(lambda: delivered(back, TOPICS.records, b"while away"), "what was queued")
    # An empty retained message clears the presence on both.
    alice.publish(status, b"", retain=True)
    wait(lambda: delivered(late, status, b""), "the clearing message")
    cleared = Client(broker, "epbob")
    cleared.subscribe(TOPICS.all_statuses)
    time.sleep(0.5)  # nothing is to come: a short look for a retained message
    assert not any(m.topic == status for m in cleared.messages)
    for client in (alice, late, back, cleared):
        client.close()


def test_the_cluster_refuses_a_home_publishing_as_another(brokers: dict[str, Broker]) -> None:
    broker = brokers["nats"]
    bob = Client(broker, "epbob")
    bob.subscribe(TOPICS.all_statuses)
    bob.subscribe(TOPICS.records)
    mallory = Client(broker, "epalice", client_id="alice-as-bob")
    # Alice's login writing Bob's presence and reading Bob's inbox: both refused.
    mallory.publish(TOPICS.status("epbob"), b'{"online": false}', retain=True)
    mallory.client.subscribe(TOPICS.sync("epbob"), 1)
    wait(lambda: mallory.granted, "the SUBACK")
    assert mallory.granted == [0x80]
    # What Alice may do still arrives, after the forgery: so the forgery did not.
    mallory.publish(TOPICS.status("epalice"), b'{"online": true}', retain=True)
    mallory.publish(TOPICS.records, b"genuine")
    wait(lambda: delivered(bob, TOPICS.records, b"genuine"), "Alice's own record")
    wait(lambda: delivered(bob, TOPICS.status("epalice"), b'{"online": true}'), "Alice's status")
    assert not any(m.topic == TOPICS.status("epbob") for m in bob.messages)
    late = Client(broker, "epbob")
    late.subscribe(TOPICS.all_statuses)
    wait(lambda: delivered(late, TOPICS.status("epalice"), b'{"online": true}'), "retained")
    assert not any(m.topic == TOPICS.status("epbob") for m in late.messages)
    for client in (bob, mallory, late):
        client.close()


async def test_the_link_speaks_what_both_accept(brokers: dict[str, Broker], tmp_path: Path) -> None:
    received: dict[str, list[str]] = {}
    links = []
    for name, broker in brokers.items():
        for node in HOMES:
            login = broker.login(node)
            link = CommunityLink(
                node_id=node,
                community_id=COMMUNITY,
                broker=BrokerSettings(
                    host="127.0.0.1",
                    port=broker.port,
                    username=login[0] if login else None,
                    password=login[1] if login else None,
                    tls_ca_file=broker.certificates.ca_file,
                    client_id=f"{node}-{name}-link",
                ),
                outbox_path=tmp_path / f"{name}-{node}.sqlite3",
                limits=LinkLimits(reconnect_initial_s=0.05, reconnect_max_s=0.5),
            )
            inbox = received.setdefault(f"{name}/{node}", [])

            async def keep(message: object, inbox: list[str] = inbox) -> None:
                inbox.append(message.body["n"])  # type: ignore[attr-defined]

            link.on_message(MessageKind.RECORD, keep)
            links.append(link)
            await link.start()
    try:
        async with asyncio.timeout(30):
            for link in links:
                await link.wait_connected()
            for link in links:
                if link.node_id == "epalice":
                    await link.publish(MessageKind.RECORD, {"n": link.broker.client_id or ""})
            while not (received["mosquitto/epbob"] and received["nats/epbob"]):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert received["mosquitto/epbob"] == ["epalice-mosquitto-link"]
        assert received["nats/epbob"] == ["epalice-nats-link"]
    finally:
        for link in links:
            await link.stop()
