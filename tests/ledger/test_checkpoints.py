"""Checkpoints in block headers, finality by depth, and a new home joining from a snapshot
(rules 3): ledgers on SQLite speaking the sync protocol in memory, through JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from edge_controller.ledger import (
    FIRST_RULES,
    Genesis,
    Ledger,
    Reason,
    Rejected,
    seal,
    state_digest,
)
from edge_controller.ledger.chain import genesis_entry
from edge_controller.ledger.genesis import DEFAULT_CHECKPOINT_INTERVAL, SECOND_RULES

from .snapshot_support import Net, grow, joiner, sqlite_node, time_bound
from .support import Community

bounded = time_bound(60)

INTERVAL = 4


def street(**consensus: Any) -> Community:
    """Three sealers (finality by their majority), a checkpoint every `INTERVAL` blocks."""
    return Community(sealers=3, checkpoint_interval=INTERVAL, **consensus)


def trading(community: Community, ledger: Ledger) -> None:
    """A registration, money and a trade: rows in most tables."""
    seller, buyer = community.key("seller"), community.key("buyer")
    grow(
        community,
        ledger,
        1,
        community.register("pv/1", seller),
        community.topup(buyer),
        community.topup(seller, 5_000),
    )
    offer = community.offer(seller, "pv/1", 2_000)
    grow(community, ledger, 1, offer)
    grow(community, ledger, 1, community.accept(buyer, offer, 500))


def test_a_checkpoint_carries_the_digest_of_the_state_its_block_starts_from(
    tmp_path: Path,
) -> None:
    community = street()
    ledger = sqlite_node(community, tmp_path, "a")
    trading(community, ledger)
    states: dict[int, str] = {}
    while ledger.height < 3 * INTERVAL:
        states[ledger.height] = state_digest(ledger.state)
        grow(community, ledger, 1)
    for height in range(1, ledger.height + 1):
        block = ledger.block_at(height)
        assert block is not None
        if height % INTERVAL:
            assert block.header.checkpoint == "" and "checkpoint" not in block.header.to_json()
        else:
            assert block.header.checkpoint == states[height - 1], height
    # The snapshot files are the digests' preimages.
    files = ledger.checkpoints.files()
    assert files, "no snapshot kept"
    for name in files:
        data = (tmp_path / "a.snapshots" / name).read_bytes()
        assert __import__("hashlib").sha256(data).hexdigest() in states.values()


def test_a_wrong_or_misplaced_checkpoint_is_refused_by_its_reason(tmp_path: Path) -> None:
    community = street()
    honest = community.node()
    trading(community, honest)
    grow(community, honest, INTERVAL - honest.height % INTERVAL - 1)

    def follower() -> Ledger:
        # A fresh one for each forgery: a second block of a sealer at a height is equivocation.
        ledger = community.node()
        for height in range(1, honest.height + 1):
            block = honest.block_at(height)
            assert block is not None
            ledger.add_block(block)
        return ledger

    community.now += 1_000
    key = community.sealers[(honest.height + 1) % 3]
    good = honest.build_block(key, now=community.now)
    assert good is not None and good.header.checkpoint
    wrong = seal(dataclasses.replace(good.header, checkpoint="ab" * 32), good.records, key)
    missing = seal(dataclasses.replace(good.header, checkpoint=""), good.records, key)
    for forged in (wrong, missing):
        ledger = follower()
        with pytest.raises(Rejected) as info:
            ledger.add_block(forged.to_wire())
        assert info.value.reason is Reason.BAD_CHECKPOINT, info.value
        assert ledger.height == honest.height
    ledger = follower()
    assert ledger.add_block(good).status == "connected"
    # One past the checkpoint, a checkpoint is out of place.
    community.now += 1_000
    honest.add_block(good)
    key = community.sealers[(honest.height + 1) % 3]
    plain = honest.build_block(key, now=community.now)
    assert plain is not None and not plain.header.checkpoint
    extra = seal(dataclasses.replace(plain.header, checkpoint=good.header.checkpoint), (), key)
    with pytest.raises(Rejected) as info:
        ledger.add_block(extra)
    assert info.value.reason is Reason.BAD_CHECKPOINT


def test_checkpoint_and_finality_parameters_are_optional_and_of_rules_3() -> None:
    community = street()
    data = community.genesis.to_json()
    assert data["consensus"]["checkpoint_interval"] == INTERVAL
    assert "finality_depth" not in data["consensus"]
    assert Genesis.from_json(data) == community.genesis
    default = Community(sealers=3)
    assert "checkpoint_interval" not in default.genesis.to_json()["consensus"]
    assert default.genesis.consensus.checkpoint_interval == DEFAULT_CHECKPOINT_INTERVAL
    for rules in (FIRST_RULES, SECOND_RULES):
        old = json.loads(json.dumps(data))
        old["consensus"]["rules"] = rules
        old["consensus"].pop("min_balance", None)
        with pytest.raises(Rejected) as info:
            Genesis.from_json(old)
        assert info.value.reason is Reason.MALFORMED and "rules 3" in info.value.message
    # A community of the second rules makes no checkpoints, whatever the interval field says.
    second = Community(sealers=3, rules=SECOND_RULES, checkpoint_interval=INTERVAL)
    ledger = second.node()
    grow(second, ledger, INTERVAL)
    block = ledger.block_at(INTERVAL)
    assert block is not None and block.header.checkpoint == ""


def test_proof_of_work_blocks_below_the_finality_depth_are_never_reorganised() -> None:
    community = Community(mode="pow", finality_depth=3, checkpoint_interval=0)
    honest, attacker = community.node(), community.node()
    for _ in range(6):
        community.seal(honest)
    assert honest.final_height == 3
    # The attacker forks from genesis with more work (more blocks) than the honest chain.
    fork = []
    for _ in range(9):
        fork.append(community.seal(attacker))
    refused = []
    for block in fork:
        try:
            honest.add_block(block.to_wire())
        except Rejected as exc:
            refused.append(exc.reason)
    assert honest.height == 6 and honest.main[1] != fork[0].hash
    assert refused and set(refused) <= {Reason.REVERTS_FINAL, Reason.KNOWN_INVALID}
    assert refused[0] is Reason.REVERTS_FINAL
    # Rules 2 keep no final height under proof of work: the heavier fork wins, as before.
    second = Community(mode="pow", rules=SECOND_RULES)
    honest, attacker = second.node(), second.node()
    for _ in range(6):
        second.seal(honest)
    fork = [second.seal(attacker) for _ in range(9)]
    for block in fork:
        honest.add_block(block.to_wire())
    assert honest.final_height == 0 and honest.head.hash == fork[-1].hash


def _joined(
    community: Community, tmp_path: Path, server: Ledger, name: str = "new"
) -> tuple[Net, Ledger]:
    net = Net()
    net.add("server", server)
    ledger = sqlite_node(community, tmp_path, name)
    sync = net.add(name, ledger)
    sync.joiner = joiner(ledger, tmp_path / f"{name}.snapshots", community.now)
    return net, ledger


def test_a_new_home_joins_from_a_snapshot_and_verifies_forward(tmp_path: Path) -> None:
    community = street()
    server = sqlite_node(community, tmp_path, "server")
    trading(community, server)
    grow(community, server, 5 * INTERVAL + 1)
    net, ledger = _joined(community, tmp_path, server)
    join = net.nodes["new"].joiner
    assert join is not None
    for _ in range(4):
        net.tick(community.now)
    assert join.phase == "installed", join.status()
    checkpoint = server.final_height - server.final_height % INTERVAL
    assert join.target == checkpoint
    assert ledger.base_height == checkpoint - 1
    assert ledger.height == server.height and ledger.head.hash == server.head.hash
    assert state_digest(ledger.state) == state_digest(server.state)
    # It fetched the blocks from the checkpoint on only, and none before.
    assert ledger.block_at(checkpoint) is not None and ledger.block_at(checkpoint - 1) is None
    # Live: the joined ledger follows new blocks as any node does, and reopens.
    trading(community, server)
    net.tick(community.now)
    assert ledger.head.hash == server.head.hash
    assert state_digest(ledger.state) == state_digest(server.state)
    ledger.close()
    again = sqlite_node(community, tmp_path, "new")
    assert again.head.hash == server.head.hash and again.base_height == checkpoint - 1
    assert state_digest(again.state) == state_digest(server.state)
    # It serves the same snapshot to the next new home.
    net2, third = _joined(community, tmp_path, again, "third")
    for _ in range(4):
        net2.tick(community.now)
    assert state_digest(third.state) == state_digest(server.state)


def _change_a_balance(message: dict[str, Any]) -> dict[str, Any]:
    if message.get("type") == "snapshot":
        for row in message["rows"]:
            if row[0] == "accounts" and row[2]["balance"] > 0:
                row[2]["balance"] += 1
                break
    return message


def test_a_snapshot_that_does_not_match_its_checkpoint_is_refused_and_another_peer_asked(
    tmp_path: Path,
) -> None:
    community = street()
    server = sqlite_node(community, tmp_path, "server")
    trading(community, server)
    grow(community, server, 3 * INTERVAL)
    liar = sqlite_node(community, tmp_path, "liar")
    for height in range(1, server.height + 1):
        block = server.block_at(height)
        assert block is not None
        liar.add_block(block)
    net, ledger = _joined(community, tmp_path, server)
    # Equal work: the peer asked first is the greatest id, the liar.
    net.add("zz-liar", liar)
    net.tamper["zz-liar"] = _change_a_balance
    join = net.nodes["new"].joiner
    assert join is not None
    for _ in range(6):
        net.tick(community.now)
    assert join.phase == "installed", join.status()
    assert join.refused == {"bad_snapshot": 1}, join.refused
    assert net.nodes["new"].rejected["bad_snapshot"] == 1
    assert state_digest(ledger.state) == state_digest(server.state)
    # Alone with the liar, a new home refuses every piece it serves and never installs.
    net2 = Net()
    net2.add("liar", liar)
    net2.tamper["liar"] = _change_a_balance
    lonely = sqlite_node(community, tmp_path, "lonely")
    sync = net2.add("lonely", lonely)
    sync.joiner = joiner(lonely, tmp_path / "lonely.snapshots", community.now)
    for _ in range(4):
        net2.tick(community.now)
    assert sync.rejected["bad_snapshot"] >= 1, dict(sync.rejected)
    assert lonely.height == 0 and not lonely.state.accounts.rows
    assert sync.joiner is not None and sync.joiner.phase == "snapshot"


def test_an_empty_home_of_a_young_community_replays_instead(tmp_path: Path) -> None:
    community = street()
    server = sqlite_node(community, tmp_path, "server")
    grow(community, server, INTERVAL - 1)
    net, ledger = _joined(community, tmp_path, server)
    for _ in range(3):
        net.tick(community.now)
    assert ledger.height == server.height and ledger.base_height == 0
    assert net.nodes["new"].joiner is None or net.nodes["new"].joiner.phase == "replay"


def test_genesis_entry_is_unchanged_by_the_new_parameters() -> None:
    community = Community(sealers=3)
    header, _ = genesis_entry(community.genesis)
    assert "checkpoint" not in header.to_json()
