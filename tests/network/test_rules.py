"""The transport's rules without a broker: topics, envelopes, limits, backoff and the outbox."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from edge_controller.community.broker import Login, acl_text
from edge_controller.network import CommunityTopics, MessageKind, Rejection, canonical_json
from edge_controller.network.defence import MessageRejectedError, SenderRateLimiter
from edge_controller.network.envelope import Envelope, parse_envelope, parse_json_object
from edge_controller.network.link import reconnect_delay
from edge_controller.network.nats import home_permissions, subject_of
from edge_controller.network.outbox import Outbox
from edge_controller.network.topics import TopicAddress, rules_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_topics_of_a_community_live_under_one_namespace() -> None:
    topics = CommunityTopics("valley")
    assert topics.records == "energy-p2p/valley/records"
    assert topics.blocks == "energy-p2p/valley/blocks"
    assert topics.sync("home-b") == "energy-p2p/valley/sync/home-b"
    assert topics.status("home-b") == "energy-p2p/valley/status/home-b"
    assert topics.parse("energy-p2p/valley/sync/home-b") == TopicAddress(MessageKind.SYNC, "home-b")
    assert topics.parse("energy-p2p/valley/blocks") == TopicAddress(MessageKind.BLOCK, None)
    assert topics.parse("energy-p2p/other/blocks") is None
    assert topics.parse("energy-p2p/valley/records/extra") is None
    with pytest.raises(ValueError, match="topic level"):
        topics.sync("home/+")
    with pytest.raises(ValueError, match="topic level"):
        CommunityTopics("#")


def test_the_community_broker_and_the_nats_cluster_take_one_statement_of_a_homes_rules() -> None:
    """What a home may publish and read is said once (`rules_for`): the NATS cluster's
    permissions and the community broker's Mosquitto ACL are both written from it. Before
    its approval names its node id, a home says no presence and reads every sync inbox."""
    community = "c" * 32
    topics = CommunityTopics(community)
    node = "ep" + "1" * 40
    approved, joining = rules_for(topics, node), rules_for(topics, None)
    assert topics.status(node) in approved.publish and topics.sync(node) in approved.subscribe
    assert not any("/status/" in f for f in joining.publish)
    assert f"{topics.base}/sync/+" in joining.subscribe

    def acl_of(login: Login) -> tuple[set[str], set[str]]:
        lines = acl_text(community, [login]).split(f"user {login.username}\n")[1].splitlines()
        read = {line.split()[-1] for line in lines if line.startswith("topic read ")}
        write = {line.split()[-1] for line in lines if line.startswith("topic write ")}
        return read, write - {f"{topics.base}/join/{login.username}"}

    assert acl_of(Login("flat-3", node_id=node)) == (set(approved.subscribe), set(approved.publish))
    assert acl_of(Login("sunny-house")) == (set(joining.subscribe), set(joining.publish))
    nats = home_permissions(community, node)
    assert set(nats["publish"]["allow"]) == {subject_of(f) for f in approved.publish}


def test_an_envelope_survives_the_wire_and_its_id_is_the_body_hash() -> None:
    body = {"type": "offer", "energy_wh": 1500, "price": 250}
    sent = Envelope.wrap(MessageKind.RECORD, "home-a", body)
    assert sent.message_id == Envelope.wrap(MessageKind.RECORD, "home-b", dict(body)).message_id
    assert sent.encode() == canonical_json(
        {"body": body, "from": "home-a", "id": sent.message_id, "kind": "record", "v": 1}
    )
    received = parse_envelope(parse_json_object(sent.encode(), 10_000), MessageKind.RECORD)
    assert received == sent


def test_an_oversized_payload_is_refused_before_it_is_parsed() -> None:
    # Invalid JSON: if it were parsed first the reason would be malformed_json.
    with pytest.raises(MessageRejectedError) as refused:
        parse_json_object(b"[" * 2000, max_bytes=1000)
    assert refused.value.reason is Rejection.OVERSIZED


@pytest.mark.parametrize(
    "payload",
    [b"[" * 100_000, b'{"a": NaN}', b"\xff", b'"text"'],
    ids=["deeply-nested", "nan", "not-utf8", "not-an-object"],
)
def test_payloads_that_are_not_json_objects_are_malformed(payload: bytes) -> None:
    with pytest.raises(MessageRejectedError) as refused:
        parse_json_object(payload, max_bytes=1_000_000)
    assert refused.value.reason is Rejection.MALFORMED_JSON


def test_a_sender_gets_its_burst_then_the_steady_rate() -> None:
    clock = FakeClock()
    limiter = SenderRateLimiter(rate_per_second=2.0, burst=3, clock=clock)
    assert [limiter.allow("home-a")[0] for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("home-b")[0], "each sender has its own bucket"
    clock.now += 0.5  # one token back at 2 per second
    assert [limiter.allow("home-a")[0] for _ in range(2)] == [True, False]


def test_a_flood_is_reported_once_when_it_starts() -> None:
    limiter = SenderRateLimiter(rate_per_second=1.0, burst=1, clock=FakeClock())
    verdicts = [limiter.allow("flooder") for _ in range(4)]
    assert verdicts == [(True, False), (False, True), (False, False), (False, False)]


def test_the_rate_limiter_forgets_the_least_recent_senders_beyond_its_bound() -> None:
    clock = FakeClock()
    limiter = SenderRateLimiter(rate_per_second=0.001, burst=1, max_senders=2, clock=clock)
    assert limiter.allow("a")[0] and limiter.allow("b")[0]
    assert not limiter.allow("a")[0]
    assert limiter.allow("c")[0]  # evicts "b", the least recently seen
    assert limiter.allow("b")[0], "a forgotten sender starts with a full bucket"
    assert not limiter.allow("c")[0]


def test_reconnect_delays_grow_exponentially_with_jitter_up_to_a_cap() -> None:
    rng = random.Random(7)
    delays = [reconnect_delay(attempt, 0.5, 30.0, rng) for attempt in range(12)]
    for attempt, delay in enumerate(delays):
        ceiling = min(30.0, 0.5 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 30.0
    assert len({round(d, 6) for d in delays[8:]}) > 1, "capped delays still differ"


async def test_the_outbox_keeps_messages_in_order_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path)
    assert await outbox.open() == 0
    assert await outbox.add("t/records", "id-1", b"one")
    assert await outbox.add("t/records", "id-2", b"two")
    assert not await outbox.add("t/records", "id-1", b"one"), "the same message waits once"
    assert await outbox.add("t/sync/b", "id-1", b"one"), "a different destination is another"
    await outbox.close()

    reopened = Outbox(path)
    assert await reopened.open() == 3
    first, second, third = await reopened.pending(limit=10)
    assert [first.payload, second.payload, third.topic] == [b"one", b"two", "t/sync/b"]
    await reopened.remove([first.seq, third.seq])
    assert [entry.message_id for entry in await reopened.pending(limit=10)] == ["id-2"]
    assert await reopened.count() == 1
    await reopened.close()
