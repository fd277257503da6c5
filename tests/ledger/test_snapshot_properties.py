"""Property: a home that joined from a snapshot and then trades live reaches the state a
home replaying every block from genesis reaches, whatever was traded before and after."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_controller.ledger import Ledger, Record, Rejected, state_digest

from .snapshot_support import Net, grow, joiner, sqlite_node, time_bound
from .support import HOUR, Community

bounded = time_bound(120)

INTERVAL = 3
PEOPLE = 4

_op = st.one_of(
    st.tuples(st.just("topup"), st.integers(0, PEOPLE - 1), st.integers(1, 50_000)),
    st.tuples(
        st.just("transfer"),
        st.integers(0, PEOPLE - 1),
        st.integers(0, PEOPLE - 1),
        st.integers(1, 20_000),
    ),
    st.tuples(st.just("offer"), st.integers(0, PEOPLE - 1), st.integers(100, 3_000)),
    st.tuples(
        st.just("accept"), st.integers(0, PEOPLE - 1), st.integers(0, 7), st.integers(1, 3_000)
    ),
    st.tuples(st.just("blocks"), st.integers(1, 4)),
    # Hours pass: offers and counter-offers close and, an hour on, are forgotten (rules 4).
    st.tuples(st.just("later"), st.integers(1, 3)),
)


class Market:
    """Turns operations into signed records of one community."""

    def __init__(self, community: Community) -> None:
        self.c = community
        self.people = [community.key(f"person-{i}") for i in range(PEOPLE)]
        self.offers: list[Record] = []

    def opening(self) -> list[Record]:
        return [
            self.c.register(f"pv/{i}", person, capacity_wh=1_000_000)
            for i, person in enumerate(self.people)
        ]

    def record(self, op: tuple[Any, ...]) -> Record | None:
        kind = op[0]
        if kind == "topup":
            return self.c.topup(self.people[op[1]], op[2])
        if kind == "transfer":
            to = self.people[op[2]].account
            return self.c.sign(self.people[op[1]], "transfer", to=to, amount=op[3])
        if kind == "offer":
            offer = self.c.offer(self.people[op[1]], f"pv/{op[1]}", op[2], hours=2)
            self.offers.append(offer)
            return offer
        if kind == "accept" and self.offers:
            offer = self.offers[op[2] % len(self.offers)]
            return self.c.accept(self.people[op[1]], offer, op[3])
        return None


def _apply(market: Market, server: Ledger, op: tuple[Any, ...], net: Net | None) -> None:
    """One operation: a record (taken through the joined home when there is one, as its
    owner's action) sealed into a block by the server, or a few empty blocks."""
    if op[0] == "blocks":
        for _ in range(op[1]):
            _seal(market, server, net)
        return
    if op[0] == "later":
        market.c.now += op[1] * HOUR
        _seal(market, server, net)
        return
    record = market.record(op)
    if record is None:
        return
    try:
        if net is not None:
            net.nodes["new"].ledger.submit(record)
            net.send("new", [(None, {"type": "record", "record": record.to_wire()})])
            net.run(market.c.now)
        else:
            server.submit(record)
    except Rejected:
        return  # refused by the rules on every node alike
    _seal(market, server, net)


def _seal(market: Market, server: Ledger, net: Net | None) -> None:
    block = market.c.seal(server, sealer=server.height + 1)
    if net is not None:
        net.send("server", [(None, {"type": "block", "block": block.to_wire()})])
        net.run(market.c.now)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(before=st.lists(_op, min_size=1, max_size=12), after=st.lists(_op, max_size=10))
def test_a_snapshot_join_then_live_trading_reaches_the_state_of_a_full_replay(
    before: list[tuple[Any, ...]], after: list[tuple[Any, ...]]
) -> None:
    community = Community(sealers=3, checkpoint_interval=INTERVAL, forget_after_ms=HOUR)
    market = Market(community)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        server = sqlite_node(community, tmp, "server")
        grow(community, server, 1, *market.opening())
        for op in before:
            _apply(market, server, op, None)
        # At least two checkpoints, one of them final.
        grow(community, server, max(0, 3 * INTERVAL - server.height))
        net = Net()
        net.add("server", server)
        joined = sqlite_node(community, tmp, "new")
        sync = net.add("new", joined)
        join = joiner(joined, tmp / "new.snapshots", community.now)
        sync.joiner = join
        for _ in range(4):
            net.tick(community.now)
        assert join.phase == "installed", join.status()
        assert joined.base_height > 0
        for op in after:
            _apply(market, server, op, net)
        net.tick(community.now)
        replay = community.node()
        for height in range(1, server.height + 1):
            block = server.block_at(height)
            assert block is not None
            assert replay.add_block(block).status == "connected"
        assert joined.head.hash == server.head.hash == replay.head.hash
        assert state_digest(joined.state) == state_digest(replay.state)
        assert state_digest(server.state) == state_digest(replay.state)
        joined.close()
        server.close()
