"""Block-level rules: every way a block is refused, seen with its reason code, the proof-of-work
retarget, and fork choice (most work, then the lower hash, whatever the arrival order)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_controller.ledger import (
    FIRST_RULES,
    Block,
    KeyPair,
    Ledger,
    Reason,
    Record,
    Rejected,
    parse_record,
)
from edge_controller.ledger.block import Header, leading_zero_bits, record_root, seal, search_nonce
from edge_controller.ledger.chain import BlockResult
from edge_controller.ledger.consensus import IndexEntry, expected_difficulty

from .support import Community

# Drawing long operation lists is slow on a loaded machine; that is not a failure.
SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large]


def forge(
    ledger: Ledger,
    key: KeyPair,
    records: tuple[Record, ...] = (),
    *,
    parent: IndexEntry | None = None,
    time: int | None = None,
    difficulty: int | None = None,
    root: str | None = None,
    signer: KeyPair | None = None,
) -> Block:
    """A block on `parent` (default: the head) sealed by `key`, valid unless told otherwise.

    Proof of work headers get a nonce that meets their declared difficulty."""
    parent = parent or ledger.head
    header = Header(
        height=parent.height + 1,
        prev=parent.hash,
        root=record_root([r.id for r in records]) if root is None else root,
        time=max(parent.time + 1_000, ledger.clock()) if time is None else time,
        difficulty=(
            expected_difficulty(ledger.genesis, parent, key.public_hex, ledger.ancestor)
            if difficulty is None
            else difficulty
        ),
        nonce=0,
        sealer=key.public_hex,
    )
    if ledger.genesis.consensus.mode == "pow":
        found = search_nonce(header)
        assert found is not None
        header = found
    return seal(header, records, signer or key)


def refused(ledger: Ledger, block: Block, reason: Reason, now: int | None = None) -> Rejected:
    """Add `block`, expect `reason`, and check the node's head and state did not move."""
    head, digest = ledger.head.hash, ledger.state.digest()
    with pytest.raises(Rejected) as info:
        ledger.add_block(block, now=now)
    assert info.value.reason == reason, info.value
    assert (ledger.head.hash, ledger.state.digest()) == (head, digest)
    return info.value


def pow_town() -> tuple[Community, Ledger]:
    c = Community(mode="pow")
    ledger = c.node()
    c.seal(ledger, c.topup(c.key("bob"), 1_000_000))
    return c, ledger


def poa_town(sealers: int = 3) -> tuple[Community, Ledger]:
    # The first rules: these tests forge rival blocks and reorganise at will, which the
    # latest rules' finality and equivocation checks refuse (tests/attacks/test_history.py).
    c = Community(mode="poa", sealers=sealers, rules=FIRST_RULES)
    return c, c.node()


def in_turn_key(c: Community, ledger: Ledger) -> KeyPair:
    return next(k for k in c.sealers if ledger.in_turn(k))


# --- proof of work ---------------------------------------------------------------------------


def test_a_header_whose_nonce_was_changed_fails_its_proof_of_work() -> None:
    c, ledger = pow_town()
    key = c.sealers[0]
    good = forge(ledger, key, (c.topup(c.key("carol"), 5),))
    assert leading_zero_bits(bytes.fromhex(good.hash)) >= good.header.difficulty
    nonce = good.header.nonce + 1
    while leading_zero_bits(bytes.fromhex(replace(good.header, nonce=nonce).hash)) >= (
        good.header.difficulty
    ):
        nonce += 1
    tampered = seal(replace(good.header, nonce=nonce), good.records, key)
    refused(ledger, tampered, Reason.BAD_PROOF)
    # The untouched block is still fine.
    assert ledger.add_block(good).status == "connected"


def test_a_header_declaring_another_difficulty_is_refused() -> None:
    c, ledger = pow_town()
    expected = expected_difficulty(c.genesis, ledger.head, c.sealers[0].public_hex, ledger.ancestor)
    for bits in (expected - 1, expected + 1):
        block = forge(ledger, c.sealers[0], difficulty=bits)
        error = refused(ledger, block, Reason.BAD_DIFFICULTY)
        assert f"expected {expected}" in error.message


def seal_blocks(c: Community, ledger: Ledger, count: int, interval_ms: int) -> None:
    for _ in range(count):
        c.now += interval_ms - 1_000  # Community.seal adds 1 s itself
        c.seal(ledger)


