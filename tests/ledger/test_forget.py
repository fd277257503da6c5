"""Rules 4: closed business leaves the state once `forget_after_ms` has passed since it
closed, on every node alike, whether it keeps its state in memory or on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_controller.bench.ledger import BenchCommunity, signed_chain
from edge_controller.ledger import (
    DEFAULT_FORGET_AFTER_MS,
    MAX_FORGET_AFTER_MS,
    THIRD_RULES,
    Consensus,
    Genesis,
    KeyPair,
    Ledger,
    Reason,
    Rejected,
    SqliteStore,
    StoredChain,
    account_trades,
)

from .support import HOUR, Community, rejected

WEEK = 7 * 24 * HOUR


@dataclass
class Business:
    """One street's closed business: what a sweep forgets."""

    alice: KeyPair
    bob: KeyPair
    meter: KeyPair
    trade: str
    offers: tuple[str, str]
    request: str
    counter: str
    closed: int  # when all of it closed

    def rows(self, ledger: Ledger) -> dict[str, bool]:
        """Which of its rows the ledger's state still holds."""
        state = ledger.state
        return {
            "trade": self.trade in state.trades,
            "offers": all(o in state.offers for o in self.offers),
            "request": self.request in state.requests,
            "counter": self.counter in state.acceptances,
            "reading": "fc-a#0" in state.readings,
        }


def _business(c: Community, ledger: Ledger) -> Business:
    alice, bob, meter = (c.key(n) for n in ("alice", "bob", "meter-a"))
    c.seal(ledger, c.register("fc-a", alice, meter=meter.public_hex), c.topup(bob, 10_000_000))
    start = c.now + HOUR
    window = {"start": start, "end": start + HOUR, "expires": start}
    request = c.sign(bob, "request", mode="capacity", quantity=4_000, max_price=400, **window)
    c.seal(ledger, request)
    offer = c.offer(alice, "fc-a", 4_000, start=start, request=request.id)
    acceptance = c.accept(bob, offer, 4_000)
    second = c.offer(alice, "fc-a", 1_000, start=start)
    counter = c.accept(bob, second, 1_000, price=250)  # a counter-offer, never answered
    c.seal(ledger, offer, acceptance, second, counter)
    c.now = start + HOUR
    c.seal(ledger, c.reading(meter, "fc-a", start, 3_000))
    c.seal(ledger, c.sign(alice, "settlement", trade=acceptance.id, delivered_wh=3_000))
    return Business(
        alice, bob, meter, acceptance.id, (offer.id, second.id), request.id, counter.id,
        closed=start + HOUR,
    )  # fmt: skip


