"""A street whose trades settle and age, for the tests of the trades a home's statements
list (`trade_history.py`): on SQLite or in memory; the rules forget a settled trade a week
after its end (genesis `forget_after_ms`, `ledger/forget.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_controller.ledger import Block, KeyPair, Ledger, SqliteStore

from .support import HOUR, START, Community

DAY = 24 * HOUR
# START is 2027-01-15 at 08:00 UTC; February starts 16 days and 16 hours later.
FEBRUARY = 1_801_785_600_000
INITIAL = 10_000_000


class Street:
    """Alice sells her fuel cell's hours to Bob and Carol."""

    def __init__(self, folder: Path | None, **consensus: Any) -> None:
        c = self.c = Community(**consensus)
        self.path = None if folder is None else folder / "ledger.sqlite3"
        self.ledger = self.open()
        self.alice, self.bob, self.carol = c.key("alice"), c.key("bob"), c.key("carol")
        self.meter = c.key("meter-a")
        self.blocks: list[Block] = []
        self.seal(
            c.register("fc-a", self.alice, meter=self.meter.public_hex),
            c.topup(self.bob, INITIAL),
            c.topup(self.carol, INITIAL),
        )

    def open(self) -> Ledger:
        """The street's ledger (again, on the same file when it has one)."""
        store = None if self.path is None else SqliteStore(self.path)
        return Ledger(self.c.genesis, store=store, clock=lambda: self.c.now)

    def seal(self, *records: Any, in_turn: bool = True) -> Block:
        """A block of `records`, by the sealer in turn (or one out of turn, lighter)."""
        c, ledger = self.c, self.ledger
        for record in records:
            ledger.submit(record)
        c.now += 1_000
        key = next(k for k in c.sealers if ledger.can_seal(k) and ledger.in_turn(k) == in_turn)
        block = ledger.build_block(key, now=c.now)
        assert block is not None
        assert ledger.add_block(block).status == "connected"
        self.blocks.append(block)
        return block

    def trade(self, buyer: KeyPair, start: int, price: int = 300) -> str:
        """A 4 kW hour of the fuel cell from `start`; returns the trade's id."""
        offer = self.c.offer(self.alice, "fc-a", 4_000, price=price, start=start)
        acceptance = self.c.accept(buyer, offer, 4_000)
        self.seal(offer, acceptance)
        return acceptance.id

    def settle(self, trade: str, start: int, delivered_wh: int) -> None:
        """The meter's reading of the trade's hour, then the seller's settlement."""
        self.c.now = max(self.c.now, start + HOUR)
        self.seal(self.c.reading(self.meter, "fc-a", start, delivered_wh))
        self.seal(self.c.sign(self.alice, "settlement", trade=trade, delivered_wh=delivered_wh))

    def later(self, ms: int) -> None:
        """Chain time moves on by `ms` (a block at its end)."""
        self.c.now += ms
        self.seal()

    def january(self) -> list[str]:
        """Bob's three settled January trades (11 kWh delivered of 12, 3,300 paid) and
        Carol's one (4 kWh, 800 paid); returns Bob's ids."""
        bob = []
        for hour, delivered in ((1, 4_000), (3, 3_000), (5, 4_000)):
            start = START + hour * HOUR
            bob.append(self.trade(self.bob, start))
            self.settle(bob[-1], start, delivered)
        start = START + 7 * HOUR
        self.settle(self.trade(self.carol, start, price=200), start, 4_000)
        return bob


def in_memory(ledger: Ledger, trade: str) -> bool:
    """Whether the trade's row is held in memory (not only on disk)."""
    return dict.__contains__(ledger.state.trades.rows, trade)  # type: ignore[arg-type]