def test_blocks_sealed_faster_than_the_interval_raise_the_difficulty_at_the_retarget() -> None:
    c = Community(mode="pow", initial_bits=4, retarget_window=8, block_interval_ms=5_000)
    c.now = c.genesis.time  # the first window is measured from genesis
    ledger = c.node()
    seal_blocks(c, ledger, 7, interval_ms=1_000)  # 5 times faster than the 5 s interval
    assert [b.header.difficulty for b in ledger.iter_main()] == [4] * 7
    # At height 8 the old difficulty is no longer acceptable.
    c.now += 1_000
    refused(ledger, forge(ledger, c.sealers[0], difficulty=4, time=c.now), Reason.BAD_DIFFICULTY)
    seal_blocks(c, ledger, 1, interval_ms=1_000)
    assert ledger.head.height == 8
    assert ledger.head.difficulty == 5
    assert leading_zero_bits(bytes.fromhex(ledger.head.hash)) >= 5
    # Between retargets the difficulty holds.
    seal_blocks(c, ledger, 3, interval_ms=1_000)
    assert ledger.head.difficulty == 5


def test_blocks_sealed_slower_than_the_interval_lower_the_difficulty_at_the_retarget() -> None:
    c = Community(mode="pow", initial_bits=4, retarget_window=8, block_interval_ms=5_000)
    c.now = c.genesis.time  # the first window is measured from genesis
    ledger = c.node()
    seal_blocks(c, ledger, 8, interval_ms=20_000)  # 4 times slower
    assert [b.header.difficulty for b in ledger.iter_main()] == [4] * 7 + [3]


def test_blocks_at_the_intended_pace_keep_the_difficulty() -> None:
    c = Community(mode="pow", initial_bits=4, retarget_window=8, block_interval_ms=5_000)
    c.now = c.genesis.time  # the first window is measured from genesis
    ledger = c.node()
    seal_blocks(c, ledger, 9, interval_ms=5_000)
    assert {b.header.difficulty for b in ledger.iter_main()} == {4}


# --- header and body checks ------------------------------------------------------------------


def test_a_block_whose_parent_is_unknown_is_kept_and_connects_when_the_parent_arrives() -> None:
    c, source = pow_town()
    first = c.seal(source, c.topup(c.key("carol"), 10))
    second = c.seal(source, c.topup(c.key("dave"), 20))
    base = source.block_at(1)
    assert base is not None
    node = c.node()
    assert node.add_block(base).status == "connected"
    result = node.add_block(second)
    assert (result.status, result.missing_parent) == ("orphan", first.hash)
    assert node.head.hash == base.hash
    assert node.add_block(first).status == "connected"
    # The orphan was adopted without being sent again.
    assert node.head.hash == second.hash == source.head.hash
    assert node.state.digest() == source.state.digest()


def test_a_block_whose_records_do_not_match_the_root_is_refused() -> None:
    c, ledger = pow_town()
    records = (c.topup(c.key("carol"), 5), c.topup(c.key("dave"), 6))
    swapped = forge(ledger, c.sealers[0], records, root=record_root([records[1].id, records[0].id]))
    refused(ledger, swapped, Reason.BAD_RECORD_ROOT)
    empty_root = forge(ledger, c.sealers[0], records, root=record_root([]))
    refused(ledger, empty_root, Reason.BAD_RECORD_ROOT)


def test_a_block_from_too_far_ahead_is_refused_until_its_time_comes() -> None:
    c, ledger = pow_town()
    limit = c.genesis.consensus.max_future_ms
    early = forge(ledger, c.sealers[0], time=c.now + limit + 1)
    refused(ledger, early, Reason.TIME_TOO_FAR_AHEAD)
    # Not marked invalid: the same block is welcome once the clock has caught up.
    c.now += 1
    assert ledger.add_block(early).status == "connected"


def test_a_block_older_than_its_parent_is_refused() -> None:
    c, ledger = pow_town()
    refused(
        ledger, forge(ledger, c.sealers[0], time=ledger.head.time - 1), Reason.TIME_BEFORE_PARENT
    )
    # The same time as the parent is fine.
    same = forge(ledger, c.sealers[0], time=ledger.head.time)
    assert ledger.add_block(same).status == "connected"


def test_a_block_with_more_records_than_the_limit_is_refused() -> None:
    c = Community(mode="poa", max_block_records=3)
    ledger = c.node()
    records = tuple(c.topup(c.key(f"user-{i}"), 10) for i in range(4))
    refused(ledger, forge(ledger, c.sealers[0], records), Reason.OVERSIZE)
    assert ledger.add_block(forge(ledger, c.sealers[0], records[:3])).status == "connected"
    # A node never seals more than the limit either.
    for record in records[3:] + tuple(c.topup(c.key(f"more-{i}"), 1) for i in range(5)):
        ledger.submit(record)
    built = ledger.build_block(c.sealers[0], now=c.now + 5_000)
    assert built is not None
    assert len(built.records) == 3


