"""Rules 3: the registrar adds and removes sealers (`sealer` records). A change takes effect
`SEALER_CHANGE_DELAY` blocks after the block holding it became final, only forward; turns,
spacing and finality follow the set in force at each height, on every branch."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_controller.ledger import Block, Header, KeyPair, Ledger, Reason, Record, Rejected, seal
from edge_controller.ledger.block import record_root
from edge_controller.ledger.consensus import signed_header
from edge_controller.ledger.genesis import SECOND_RULES
from edge_controller.ledger.sealers import MAX_SEALERS, SEALER_CHANGE_DELAY
from edge_controller.ledger.store import SqliteStore
from edge_controller.ledger.verify import verify_chain

from .support import Community, rejected


def add(c: Community, key: KeyPair, action: str = "add", signer: KeyPair | None = None) -> Record:
    """A `sealer` record (signed by the registrar unless `signer` is given)."""
    return c.sign(signer or c.registrar, "sealer", key=key.public_hex, action=action)


def step(c: Community, ledger: Ledger, key: KeyPair, *records: Record) -> Block:
    """Seal a block with `key` (which must be allowed to) and connect it."""
    for record in records:
        ledger.submit(record)
    c.now += 2_000
    block = ledger.build_block(key, now=c.now)
    assert block is not None, "the key may not seal now"
    assert ledger.add_block(block).status == "connected"
    return block


def forged(ledger: Ledger, key: KeyPair, now: int, difficulty: int = 1) -> Block:
    """A block on the head sealed by `key`, whatever the rules say."""
    head = ledger.head
    header = Header(
        height=head.height + 1,
        prev=head.hash,
        root=record_root([]),
        time=now,
        difficulty=difficulty,
        nonce=0,
        sealer=key.public_hex,
    )
    return seal(header, (), key)


def forged_after(c: Community, parent: Block, key: KeyPair) -> Block:
    """A block on `parent` sealed by `key`, whatever the rules say."""
    header = Header(
        height=parent.height + 1,
        prev=parent.hash,
        root=record_root([]),
        time=parent.header.time + 2_000,
        difficulty=1,
        nonce=0,
        sealer=key.public_hex,
    )
    return seal(header, (), key)


def test_only_a_registrar_changes_sealers_within_the_bounds() -> None:
    c = Community()
    ledger = c.node()
    newcomer = c.key("newcomer")
    rejected(ledger, add(c, newcomer, signer=newcomer), Reason.NOT_REGISTRAR)
    rejected(ledger, add(c, c.sealers[0]), Reason.ALREADY_SEALER)
    rejected(ledger, add(c, newcomer, "remove"), Reason.NOT_A_SEALER)
    rejected(ledger, add(c, c.sealers[0], "remove"), Reason.LAST_SEALER)
    extra = [c.key(f"extra-{i}") for i in range(MAX_SEALERS - 1)]
    for key in extra:
        ledger.submit(add(c, key))
    rejected(ledger, add(c, newcomer), Reason.TOO_MANY_SEALERS)
    step(c, ledger, c.sealers[0])
    assert len(ledger.planned_sealers()) == MAX_SEALERS
    # Recorded is not in force: the set changes once the block is final.
    assert ledger.sealer_set() == (c.sealers[0].public_hex,)


def test_sealer_records_are_rules_3_and_proof_of_authority_only() -> None:
    for c in (Community(rules=SECOND_RULES), Community(mode="pow")):
        rejected(c.node(), add(c, c.key("newcomer")), Reason.MALFORMED)


def test_a_new_sealer_seals_from_its_effect_height_and_shares_turns_and_finality() -> None:
    c = Community()
    ledger = c.node()
    founder, newcomer = c.sealers[0], c.key("newcomer")
    holding = step(c, ledger, founder, add(c, newcomer))
    assert ledger.planned_sealers() == (founder.public_hex, newcomer.public_hex)
    # One sealer: the block after it makes it final; in force SEALER_CHANGE_DELAY later.
    effect = holding.height + 1 + SEALER_CHANGE_DELAY
    while ledger.height + 1 < effect:
        assert not ledger.can_seal(newcomer, c.now + 2_000)
        with pytest.raises(Rejected) as caught:
            ledger.add_block(forged(ledger, newcomer, c.now + 2_000))
        assert caught.value.reason is Reason.WRONG_SEALER
        step(c, ledger, founder)
    assert ledger.sealer_set() == (founder.public_hex, newcomer.public_hex)
    # The founder sealed the last block: with two sealers it may not seal twice in a row.
    assert not ledger.can_seal(founder, c.now + 2_000)
    in_turn = ledger.in_turn(newcomer)
    block = step(c, ledger, newcomer)
    assert block.header.difficulty == (2 if in_turn else 1)
    final = ledger.final_height
    step(c, ledger, founder)
    step(c, ledger, newcomer)
    # Two sealers: a block is final once both sealed after it.
    assert ledger.final_height == ledger.height - 2 > final
    for height in range(1, ledger.height + 1):
        entry = ledger.index[ledger.main[height]]
        expected = 1 if height < effect else 2
        assert len(ledger.sealer_timeline.in_force(entry).sealers) == expected, height


def test_a_removed_sealer_is_refused_from_the_effect_height_and_the_past_stays_valid(
    tmp_path: Path,
) -> None:
    c = Community(sealers=2)
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(c.genesis, store=SqliteStore(path), clock=lambda: c.now)
    first, second = c.sealers
    step(c, ledger, first)
    step(c, ledger, second)
    step(c, ledger, first, add(c, second, "remove"))
    # Final once both sealed on top; then SEALER_CHANGE_DELAY blocks.
    turn = [first, second]
    while ledger.sealer_set() != (first.public_hex,):
        key = turn[ledger.height % 2]
        step(c, ledger, key)
    refused = forged(ledger, second, c.now + 2_000)
    with pytest.raises(Rejected) as caught:
        ledger.add_block(refused)
    assert caught.value.reason is Reason.WRONG_SEALER
    # Alone, the remaining sealer seals every block.
    step(c, ledger, first)
    step(c, ledger, first)
    height, head = ledger.height, ledger.head.hash
    ledger.close()
    # The removed sealer's earlier blocks stay valid: a restart re-checks them.
    again = Ledger(c.genesis, store=SqliteStore(path), clock=lambda: c.now)
    assert (again.height, again.head.hash) == (height, head)
    assert again.sealer_set() == (first.public_hex,)
    step(c, again, first)
    again.close()


def test_a_node_syncing_the_chain_in_one_batch_follows_the_set_in_force() -> None:
    c = Community()
    ledger = c.node()
    founder, newcomer = c.sealers[0], c.key("newcomer")
    blocks = [step(c, ledger, founder, add(c, newcomer))]
    while newcomer.public_hex not in ledger.sealer_set():
        blocks.append(step(c, ledger, founder))
    for _ in range(6):
        key = newcomer if ledger.can_seal(newcomer, c.now + 2_000) else founder
        blocks.append(step(c, ledger, key))
    assert {b.header.sealer for b in blocks} == {founder.public_hex, newcomer.public_hex}
    other = c.node()
    outcomes = other.add_blocks([b.to_wire() for b in blocks])
    assert not [o for o in outcomes if isinstance(o, Rejected)], outcomes
    assert other.head.hash == ledger.head.hash
    assert other.sealer_set() == ledger.sealer_set()
    # `ledger verify` replays the chain with the same set at every height.
    report = verify_chain(c.genesis, [b.to_wire() for b in blocks], now=c.now, workers=1)
    assert report.ok and report.blocks == len(blocks), report
    tampered = verify_chain(
        c.genesis,
        [*(b.to_wire() for b in blocks[:2]), forged_after(c, blocks[1], newcomer).to_wire()],
        now=c.now,
        workers=1,
    )
    assert tampered.reason == Reason.WRONG_SEALER.value


def test_a_fork_cannot_change_the_set_of_the_past_nor_seat_a_key_before_finality() -> None:
    c = Community(sealers=2)
    ledger = c.node()
    first, second = c.sealers
    intruder = c.key("intruder")
    for key in (first, second, first, second):
        step(c, ledger, key)
    final = ledger.final_height
    assert final >= 2
    # A branch from below the final height, recording an added key, is refused outright.
    side = c.node()
    for height in range(1, final):
        side.add_block(ledger.block_at(height))
    c.now += 2_000
    side.submit(add(c, intruder))
    fork = side.build_block(first if side.can_seal(first, c.now) else second, now=c.now)
    assert fork is not None
    with pytest.raises(Rejected) as caught:
        ledger.add_block(fork)
    assert caught.value.reason is Reason.REVERTS_FINAL
    # Above the final height: the change recorded on a branch by one sealer is not final
    # there, so the added key may not seal on it.
    branch = c.node()
    for height in range(1, ledger.height + 1):
        branch.add_block(ledger.block_at(height))
    sealer = first if branch.can_seal(first, c.now + 2_000) else second
    c.now += 2_000
    branch.submit(add(c, intruder))
    holding = branch.build_block(sealer, now=c.now)
    assert holding is not None
    ledger.add_block(holding)
    with pytest.raises(Rejected) as caught:
        ledger.add_block(forged(branch_after(branch, holding), intruder, c.now + 2_000))
    assert caught.value.reason is Reason.WRONG_SEALER


def branch_after(branch: Ledger, block: Block) -> Ledger:
    branch.add_block(block)
    return branch


def equivocation(c: Community, ledger: Ledger, cheat: KeyPair) -> Record:
    """Evidence that `cheat` signed two blocks on the head."""
    head = ledger.head
    twins = [
        seal(
            Header(
                height=head.height + 1,
                prev=head.hash,
                root=record_root([]),
                time=c.now + delta,
                difficulty=2,
                nonce=0,
                sealer=cheat.public_hex,
            ),
            (),
            cheat,
        )
        for delta in (1, 2)
    ]
    return c.sign(
        c.registrar,
        "equivocation",
        first=signed_header(twins[0].header, twins[0].sig),
        second=signed_header(twins[1].header, twins[1].sig),
    )


def test_a_suspended_sealer_may_be_removed_and_not_added_back() -> None:
    c = Community(sealers=3)
    ledger = c.node()
    first, second, third = c.sealers
    step(c, ledger, first)
    step(c, ledger, third, equivocation(c, ledger, second))
    rejected(ledger, add(c, second), Reason.ALREADY_SEALER)
    step(c, ledger, first, add(c, third, "remove"))
    # The second sealer is suspended: removing the first would leave none that may seal.
    rejected(ledger, add(c, first, "remove"), Reason.LAST_SEALER)
    step(c, ledger, third, add(c, second, "remove"))
    assert ledger.planned_sealers() == (first.public_hex,)
    rejected(ledger, add(c, second), Reason.SEALER_SUSPENDED)
