"""Spam against the ledger alone: a far sequence jump, records from keys nobody funded, one
key filling the pool. Fast, pure and beside the real-homes attacks in `test_spam.py`."""

from __future__ import annotations

import dataclasses
import json
import time
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_controller.ledger import (
    FIRST_RULES,
    Account,
    Consensus,
    Genesis,
    KeyPair,
    Ledger,
    Reason,
    Rejected,
    record_root,
    seal,
    sign_record,
)
from edge_controller.ledger.chain import OWN_SHARE_PART, POOL_PER_ACCOUNT
from edge_controller.ledger.genesis import DEFAULT_MIN_BALANCE, MAX_SEQUENCE_JUMP
from edge_controller.ledger.rules import (
    SEQUENCE_WINDOW,
    BlockContext,
    _use_sequence,
)
from tests.ledger.support import HOUR, Community, rejected

JUMPS = [2**33, 2**36, 2**53 - 1]
_MASK = (1 << SEQUENCE_WINDOW) - 1


def old_window(highest: int, window: int, seq: int) -> tuple[int, int] | str:
    """The window update as it was before the fix (a shift by the whole jump): the
    reference the new one must agree with wherever the old one could be computed."""
    if seq > highest:
        shift = seq - highest
        carried = (window << shift) | (1 << (shift - 1) if highest else 0)
        return seq, carried & _MASK
    offset = highest - 1 - seq
    if seq == highest or (offset < SEQUENCE_WINDOW and window >> offset & 1):
        return "used"
    if offset >= SEQUENCE_WINDOW:
        return "stale"
    return highest, window | (1 << offset)


def new_window(
    ctx: BlockContext, key: KeyPair, account: Account, seq: int
) -> tuple[int, int] | str:
    body = {"kind": "transfer", "seq": seq, "time": 0, "to": key.account, "amount": 1}
    record = sign_record(key, ctx.genesis.community_id, body)
    try:
        return _use_sequence(account, record, ctx)
    except Rejected as exc:
        assert exc.reason is Reason.STALE_SEQUENCE, exc
        return "used" if "is used" in exc.message else "stale"


def context(rules: int) -> BlockContext:
    genesis = Genesis("Spam Street", "SUN", 0, ("11" * 32,), Consensus(rules=rules))
    return BlockContext(genesis=genesis, height=1, time=0, sealer="")


KEY = KeyPair.from_seed(b"sequence")


@settings(max_examples=200, deadline=None)
@given(
    rules=st.sampled_from([FIRST_RULES, 2]),
    seqs=st.lists(st.integers(1, 400), min_size=1, max_size=40),
)
def test_the_window_accepts_and_refuses_exactly_what_it_did_for_any_stream_of_small_jumps(
    rules: int, seqs: list[int]
) -> None:
    ctx = context(rules)
    highest, window = 0, 0
    for seq in seqs:
        expected = old_window(highest, window, seq)
        got = new_window(ctx, KEY, Account(seq=highest, seq_window=window), seq)
        assert got == expected, (highest, bin(window), seq)
        if isinstance(got, tuple):
            highest, window = got


@settings(max_examples=300, deadline=None)
@given(
    highest=st.integers(0, 5_000),
    window=st.integers(0, _MASK),
    jump=st.integers(-200, 3 * SEQUENCE_WINDOW),
)
def test_the_window_agrees_with_the_old_shift_from_any_state(
    highest: int, window: int, jump: int
) -> None:
    seq = highest + jump
    if seq < 1:
        return
    window = window if highest else 0
    got = new_window(context(FIRST_RULES), KEY, Account(seq=highest, seq_window=window), seq)
    assert got == old_window(highest, window, seq)


