"""Rewriting history as a sealer, on one ledger: finality, block times and spacing, equivocation
evidence and the fork choice kept as blocks arrive (the latest rules, proof of authority).

The same attacks against real homes on a broker are in `test_history.py`."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from edge_controller.ledger import (
    FIRST_RULES,
    LATEST_RULES,
    Block,
    KeyPair,
    Ledger,
    Reason,
    Record,
    Rejected,
    sign_record,
)
from edge_controller.ledger.chain import BlockResult
from edge_controller.ledger.consensus import IndexEntry
from tests.ledger.support import HOUR, Community

from .history_support import Tip, feed, forge_chain, siblings

SPACING = 1_000  # half of the test community's 2 s block interval


def tip(entry: IndexEntry) -> Tip:
    return Tip(entry.hash, entry.height, entry.time)


def street(rules: int = LATEST_RULES, sealers: int = 3) -> Community:
    c = Community(sealers=sealers, rules=rules)
    # Two hours of history before the honest chain starts: room for a long forged chain.
    c.now += 2 * HOUR
    return c


def others(c: Community, entry: IndexEntry, count: int = 2) -> list[KeyPair]:
    """Sealers other than `entry`'s, who may seal on it."""
    return [k for k in c.sealers if k.public_hex != entry.sealer][:count]


def rotate(c: Community, ledger: Ledger, *records: Record, blocks: int = 1) -> None:
    """Seal `blocks` blocks 2 s apart (in turn when the in-turn sealer may), the first with
    `records`."""
    for i in range(blocks):
        for record in records if i == 0 else ():
            ledger.submit(record)
        c.now += 2_000
        ordered = sorted(c.sealers, key=lambda k: not ledger.in_turn(k))
        key = next(k for k in ordered if ledger.can_seal(k, now=c.now))
        block = ledger.build_block(key, now=c.now)
        assert block is not None
        assert ledger.add_block(block).status == "connected"


def payment_street(rules: int = LATEST_RULES) -> tuple[Community, Ledger, dict[str, Record]]:
    """A buyer is topped up and pays a merchant 600; eight blocks seal on top."""
    c = street(rules)
    ledger = c.node()
    buyer, merchant = c.key("buyer"), c.key("merchant")
    topup = c.topup(buyer, 1_000)
    payment = c.sign(buyer, "transfer", to=merchant.account, amount=600)
    rotate(c, ledger, topup, payment, blocks=10)
    # The double spend the attacker's chain carries instead of the payment.
    theft = sign_record(
        buyer,
        c.community,
        {"kind": "transfer", "seq": 2, "time": c.now, "to": c.key("mule").account, "amount": 1_000},
    )
    return c, ledger, {"topup": topup, "payment": payment, "theft": theft}


# --- finality -------------------------------------------------------------------------------


def test_a_block_is_final_once_a_majority_of_sealers_sealed_on_it() -> None:
    c = street()
    ledger = c.node()
    assert ledger.final_height == 0
    rotate(c, ledger, blocks=1)
    assert ledger.final_height == 0  # one sealer above genesis is not a majority of three
    rotate(c, ledger, blocks=1)
    assert ledger.final_height == 0  # block 1 has one sealer above it
    rotate(c, ledger, blocks=1)
    assert ledger.final_height == 1  # blocks 2 and 3 by two distinct sealers sit on block 1
    rotate(c, ledger, blocks=5)
    assert ledger.final_height == ledger.height - 2


def test_first_rules_know_no_final_height() -> None:
    c = street(FIRST_RULES)
    ledger = c.node()
    rotate(c, ledger, blocks=6)
    assert ledger.final_height == 0