def _node(c: Community, where: str, tmp_path: Path) -> Ledger:
    return c.node(SqliteStore(tmp_path / "chain.db") if where == "disk" else None)


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_closed_business_is_forgotten_once_its_time_has_passed(where: str, tmp_path: Path) -> None:
    c = Community(forget_after_ms=HOUR)
    ledger = _node(c, where, tmp_path)
    done = _business(c, ledger)
    balances = {k.account: ledger.state.account(k.account) for k in (done.alice, done.bob)}
    assert all(done.rows(ledger).values())

    c.now = done.closed + HOUR - 2_000  # one second short: the next block keeps it all
    c.seal(ledger)
    assert all(done.rows(ledger).values()), done.rows(ledger)
    c.seal(ledger)  # the block at exactly an hour after it closed forgets it
    kept = done.rows(ledger)
    assert kept.pop("reading") and not any(kept.values()), kept
    # A reading stays a week longer: a dispute of a week-long trade reads it back.
    c.now = done.closed + HOUR + WEEK
    c.seal(ledger)
    assert not any(done.rows(ledger).values()), done.rows(ledger)
    assert ledger.state.resource_trades.get("fc-a") is None
    # Money and energy are never forgotten: the wallets are as the settlement left them.
    for account, before in balances.items():
        assert ledger.state.account(account) == before

    # What names it is refused as naming something unknown.
    bob, alice = done.bob, done.alice
    for record, reason in [
        (c.sign(bob, "rating", trade=done.trade, score=9), Reason.UNKNOWN_TRADE),
        (c.sign(bob, "dispute", trade=done.trade, measured_wh=1), Reason.UNKNOWN_TRADE),
        (c.sign(alice, "confirmation", acceptance=done.counter), Reason.UNKNOWN_ACCEPTANCE),
        (c.sign(alice, "cancel", offer=done.offers[1]), Reason.UNKNOWN_OFFER),
        (c.offer(alice, "fc-a", 1_000, request=done.request), Reason.UNKNOWN_REQUEST),
    ]:
        rejected(ledger, record, reason)

    # The meter's older readings are gone; a new trade is metered and settled from new ones.
    start = c.now + HOUR
    offer = c.offer(done.alice, "fc-a", 2_000, start=start)
    trade = c.accept(done.bob, offer, 2_000)
    c.seal(ledger, offer, trade)
    c.now = start + HOUR
    c.seal(ledger, c.reading(done.meter, "fc-a", start, 1_500))
    too_much = c.sign(done.alice, "settlement", trade=trade.id, delivered_wh=1_600)
    rejected(ledger, too_much, Reason.EXCEEDS_METERED)
    c.seal(ledger, c.sign(done.alice, "settlement", trade=trade.id, delivered_wh=1_500))
    assert ledger.state.trades.rows[trade.id].paid == 1_500 * 300 // 1000
    assert ledger.state.meters.rows["fc-a"].count == 2 and "fc-a#1" in ledger.state.readings


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_a_trade_nobody_settled_is_settled_by_the_ledger_before_its_readings_go(
    where: str, tmp_path: Path
) -> None:
    c = Community(forget_after_ms=HOUR)
    ledger = _node(c, where, tmp_path)
    alice, bob, meter = (c.key(n) for n in ("alice", "bob", "meter-a"))
    c.seal(ledger, c.register("fc-a", alice, meter=meter.public_hex), c.topup(bob, 10_000_000))
    start = c.now + HOUR
    offer = c.offer(alice, "fc-a", 4_000, start=start)  # 4 kWh at 300: 1,200 in escrow
    trade = c.accept(bob, offer, 4_000)
    c.seal(ledger, offer, trade)
    c.now = start + HOUR
    c.seal(ledger, c.reading(meter, "fc-a", start, 3_000))
    # Neither party settles; an hour after the window the ledger does, for the meter's 3 kWh.
    c.now = start + 2 * HOUR - 2_000
    c.seal(ledger)
    assert ledger.state.trades.rows[trade.id].status == "active"
    c.seal(ledger)
    # Settled and, closed an hour ago, forgotten in the same block; the money moved.
    assert trade.id not in ledger.state.trades
    assert ledger.state.account(alice.account).balance == 900
    bob_now = ledger.state.account(bob.account)
    assert (bob_now.balance, bob_now.escrow, bob_now.energy_in_wh) == (10_000_000 - 900, 0, 3_000)
    assert "fc-a" not in ledger.state.commitments
    assert "fc-a#0" in ledger.state.readings  # a week longer
    # The home's statements still list it, as the ledger settled it.
    (kept,) = account_trades(ledger, bob.account)
    assert (kept.id, kept.status, kept.delivered_wh, kept.paid) == (trade.id, "settled", 3_000, 900)


def test_a_window_may_start_at_most_31_days_ahead_so_no_record_pins_a_row_for_years() -> None:
    c = Community()
    ledger = c.node()
    alice, bob = c.key("alice"), c.key("bob")
    c.seal(ledger, c.register("fc-a", alice), c.topup(bob, 10_000_000))
    last = c.now + 31 * 24 * HOUR  # 31 days on
    c.seal(ledger, c.offer(alice, "fc-a", 1_000, start=last))
    far = c.offer(alice, "fc-a", 1_000, start=last + 2_000 + HOUR)
    assert "31 days" in rejected(ledger, far, Reason.BAD_WINDOW).message
    window = {"start": last + 2_000 + HOUR, "end": last + 2 * HOUR, "expires": c.now + HOUR}
    request = c.sign(bob, "request", mode="energy", quantity=1, max_price=1, **window)
    rejected(ledger, request, Reason.BAD_WINDOW)
    # A community on the third rules takes it, as it always did.
    third = Community(rules=THIRD_RULES)
    old = third.node()
    third.seal(old, third.register("fc-a", third.key("alice")))
    third.seal(
        old, third.offer(third.key("alice"), "fc-a", 1_000, start=third.now + 365 * 24 * HOUR)
    )


def test_a_community_on_the_third_rules_forgets_nothing() -> None:
    c = Community(rules=THIRD_RULES)
    ledger = c.node()
    done = _business(c, ledger)
    c.now = done.closed + 30 * 24 * HOUR
    c.seal(ledger)
    assert all(done.rows(ledger).values())