def measured(call: Any) -> tuple[Any, float, int]:
    """What `call()` returns or raises, its seconds and its peak of new Python memory."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        outcome = call()
    except Rejected as exc:
        outcome = exc
    finally:
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return outcome, seconds, peak


def jumped(c: Community, ledger: Ledger, key: KeyPair, seq: int) -> Any:
    body = {"kind": "transfer", "seq": seq, "time": c.now, "to": c.key("bob").account, "amount": 1}
    return sign_record(key, c.community, body)


@pytest.mark.parametrize("jump", JUMPS)
@pytest.mark.parametrize("rules", [FIRST_RULES, 2])
def test_one_record_far_ahead_costs_nothing_measurable_and_the_latest_rules_refuse_it(
    rules: int, jump: int
) -> None:
    c = Community(rules=rules)
    ledger = c.node()
    alice = c.key("alice")
    c.seal(ledger, c.topup(alice))
    # A used sequence behind it: the old update shifted a set bit by the whole jump.
    c.seal(ledger, c.sign(alice, "transfer", to=c.key("bob").account, amount=1))
    record = jumped(c, ledger, alice, jump)
    outcome, seconds, peak = measured(lambda: ledger.submit(record))
    assert seconds < 0.5 and peak < 1_000_000, (seconds, peak)
    if rules == FIRST_RULES:
        # The first rules keep the records they accepted: it is valid, now in O(1).
        assert outcome is record
        block = c.seal(ledger)
        assert record in block.records
        assert ledger.state.account(alice.account).seq == jump
        assert ledger.state.account(alice.account).seq_window == 0
    else:
        assert isinstance(outcome, Rejected) and outcome.reason is Reason.SEQUENCE_JUMP


def test_a_jump_up_to_the_bound_is_valid_on_the_latest_rules_and_one_more_is_not() -> None:
    c = Community()
    ledger = c.node()
    alice = c.key("alice")
    c.seal(ledger, c.topup(alice))
    rejected(ledger, jumped(c, ledger, alice, MAX_SEQUENCE_JUMP + 1), Reason.SEQUENCE_JUMP)
    c.seal(ledger, jumped(c, ledger, alice, MAX_SEQUENCE_JUMP))


def test_a_block_holding_a_far_jump_is_refused_at_no_cost_on_the_latest_rules() -> None:
    c = Community()
    node = c.node()
    alice = c.key("alice")
    c.seal(node, c.topup(alice))
    record = jumped(c, node, alice, 2**53 - 1)
    c.now += 1_000
    empty = node.build_block(c.sealers[0], now=c.now)
    assert empty is not None
    header = dataclasses.replace(empty.header, root=record_root([record.id]))
    block = seal(header, (record,), c.sealers[0])
    outcome, seconds, peak = measured(lambda: node.add_block(block))
    assert isinstance(outcome, Rejected) and "sequence_jump" in outcome.message, outcome
    assert seconds < 0.5 and peak < 2_000_000, (seconds, peak)
    assert node.height == 1


# --- a minimum balance on the latest rules -------------------------------------------------


STAKE = 100  # a community that asks more than the default


def staked(**consensus: Any) -> Community:
    return Community(min_balance=STAKE, **consensus)


def request(c: Community, key: KeyPair) -> Any:
    start = c.now + HOUR
    return c.sign(
        key,
        "request",
        mode="energy",
        quantity=1_000,
        max_price=300,
        start=start,
        end=start + HOUR,
        expires=start,
    )


def test_a_key_nobody_funded_cannot_put_a_record_in_the_ledger() -> None:
    c = staked()
    ledger = c.node()
    mallory = c.key("mallory")
    c.seal(ledger, c.register("mallory/pv", mallory, kind="pv"))
    why = rejected(ledger, request(c, mallory), Reason.BELOW_MIN_BALANCE)
    assert "holds 0" in why.message
    rejected(ledger, c.offer(mallory, "mallory/pv", 1_000), Reason.BELOW_MIN_BALANCE)
    # Refused before its signature is checked: a forged one is refused the same way.
    forged = request(c, mallory).to_wire()
    forged["sig"] = "00" * 64
    rejected(ledger, forged, Reason.BELOW_MIN_BALANCE)
    c.seal(ledger, c.topup(mallory, STAKE - 1))
    rejected(ledger, request(c, mallory), Reason.BELOW_MIN_BALANCE)
    c.seal(ledger, c.topup(mallory, 1))
    c.seal(ledger, request(c, mallory))
    # A fee is spent, not held: the stake must remain beside it.
    spend = c.sign(mallory, "transfer", to=c.key("bob").account, amount=1, fee=1)
    rejected(ledger, spend, Reason.BELOW_MIN_BALANCE)


def test_registrars_meters_and_closing_records_need_no_balance() -> None:
    c = staked()
    ledger = c.node()
    seller, buyer, meter = c.key("seller"), c.key("buyer"), c.key("meter")
    c.seal(
        ledger,
        c.register("seller/fc", seller, meter=meter.public_hex),
        c.topup(buyer, 1_000_000),
    )
    # The seller holds nothing: it may not offer until funded...
    rejected(ledger, c.offer(seller, "seller/fc", 1_000), Reason.BELOW_MIN_BALANCE)
    c.seal(ledger, c.topup(seller, STAKE))
    start = c.now + 10_000
    offer = c.offer(seller, "seller/fc", 1_000, start=start, expires=c.now + 5_000)
    c.seal(ledger, offer)
    # ...and then gives its stake away: what it must close, it still closes.
    c.seal(ledger, c.sign(seller, "transfer", to=buyer.account, amount=STAKE))
    c.seal(ledger, c.accept(buyer, offer, 1_000))
    c.now += 2 * HOUR
    reading = c.sign(
        meter,
        "meter_reading",
        resource="seller/fc",
        start=start,
        end=start + HOUR,
        export_wh=1_000,
        import_wh=0,
    )
    c.seal(ledger, reading)
    trade_id = next(iter(ledger.state.trades.rows))
    c.seal(ledger, c.sign(seller, "settlement", trade=trade_id, delivered_wh=1_000))
    trade = next(iter(ledger.state.trades.rows.values()))
    assert trade.status == "settled" and trade.paid > 0
    assert ledger.state.account(meter.account).balance == 0


def test_a_community_founded_before_the_rule_keeps_its_id_and_has_no_minimum() -> None:
    c = Community(rules=FIRST_RULES, min_balance=DEFAULT_MIN_BALANCE)
    written = c.genesis.to_json()
    assert "min_balance" not in written["consensus"]
    ledger = c.node()
    ledger.submit(request(c, c.key("mallory")))
    with pytest.raises(Rejected, match="min_balance"):
        Genesis.from_json({**written, "consensus": {**written["consensus"], "min_balance": 5}})


def test_a_new_community_has_the_default_minimum_written_in_its_genesis() -> None:
    genesis = Genesis("Oak Lane", "OAK", 0, ("11" * 32,), Consensus(sealers=("22" * 32,)))
    written = json.loads(json.dumps(genesis.to_json()))
    assert written["consensus"]["min_balance"] == DEFAULT_MIN_BALANCE
    assert Genesis.from_json(written) == genesis
    # A genesis of the latest rules written before the parameter keeps its id: no minimum.
    del written["consensus"]["min_balance"]
    older = Genesis.from_json(written)
    assert older.consensus.min_balance == 0
    assert older.to_json() == written


# --- a share of the pool per account (node policy) -----------------------------------------


def test_one_key_keeps_at_most_its_share_of_a_nodes_pool() -> None:
    c = Community(min_balance=STAKE, max_block_records=5_000)
    ledger = c.node()
    trudy, alice = c.key("trudy"), c.key("alice")
    c.seal(ledger, c.topup(trudy), c.topup(alice))
    for _ in range(POOL_PER_ACCOUNT):
        ledger.submit(request(c, trudy))
    why = rejected(ledger, request(c, trudy), Reason.POOL_ACCOUNT_FULL)
    assert str(POOL_PER_ACCOUNT) in why.message
    # Another account is not held back, and a block holds at most the share.
    ledger.submit(request(c, alice))
    block = c.seal(ledger)
    assert sum(r.account == trudy.account for r in block.records) == POOL_PER_ACCOUNT
    assert any(r.account == alice.account for r in block.records)
    ledger.submit(request(c, trudy))  # room again once sealed


def test_a_home_sends_only_what_a_peer_a_block_behind_still_pools() -> None:
    # The busy hour: a home posts faster than blocks hold its records.
    c = Community(max_block_records=5_000)
    home, peer = c.node(), c.node()
    h = c.key("home")
    peer.add_block(c.seal(home, c.topup(h)))
    own = POOL_PER_ACCOUNT // OWN_SHARE_PART
    for _ in range(own):
        record = request(c, h)
        home.submit(record, own=True)
        peer.submit(record)
    # Its own node refuses the next one at once, saying why and when to try again...
    with pytest.raises(Rejected) as refused:
        home.submit(request(c, h), own=True)
    assert refused.value.reason is Reason.POOL_ACCOUNT_FULL
    assert f"at most {own}" in refused.value.message and "try again" in refused.value.message
    c._seq[h.public_hex] -= 1  # the home signs the next one with the same sequence
    # ...until a block holds them: a block the peer has not seen yet.
    sealed = c.seal(home)
    assert sum(r.account == h.account for r in sealed.records) == own
    for _ in range(own):
        record = request(c, h)
        home.submit(record, own=True)
        peer.submit(record)  # room for each: the peer counts the sealed ones as waiting too
    assert sum(r.account == h.account for r in peer.pool.values()) == POOL_PER_ACCOUNT
    peer.add_block(sealed)
    assert sum(r.account == h.account for r in peer.pool.values()) == own


def test_a_share_of_the_pool_is_also_a_quarter_of_a_blocks_bytes() -> None:
    c = Community(max_block_bytes=40_000)
    ledger = c.node()
    trudy = c.key("trudy")
    c.seal(ledger, c.topup(trudy))
    taken = 0
    while True:
        try:
            taken += ledger.submit(request(c, trudy)).size
        except Rejected as exc:
            assert exc.reason is Reason.POOL_ACCOUNT_FULL
            break
    assert taken <= 10_000 < taken + 400


def test_a_registrar_certifies_a_whole_community_at_once() -> None:
    c = Community()
    ledger = c.node()
    for i in range(POOL_PER_ACCOUNT + 10):
        ledger.submit(c.topup(c.key(f"home-{i}"), 1_000))
    assert len(ledger.pool) == POOL_PER_ACCOUNT + 10


def test_records_a_node_that_does_not_seal_can_never_see_sealed_make_room() -> None:
    c = Community()
    sealer, bystander = c.node(), c.node()
    trudy, alice = c.key("trudy"), c.key("alice")
    block = c.seal(sealer, c.topup(trudy))
    bystander.add_block(block)
    # The bystander pools records the sealer never sees...
    for _ in range(POOL_PER_ACCOUNT):
        bystander.submit(request(c, trudy))
    rejected(bystander, request(c, trudy), Reason.POOL_ACCOUNT_FULL)
    # ...and the sealer seals others with the same first 70 sequence numbers.
    c._seq[trudy.public_hex] = 0
    winning = [c.sign(trudy, "transfer", to=alice.account, amount=1) for _ in range(70)]
    bystander.add_block(c.seal(sealer, *winning))
    assert len(bystander.pool) == POOL_PER_ACCOUNT  # kept until room is needed
    c._seq[trudy.public_hex] = 300
    bystander.submit(request(c, trudy))
    assert len(bystander.pool) == POOL_PER_ACCOUNT - 70 + 1
