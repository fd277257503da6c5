"""Many ledger nodes on an in-memory network converge on one chain after forks and partitions.

The network delivers the sync protocol's messages with random delays (so concurrent blocks
fork the chain), can split into partitions that drop messages between sides, and shares
one simulated clock with every node.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

from edge_controller.ledger import KeyPair, Ledger, Record
from edge_controller.ledger.sync import PEER_SILENT_MS, Message, SyncNode
from edge_controller.network import message_id

from .support import Community


@dataclass
class Node:
    name: str
    ledger: Ledger
    sync: SyncNode
    key: KeyPair


@dataclass
class Network:
    community: Community
    rng: random.Random
    nodes: dict[str, Node] = field(default_factory=dict)
    queue: list[tuple[int, int, str, str, Message]] = field(default_factory=list)
    groups: dict[str, int] = field(default_factory=dict)
    sent: int = 0

    @property
    def now(self) -> int:
        return self.community.now

    def add(self, name: str, key: KeyPair) -> Node:
        ledger = self.community.node()
        # Nodes here are named, not known by account: every one is a member.
        node = Node(name, ledger, SyncNode(ledger, name, member=lambda peer: True), key)
        self.nodes[name] = node
        return node

    def send(self, src: str, dst: str | None, message: Message) -> None:
        targets = [n for n in self.nodes if n != src] if dst is None else [dst]
        for target in targets:
            if self.groups.get(src, 0) != self.groups.get(target, 0):
                continue  # partitioned: the message is lost
            delay = self.rng.randint(5, 400)
            self.sent += 1
            heapq.heappush(self.queue, (self.now + delay, self.sent, src, target, message))

    def run(self, duration_ms: int) -> None:
        """Deliver messages (and tick every node each second) for `duration_ms`."""
        end = self.now + duration_ms
        next_tick = self.now
        while True:
            due = self.queue[0][0] if self.queue else None
            if next_tick <= end and (due is None or next_tick <= due):
                self.community.now = next_tick
                for node in self.nodes.values():
                    for dst, message in node.sync.tick(self.now):
                        self.send(node.name, dst, message)
                next_tick += 1_000
                continue
            if due is None or due > end:
                self.community.now = end
                return
            at, _, src, dst, message = heapq.heappop(self.queue)
            self.community.now = max(self.now, at)
            node = self.nodes[dst]
            for reply_to, reply in node.sync.handle(src, message, self.now):
                self.send(dst, reply_to, reply)

    def seal(self, node: Node) -> bool:
        block = node.ledger.build_block(node.key, now=self.now, max_tries=1 << 16)
        if block is None:
            return False
        node.ledger.add_block(block)
        self.send(node.name, None, node.sync.block_message(block))
        return True

    def publish(self, node: Node, record: Record) -> None:
        node.ledger.submit(record)
        self.send(node.name, None, node.sync.record_message(record.to_wire()))

    def heads(self) -> set[str]:
        return {n.ledger.head.hash for n in self.nodes.values()}

    def digests(self) -> set[str]:
        return {n.ledger.state.digest() for n in self.nodes.values()}

    def settle(self) -> None:
        """Let the network go quiet until every node agrees (or fail after a while)."""
        for _ in range(60):
            self.run(1_000)
            if len(self.heads()) == 1:
                return
        raise AssertionError(f"nodes did not converge: {self.describe()}")

    def describe(self) -> dict[str, Any]:
        return {n.name: (n.ledger.height, n.ledger.head.hash[:8]) for n in self.nodes.values()}


def pow_network(nodes: int, seed: int) -> Network:
    community = Community(
        mode="pow", initial_bits=3, min_bits=3, max_bits=3, block_interval_ms=2_000
    )
    net = Network(community, random.Random(seed))
    for i in range(nodes):
        net.add(f"home-{i}", community.key(f"home-{i}"))
    return net


def test_concurrent_sealers_fork_the_chain_and_every_node_converges_on_one() -> None:
    net = pow_network(nodes=6, seed=7)
    homes = list(net.nodes.values())
    c = net.community
    reorgs = 0
    for round_ in range(40):
        sealer = net.rng.choice(homes)
        if round_ % 3 == 0:
            net.publish(net.rng.choice(homes), c.topup(c.key(f"buyer-{round_}"), 1_000 + round_))
        # Two sealers at once, faster than the network: their blocks compete.
        net.seal(sealer)
        if net.rng.random() < 0.5:
            net.seal(net.rng.choice(homes))
        before = {n.name: n.ledger.head.hash for n in homes}
        net.run(net.rng.randint(50, 600))
        reorgs += sum(
            1
            for n in homes
            if n.ledger.head.hash != before[n.name] and n.ledger.head.prev != before[n.name]
        )
    net.settle()
    assert len(net.heads()) == 1
    assert len(net.digests()) == 1
    assert reorgs > 0, "the scenario should have produced competing branches"
    # The winning chain is the one with the most work, and it is long.
    assert homes[0].ledger.height >= 30


def test_a_healed_partition_adopts_the_heavier_side_and_keeps_the_lighter_sides_records() -> None:
    net = pow_network(nodes=6, seed=11)
    homes = list(net.nodes.values())
    c = net.community
    for _ in range(3):
        net.seal(homes[0])
        net.run(1_000)
    net.settle()

    # Split 4 / 2. Both sides keep sealing; the bigger side seals more blocks.
    for node in homes[4:]:
        net.groups[node.name] = 1
    lost_side_record = c.topup(c.key("minority-buyer"), 4_242)
    net.publish(homes[5], lost_side_record)
    for i in range(12):
        net.seal(homes[i % 4])
        if i % 3 == 0:
            net.seal(homes[4 + i % 2])
        net.run(700)
    minority_head = homes[5].ledger.head.hash
    majority_head = homes[0].ledger.head.hash
    assert minority_head != majority_head
    assert homes[5].ledger.state.account(c.key("minority-buyer").account).balance == 4_242

    net.groups.clear()
    net.settle()
    assert net.heads() == {majority_head}
    assert len(net.digests()) == 1
    # The minority's top-up was orphaned, went back to a pool, and lands in a later block.
    assert lost_side_record.id in homes[5].ledger.pool or homes[5].ledger.is_recorded(
        lost_side_record.id
    )
    for _ in range(3):
        net.seal(homes[5])
        net.run(1_000)
    net.settle()
    for node in homes:
        assert node.ledger.state.account(c.key("minority-buyer").account).balance == 4_242


def test_proof_of_authority_sealers_take_turns_and_all_nodes_agree() -> None:
    community = Community(mode="poa", sealers=3)
    net = Network(community, random.Random(3))
    sealers = [net.add(f"sealer-{i}", k) for i, k in enumerate(community.sealers)]
    followers = [net.add(f"home-{i}", community.key(f"home-{i}")) for i in range(3)]
    for i in range(30):
        in_turn = [s for s in sealers if s.ledger.in_turn(s.key) and s.ledger.can_seal(s.key)]
        if in_turn:
            net.seal(in_turn[0])
        if i % 5 == 0:
            net.publish(followers[i % 3], community.topup(community.key(f"b{i}"), 10 + i))
        net.run(1_500)
    net.settle()
    assert len(net.heads()) == 1 and len(net.digests()) == 1
    ledger = followers[0].ledger
    assert ledger.height >= 25
    sealer_keys = [ledger.block_at(h).header.sealer for h in range(1, ledger.height + 1)]
    assert all(a != b for a, b in itertools.pairwise(sealer_keys))


def test_a_new_home_catches_up_in_batches_and_reports_its_progress() -> None:
    community = Community(mode="poa", sealers=1)
    net = Network(community, random.Random(5))
    old = net.add("old-home", community.sealers[0])
    for i in range(300):
        if i % 10 == 0:
            old.ledger.submit(community.topup(community.key(f"b{i}"), 1 + i))
        community.now += 1_000
        block = old.ledger.build_block(old.key, now=community.now)
        assert block is not None
        old.ledger.add_block(block)
    newcomer = net.add("new-home", community.key("new-home"))
    assert newcomer.ledger.height == 0
    seen: list[float | None] = []
    for _ in range(30):
        net.run(500)
        seen.append(newcomer.sync.progress().fraction)
        if newcomer.sync.progress().synced and newcomer.ledger.height == 300:
            break
    assert newcomer.ledger.head.hash == old.ledger.head.hash
    assert newcomer.ledger.state.digest() == old.ledger.state.digest()
    # Unknown (None) until a peer answered its request; then it took several batches,
    # and progress only went up, ending at 100 %.
    known = [f for f in seen if f is not None]
    assert seen[: len(seen) - len(known)] == [None] * (len(seen) - len(known))
    assert len([f for f in known if 0 < f < 1]) >= 1
    assert known == sorted(known) and known[-1] == 1.0


def test_malformed_and_forged_sync_messages_are_counted_not_raised() -> None:
    net = pow_network(nodes=2, seed=1)
    a = net.nodes["home-0"]
    for junk in [
        "not an object",
        {"type": "teleport"},
        {"type": "head", "height": -1, "hash": "x", "work": "1"},
        {"type": "blocks", "blocks": [{"header": {}, "sig": "", "records": []}]},
        {"type": "record", "record": {"body": {}, "signer": "00", "sig": "00"}},
    ]:
        assert a.sync.handle("home-1", junk, net.now) == []
    assert sum(a.sync.rejected.values()) == 5
    assert a.sync.rejected["malformed"] >= 3


def test_an_unchanged_head_said_again_is_a_new_message_so_a_quiet_peer_stays_a_peer() -> None:
    # The transport drops a message whose body it has seen; a head stamped with the time it
    # is said is never that, so peers keep hearing a home while no block is sealed.
    community = Community()
    quiet = SyncNode(community.node(), "quiet")
    listener = SyncNode(community.node(), "listener", member=lambda peer: True)
    now = community.now
    said = [quiet.head_message(now + i * PEER_SILENT_MS // 2) for i in range(4)]
    assert len({message_id(m) for m in said}) == len(said)
    for i, head in enumerate(said):
        listener.handle("quiet", head, now + i * PEER_SILENT_MS // 2)
        listener.tick(now + i * PEER_SILENT_MS // 2)
    assert "quiet" in listener.peers