def test_a_reorganisation_across_a_sweep_brings_the_forgotten_rows_back(tmp_path: Path) -> None:
    c = Community(mode="pow", finality_depth=50, forget_after_ms=HOUR)
    path = tmp_path / "chain.db"
    ledger = c.node(SqliteStore(path))
    done = _business(c, ledger)
    fork_height, fork_time = ledger.height, c.now
    c.now = done.closed + 3 * HOUR + WEEK
    c.seal(ledger)
    c.seal(ledger)
    assert not any(done.rows(ledger).values())

    # A heavier branch from before the sweep, whose blocks come sooner: nothing is due.
    rival = c.node()
    for height in range(1, fork_height + 1):
        block = ledger.block_at(height)
        assert block is not None and rival.add_block(block, now=c.now).status == "connected"
    c.now = fork_time
    branch = [c.seal(rival) for _ in range(4)]
    for block in branch:
        ledger.add_block(block, now=c.now)
    assert ledger.head.hash == branch[-1].hash
    assert all(done.rows(ledger).values()), done.rows(ledger)
    assert ledger.state.digest() == rival.state.digest()

    # Time passes on the branch too: both forget it again, and a restart agrees.
    c.now = done.closed + 3 * HOUR + WEEK
    ledger.add_block(c.seal(rival), now=c.now)
    assert not any(done.rows(ledger).values())
    assert ledger.state.digest() == rival.state.digest()
    ledger.close()
    reopened = c.node(SqliteStore(path))
    assert reopened.state.digest() == rival.state.digest()
    reopened.close()


def test_a_street_trading_for_hours_keeps_a_flat_state_on_disk_as_in_memory(
    tmp_path: Path,
) -> None:
    """The benchmark's street (a slot of trading every 15 minutes) forgetting after an
    hour: the state stops growing (but for a week of readings); memory, disk, a restart
    and `ledger verify` agree."""
    street = BenchCommunity.create(11, forget_after_ms=HOUR)
    memory = Ledger(street.genesis)
    path = tmp_path / "chain.db"
    disk = Ledger.open(path, street.genesis)
    sizes = {}
    for block in signed_chain(street, 14_000):
        for ledger in (memory, disk):
            assert ledger.add_block(block, now=block.header.time).status == "connected"
        # Readings stay a week: the rest of the state shows what an hour's window keeps.
        tables = [t for t in memory.state.tables() if t.name != "readings"]
        sizes[block.height] = sum(len(list(t.items_all())) for t in tables)
        if block.height % 10 == 0:
            assert disk.state.digest() == memory.state.digest(), block.height
    top = max(sizes)
    assert top >= 60
    # Ten hours of trading after the first two: the same rows, give or take a slot's.
    assert sizes[top] <= sizes[top // 3] * 1.1, sizes
    assert disk.state.digest() == memory.state.digest()
    disk.close()
    reopened = Ledger.open(path, street.genesis)
    assert reopened.state.digest() == memory.state.digest()
    reopened.close()
    report = StoredChain(path, street.genesis).verify()
    assert report.ok, report.as_dict()
    assert report.digest == report.stored_digest
    # A new home catching up takes blocks in batches, one commit each: the same state.
    batched = Ledger.open(tmp_path / "batched.db", street.genesis)
    blocks = [
        b.to_wire() for b in signed_chain(BenchCommunity.create(11, forget_after_ms=HOUR), 14_000)
    ]
    for first in range(0, len(blocks), 32):
        batch = blocks[first : first + 32]
        for outcome in batched.add_blocks(batch, now=batch[-1]["header"]["time"]):
            assert not isinstance(outcome, Exception), outcome
    assert batched.state.digest() == memory.state.digest()
    batched.close()


def test_the_forget_window_is_a_genesis_setting_of_the_fourth_rules() -> None:
    c = Community(forget_after_ms=2 * HOUR)
    data = c.genesis.to_json()
    assert data["consensus"]["forget_after_ms"] == 2 * HOUR
    assert Genesis.from_json(data) == c.genesis
    # The default is not written, so a genesis that keeps it keeps its id.
    default = Community().genesis.to_json()
    assert "forget_after_ms" not in default["consensus"]
    assert Genesis.from_json(default).consensus.forget_after_ms == DEFAULT_FORGET_AFTER_MS

    third = Community(rules=THIRD_RULES).genesis.to_json()
    third["consensus"]["forget_after_ms"] = HOUR
    with pytest.raises(Rejected, match="a rule of rules 4 and later"):
        Genesis.from_json(third)
    data["consensus"]["forget_after_ms"] = 60_000
    with pytest.raises(Rejected, match="forget_after_ms"):
        Genesis.from_json(data)
    with pytest.raises(Rejected, match="too soon"):
        Consensus(forget_after_ms=60_000)
    with pytest.raises(Rejected, match="ten years"):
        Consensus(forget_after_ms=MAX_FORGET_AFTER_MS + 1)
    data["consensus"]["forget_after_ms"] = MAX_FORGET_AFTER_MS + 1
    with pytest.raises(Rejected, match="forget_after_ms"):
        Genesis.from_json(data)