def test_a_block_sealed_by_a_key_not_named_in_genesis_is_refused() -> None:
    c, ledger = poa_town(sealers=3)
    stranger = c.key("mallory")
    refused(ledger, forge(ledger, stranger, difficulty=2), Reason.WRONG_SEALER)
    assert ledger.build_block(stranger, now=c.now) is None


def test_the_same_sealer_may_not_seal_two_blocks_in_a_row() -> None:
    c, ledger = poa_town(sealers=3)
    key = in_turn_key(c, ledger)
    assert ledger.add_block(forge(ledger, key)).status == "connected"
    refused(ledger, forge(ledger, key), Reason.SEALED_TOO_RECENTLY)
    assert not ledger.can_seal(key)
    other = in_turn_key(c, ledger)
    assert ledger.add_block(forge(ledger, other)).status == "connected"
    # One block later the first sealer may seal again.
    assert ledger.add_block(forge(ledger, key)).status == "connected"


def test_after_an_out_of_turn_block_of_two_sealers_the_other_is_first_in_line() -> None:
    c, ledger = poa_town(sealers=2)
    rival = next(k for k in c.sealers if not ledger.in_turn(k))
    assert ledger.first_in_line(in_turn_key(c, ledger)) and not ledger.first_in_line(rival)
    assert ledger.add_block(forge(ledger, rival)).status == "connected"  # out of turn
    # The next block's in-turn sealer is the one that just sealed: barred, so the other is
    # expected at once rather than after an offline sealer's wait, block after block.
    assert ledger.in_turn(rival) and not ledger.can_seal(rival)
    other = next(k for k in c.sealers if k != rival)
    assert ledger.first_in_line(other) and not ledger.first_in_line(rival)
    assert ledger.add_block(forge(ledger, other)).status == "connected"
    assert ledger.first_in_line(rival) and not ledger.first_in_line(other)


def test_a_block_signed_by_another_key_than_its_sealer_is_refused() -> None:
    c, ledger = poa_town(sealers=3)
    key = in_turn_key(c, ledger)
    other = next(k for k in c.sealers if k is not key)
    refused(ledger, forge(ledger, key, signer=other), Reason.BAD_BLOCK_SIGNATURE)
    pow_c, pow_ledger = pow_town()
    forged = forge(pow_ledger, pow_c.sealers[0], signer=pow_c.key("mallory"))
    refused(pow_ledger, forged, Reason.BAD_BLOCK_SIGNATURE)


def test_a_block_carrying_a_record_with_a_bad_signature_is_refused() -> None:
    c, ledger = poa_town(sealers=1)
    record = c.topup(c.key("bob"), 10)
    wire = record.to_wire()
    wire["body"]["amount"] = 10_000
    tampered = parse_record(wire, c.community)
    refused(ledger, forge(ledger, c.sealers[0], (tampered,)), Reason.BAD_SIGNATURE)


def test_a_block_breaking_a_rule_leaves_the_state_alone_and_is_remembered_invalid() -> None:
    c, ledger = poa_town(sealers=1)
    bob, carol = c.key("bob"), c.key("carol")
    c.seal(ledger, c.topup(bob, 100))
    before = (ledger.head.hash, ledger.state.digest())
    overspend = c.sign(bob, "transfer", to=carol.account, amount=101)
    bad = forge(ledger, c.sealers[0], (c.topup(carol, 5), overspend))
    error = refused(ledger, bad, Reason.INVALID_RECORD)
    assert overspend.id[:12] in error.message
    assert Reason.INSUFFICIENT_FUNDS.value in error.message
    assert ledger.index[bad.hash].invalid
    assert (ledger.head.hash, ledger.state.digest()) == before
    assert ledger.state.account(carol.account).balance == 0
    # Sent again, it is refused at once; so is any block built on it.
    refused(ledger, bad, Reason.KNOWN_INVALID)
    child = forge(ledger, c.sealers[0], parent=ledger.index[bad.hash])
    refused(ledger, child, Reason.KNOWN_INVALID)
    # The chain goes on without it.
    c.seal(ledger, c.sign(bob, "transfer", to=carol.account, amount=100))
    assert ledger.state.account(carol.account).balance == 100