def test_the_deepest_private_fork_is_refused_and_the_payment_stays() -> None:
    c, ledger, r = payment_street()
    merchant = c.key("merchant").account
    head, final = ledger.head.hash, ledger.final_height
    assert ledger.state.account(merchant).balance == 600
    # Two of the three sealers forge 7,501 blocks from genesis, spaced as the rules ask and
    # ending before now: far more work than the honest chain.
    started = time.perf_counter()
    count = 7_501
    start = Tip(ledger.main[0], 0, c.now - count * SPACING // 2 - 1)
    fork = forge_chain(
        c.genesis,
        c.sealers[:2],
        start,
        count,
        step_ms=SPACING // 2,
        records=(r["topup"], r["theft"]),
        carry_at=-1,
    )
    built = time.perf_counter() - started
    assert fork[-1].header.time <= c.now
    assert sum(b.header.difficulty for b in fork) > ledger.head.work
    outcomes = feed(ledger, fork, c.now)
    first = outcomes[0]
    assert isinstance(first, Rejected) and first.reason is Reason.REVERTS_FINAL, first
    # The rest never joined the tree: their parent was refused.
    assert all(isinstance(o, BlockResult) and o.status == "orphan" for o in outcomes[1:]), outcomes[
        1
    ]
    assert (ledger.head.hash, ledger.final_height) == (head, final)
    assert ledger.state.account(merchant).balance == 600
    assert fork[0].hash not in ledger.index
    print(f"forged 7,501 blocks in {built:.2f} s; refused at the first block")


def test_a_fork_that_leaves_the_final_block_in_place_still_wins_by_weight() -> None:
    c, ledger, _ = payment_street()
    final = ledger.index[ledger.main[ledger.final_height]]
    # Forking on the final block itself reverts only blocks above it: fork choice as before.
    fork = forge_chain(c.genesis, others(c, final), tip(final), 6, step_ms=SPACING)
    outcomes = feed(ledger, fork, c.now + 20_000)
    assert all(not isinstance(o, Rejected) for o in outcomes), outcomes
    assert ledger.head.hash == fork[-1].hash


def test_one_block_below_the_final_height_is_already_too_deep() -> None:
    c, ledger, _ = payment_street()
    below = ledger.index[ledger.main[ledger.final_height - 1]]
    fork = forge_chain(c.genesis, others(c, below), tip(below), 40, step_ms=SPACING)
    (first, *_) = feed(ledger, fork, c.now + 40 * SPACING)
    assert isinstance(first, Rejected) and first.reason is Reason.REVERTS_FINAL


def test_on_the_first_rules_the_same_fork_reverts_the_payment() -> None:
    """What the attack did before: the heavier forged chain wins and the payment is gone."""
    c, ledger, r = payment_street(FIRST_RULES)
    merchant = c.key("merchant").account
    fork = forge_chain(
        c.genesis,
        c.sealers[:2],
        Tip(ledger.main[0], 0, c.now),
        1_000,
        step_ms=0,  # the first rules let every block carry one time: now
        records=(r["topup"], r["theft"]),
    )
    feed(ledger, fork, c.now)
    assert ledger.head.hash == fork[-1].hash
    assert ledger.state.account(merchant).balance == 0
    assert ledger.state.account(c.key("mule").account).balance == 1_000


# --- block times ------------------------------------------------------------------------------


def test_a_fork_stamped_with_one_time_is_refused_at_its_second_block_by_a_sealer() -> None:
    c = street()
    ledger = c.node()
    fork = forge_chain(c.genesis, c.sealers[:2], tip(ledger.head), 3, step_ms=0)
    outcomes = feed(ledger, fork, c.now)
    assert not isinstance(outcomes[0], Rejected) and not isinstance(outcomes[1], Rejected)
    assert isinstance(outcomes[2], Rejected) and outcomes[2].reason is Reason.SEALED_TOO_SOON


def test_a_sealer_may_not_seal_again_before_its_spacing() -> None:
    c = street(sealers=1)
    ledger = c.node()
    key = c.sealers[0]
    rotate(c, ledger, blocks=1)
    assert not ledger.can_seal(key, now=c.now + SPACING - 1)
    assert ledger.build_block(key, now=c.now + SPACING - 1) is None
    assert ledger.can_seal(key, now=c.now + SPACING)


@pytest.mark.parametrize("path", ["block", "batch", "orphan"])
def test_a_block_from_beyond_max_future_is_refused_on_every_path_until_its_time(path: str) -> None:
    c = street()
    ledger = c.node()
    future = c.genesis.consensus.max_future_ms
    genesis = ledger.head
    parent = Tip(genesis.hash, 0, c.now)
    if path == "orphan":
        # It arrives before its parent, and is checked against the clock when it connects.
        (block,) = forge_chain(c.genesis, c.sealers[:1], tip(genesis), 1, c.now - genesis.time)
        parent = tip(IndexEntry(block.hash, "", 1, block.header.time, 2, "", 0))
    (late,) = forge_chain(c.genesis, c.sealers[1:2], parent, 1, step_ms=future + 1)
    if path == "orphan":
        assert ledger.add_block(late, now=c.now).status == "orphan"
        assert ledger.add_block(block, now=c.now).status == "connected"
    elif path == "batch":
        (outcome,) = ledger.add_blocks([late], now=c.now)
        assert isinstance(outcome, Rejected) and outcome.reason is Reason.TIME_TOO_FAR_AHEAD
    else:
        with pytest.raises(Rejected) as info:
            ledger.add_block(late, now=c.now)
        assert info.value.reason is Reason.TIME_TOO_FAR_AHEAD
    assert late.hash not in ledger.index
    # Not remembered as invalid: its time comes, it is taken.
    assert ledger.add_block(late, now=c.now + 1).status == "connected"


def test_an_offer_expired_ten_minutes_ago_cannot_be_accepted_by_back_dating_a_block() -> None:
    c = street()
    ledger = c.node()
    seller, buyer = c.key("seller"), c.key("buyer")
    rotate(c, ledger, c.register("cell", seller), c.topup(buyer), blocks=1)
    offer = c.offer(seller, "cell", 1_000, expires=c.now + 60_000, start=c.now + 60_000)
    rotate(c, ledger, offer, blocks=1)
    before_expiry = ledger.head
    # Ten minutes of heartbeats (one every 30 s, as sealers do when idle).
    for _ in range(20):
        c.now += 28_000
        rotate(c, ledger, blocks=1)
    body = {"kind": "acceptance", "seq": 1, "time": before_expiry.time, "offer": offer.id}
    late = sign_record(buyer, c.community, {**body, "quantity": 1_000})
    # Back-dated onto the block before the expiry: that chain leaves out final blocks.
    (backdated,) = forge_chain(
        c.genesis, others(c, before_expiry, 1), tip(before_expiry), 1, 1, records=(late,)
    )
    with pytest.raises(Rejected) as info:
        ledger.add_block(backdated)
    assert info.value.reason is Reason.REVERTS_FINAL
    # On the head, the block's time is the head's at least: past the expiry.
    key = next(k for k in c.sealers if ledger.can_seal(k, now=c.now + 2_000))
    on_head = forge_chain(c.genesis, [key], tip(ledger.head), 1, step_ms=1, records=(late,))
    with pytest.raises(Rejected) as info:
        ledger.add_block(on_head[0], now=c.now + 2_000)
    assert info.value.reason is Reason.INVALID_RECORD
    assert Reason.EXPIRED.value in info.value.message


# --- equivocation ----------------------------------------------------------------------------


def equivocating_street(count: int = 10) -> tuple[Community, Ledger, list[Block]]:
    """Three blocks, then `count` blocks the next in-turn sealer signs at the next height."""
    c = street()
    ledger = c.node()
    rotate(c, ledger, blocks=3)
    key = next(k for k in c.sealers if ledger.in_turn(k))
    return c, ledger, siblings(tip(ledger.head), key, 2, count, c.now + SPACING)


def test_a_second_block_of_one_sealer_at_one_height_is_dropped_and_kept_as_evidence() -> None:
    _, ledger, blocks = equivocating_street()
    assert ledger.add_block(blocks[0]).status == "connected"
    indexed = len(ledger.index)
    with pytest.raises(Rejected) as info:
        ledger.add_block(blocks[1])
    assert info.value.reason is Reason.EQUIVOCATION
    assert len(ledger.index) == indexed and ledger.block(blocks[1].hash) is None
    (evidence,) = ledger.take_evidence()
    assert evidence["first"]["header"] == blocks[0].header.to_json()
    assert evidence["second"]["header"] == blocks[1].header.to_json()
    # Once per sealer: more siblings add no more evidence.
    for block in blocks[2:10]:
        with pytest.raises(Rejected):
            ledger.add_block(block)
    assert ledger.take_evidence() == []


def test_recorded_evidence_suspends_the_sealer() -> None:
    c, ledger, blocks = equivocating_street()
    ledger.add_block(blocks[0])
    with pytest.raises(Rejected):
        ledger.add_block(blocks[1])
    (evidence,) = ledger.take_evidence()
    cheat = next(k for k in c.sealers if k.public_hex == blocks[0].header.sealer)
    report = c.sign(c.key("anyone"), "equivocation", **evidence)
    rotate(c, ledger, report, blocks=2)
    assert cheat.account in ledger.state.suspended
    assert ledger.head.sealer != cheat.public_hex
    # Again: the same sealer cannot be suspended twice.
    again = c.sign(c.key("someone"), "equivocation", **evidence)
    with pytest.raises(Rejected) as info:
        ledger.submit(again)
    assert info.value.reason is Reason.DUPLICATE
    # Its turn comes, it may not take it, and a block it seals anyway is invalid.
    c.now += 10_000
    assert not ledger.can_seal(cheat, now=c.now)
    (forged,) = forge_chain(c.genesis, [cheat], tip(ledger.head), 1, step_ms=SPACING)
    with pytest.raises(Rejected) as info:
        ledger.add_block(forged, now=c.now)
    assert Reason.SEALER_SUSPENDED.value in info.value.message
    # The others carry on.
    rotate(c, ledger, blocks=4)
    assert ledger.final_height >= ledger.height - 2


def test_evidence_that_proves_nothing_is_refused() -> None:
    c, ledger, blocks = equivocating_street()
    one = {"header": blocks[0].header.to_json(), "sig": blocks[0].sig.hex()}
    two = {"header": blocks[1].header.to_json(), "sig": blocks[1].sig.hex()}
    cheat = next(k for k in c.sealers if k.public_hex == blocks[0].header.sealer)
    honest = next(k for k in c.sealers if k is not cheat)
    (other,) = forge_chain(c.genesis, [honest], tip(ledger.head), 1, step_ms=SPACING)
    (lower,) = forge_chain(c.genesis, [cheat], tip(ledger.index[ledger.main[0]]), 1, 1)
    other_sealer = {"header": other.header.to_json(), "sig": other.sig.hex()}
    other_height = {"header": lower.header.to_json(), "sig": lower.sig.hex()}
    forged_sig = {"header": two["header"], "sig": one["sig"]}
    for first, second in (
        (one, one),
        (one, forged_sig),
        (one, other_sealer),
        (one, other_height),
    ):
        record = c.sign(c.key("liar"), "equivocation", first=first, second=second)
        with pytest.raises(Rejected) as info:
            ledger.submit(record)
        assert info.value.reason is Reason.BAD_EVIDENCE, info.value


def test_first_rules_have_no_equivocation_record() -> None:
    c = street(FIRST_RULES)
    ledger = c.node()
    rotate(c, ledger, blocks=2)
    pair = siblings(tip(ledger.head), c.sealers[0], 1, 2, c.now)
    signed = [{"header": b.header.to_json(), "sig": b.sig.hex()} for b in pair]
    record = c.sign(c.key("anyone"), "equivocation", first=signed[0], second=signed[1])
    with pytest.raises(Rejected) as info:
        ledger.submit(record)
    assert info.value.reason is Reason.MALFORMED


def test_a_sibling_others_built_on_is_kept_so_nodes_converge() -> None:
    c, ledger, blocks = equivocating_street()
    ledger.add_block(blocks[0])
    other = next(k for k in c.sealers if k.public_hex != blocks[1].header.sealer)
    child = forge_chain(
        c.genesis,
        [other],
        Tip(blocks[1].hash, blocks[1].height, blocks[1].header.time),
        1,
        step_ms=SPACING,
    )[0]
    # The child arrives first (an orphan), then the sibling it was built on: both kept.
    assert ledger.add_block(child, now=c.now + 5_000).status == "orphan"
    ledger.add_block(blocks[1], now=c.now + 5_000)
    assert blocks[1].hash in ledger.index and ledger.head.hash == child.hash
    # A third sibling is dropped even with a child.
    third_child = forge_chain(
        c.genesis,
        [other],
        Tip(blocks[2].hash, blocks[2].height, blocks[2].header.time),
        1,
        step_ms=SPACING,
    )[0]
    (third, _) = ledger.add_blocks([blocks[2], third_child], now=c.now + 5_000)
    assert isinstance(third, Rejected) and third.reason is Reason.EQUIVOCATION


def test_twenty_thousand_siblings_cost_flat_time_and_no_memory() -> None:
    _, ledger, blocks = equivocating_street(20_000)
    ledger.add_block(blocks[0])
    indexed = len(ledger.index)
    timings: list[float] = []
    reasons: dict[Reason, int] = {}
    tracemalloc.start()
    try:
        for i in range(1, len(blocks), 1_000):
            started = time.perf_counter()
            for block in blocks[i : i + 1_000]:
                try:
                    ledger.add_block(block)
                except Rejected as exc:
                    reasons[exc.reason] = reasons.get(exc.reason, 0) + 1
            timings.append(time.perf_counter() - started)
            if i == 1:
                baseline, _ = tracemalloc.get_traced_memory()
        retained, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reasons == {Reason.EQUIVOCATION: len(blocks) - 1}
    assert len(ledger.index) == indexed
    assert len(ledger.tips) <= 2
    # The last thousands cost what the first did (no scan that grows with the siblings).
    assert min(timings[-3:]) < 4 * max(timings[:3]), timings
    # Stored, 19,000 blocks would hold megabytes; dropped, they leave next to nothing.
    assert retained - baseline < 256 * 1024, retained - baseline
    per_second = (len(blocks) - 1) / sum(timings)
    print(f"{per_second:.0f} siblings/s; {retained - baseline} bytes retained after 19,000")


def test_the_fork_choice_does_not_scan_the_tips_as_blocks_arrive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = street(FIRST_RULES)  # the first rules keep siblings: thousands of tips
    ledger = c.node()
    rotate(c, ledger, blocks=2)
    key = next(k for k in c.sealers if ledger.in_turn(k))
    scans = []
    original = Ledger._scan_best

    def counted(self: Ledger) -> IndexEntry:
        scans.append(1)
        return original(self)

    monkeypatch.setattr(Ledger, "_scan_best", counted)
    feed(ledger, siblings(tip(ledger.head), key, 2, 3_000, c.now + SPACING), c.now + SPACING)
    assert len(ledger.tips) == 3_000
    rotate(c, ledger, blocks=3)
    assert scans == []
    assert ledger.head.height == 6