def test_a_block_recording_a_record_a_second_time_is_invalid() -> None:
    c, ledger = poa_town(sealers=1)
    topup = c.topup(c.key("bob"), 10)
    c.seal(ledger, topup)
    error = refused(ledger, forge(ledger, c.sealers[0], (topup,)), Reason.INVALID_RECORD)
    assert Reason.DUPLICATE.value in error.message
    twice = c.topup(c.key("carol"), 10)
    error = refused(ledger, forge(ledger, c.sealers[0], (twice, twice)), Reason.INVALID_RECORD)
    assert Reason.DUPLICATE.value in error.message


# --- fork choice -----------------------------------------------------------------------------


def extend(
    c: Community,
    ledger: Ledger,
    parent: IndexEntry,
    in_turn: list[bool],
    tag: str,
    strict: bool = True,
) -> list[Block]:
    """Forge a branch on `parent` (known to `ledger`) whose blocks are sealed in turn or out
    of turn as asked (when `strict`; else as asked where the turn rules allow it), each
    carrying a record unique to the branch. Adds them to `ledger`."""
    blocks: list[Block] = []
    g = c.genesis
    for i, want in enumerate(in_turn):
        height = parent.height + 1
        in_turn_hex = g.consensus.sealers[height % len(g.consensus.sealers)]
        previous = parent.sealer
        allowed = [k for k in c.sealers if k.public_hex != previous]
        wanted = [k for k in allowed if (k.public_hex == in_turn_hex) == want]
        assert wanted or not strict, "no sealer may seal that pattern here"
        key = (wanted or allowed)[0]
        c.now += 1_000
        block = forge(ledger, key, (c.topup(c.key(f"{tag}-{i}"), 1),), parent=parent, time=c.now)
        ledger.add_block(block)
        blocks.append(block)
        parent = ledger.index[block.hash]
    return blocks


def test_the_branch_with_most_work_wins_even_when_it_is_shorter() -> None:
    c, ledger = poa_town(sealers=3)
    extend(c, ledger, ledger.head, [True], "base")
    fork = ledger.head
    long_light = extend(c, ledger, fork, [False, False, False], "long")  # work 3
    assert ledger.head.hash == long_light[-1].hash
    short_heavy = extend(c, ledger, fork, [True, True], "short")  # work 4
    assert ledger.head.hash == short_heavy[-1].hash
    assert ledger.height == fork.height + 2
    assert ledger.head.work == fork.work + 4


def test_equal_work_goes_to_the_lower_hash_in_either_arrival_order() -> None:
    c, source = poa_town(sealers=3)
    extend(c, source, source.head, [True], "base")
    fork = source.head
    a = extend(c, source, fork, [True], "a")[0]
    b = extend(c, source, fork, [False, False], "b")  # out of turn twice: work 2, as a's
    assert source.index[a.hash].work == source.index[b[-1].hash].work
    lower = min(a.hash, b[-1].hash)
    base = source.block_at(1)
    assert base is not None
    for order in ([a, *b], [*b, a]):
        node = c.node()
        node.add_block(base)
        for block in order:
            node.add_block(block)
        assert node.head.hash == lower


def block_tree(seed: int) -> tuple[Community, list[Block]]:
    """A random tree of PoA blocks (several competing branches) from one community."""
    rng = random.Random(seed)
    c, source = poa_town(sealers=3)
    entries = [source.head]
    blocks: list[Block] = []
    for n in range(10):
        parent = rng.choice(entries)
        length = rng.randint(1, 3)
        pattern = [rng.random() < 0.5 for _ in range(length)]
        made = extend(c, source, parent, pattern, f"t{n}", strict=False)
        blocks.extend(made)
        entries.extend(source.index[b.hash] for b in made)
    return c, blocks


@settings(max_examples=20, deadline=None, suppress_health_check=SLOW_IS_FINE)
@given(seed=st.integers(0, 10_000), data=st.data())
def test_nodes_seeing_the_same_blocks_in_any_order_agree_on_head_and_state(
    seed: int, data: st.DataObject
) -> None:
    c, blocks = block_tree(seed)
    heads: set[str] = set()
    digests: set[str] = set()
    for _ in range(2):
        order = data.draw(st.permutations(blocks))
        node = c.node()
        results: list[BlockResult] = [node.add_block(b) for b in order]
        assert {r.status for r in results} <= {"connected", "side", "orphan"}
        assert len(node.index) == len(blocks) + 1  # every orphan found its parent
        heads.add(node.head.hash)
        digests.add(node.state.digest())
    assert len(heads) == 1
    assert len(digests) == 1
