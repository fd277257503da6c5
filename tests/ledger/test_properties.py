"""Properties of the ledger across random sequences of valid and invalid records.

Hypothesis draws a list of operations: records of every kind with random references,
quantities (some too large), windows and fees, some signed by the wrong key or with a forged
signature, interleaved with clock jumps and block seals (so blocks have random sizes). Each
record goes through `Ledger.submit`; refusals are expected and counted. After every block the
test checks, by its own arithmetic over the state tables, that:

- money is conserved apart from registrar top-ups;
- no trade was ever created that did not fit its resource's free capacity (at every instant
  of its window) and free energy at the moment it was created;
- the capacity of a resource whose rating was never lowered is never over-committed,
  counting capacity trades at their W and energy trades at their average power;

and at the end that replaying the chain into a fresh node, and reopening the SQLite file,
give the state the node reached block by block. A second property forks the chain and checks
that a reorganisation rolls back to exactly the fork point's state and returns the records of
the losing branch to the pool.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from edge_controller.ledger import (
    FIRST_RULES,
    LATEST_RULES,
    Block,
    KeyPair,
    Ledger,
    Reason,
    Record,
    Rejected,
    SqliteStore,
    State,
)
from edge_controller.ledger import chain as chain_module
from edge_controller.ledger.rules import BlockContext, apply_block
from edge_controller.ledger.state import Trade

from .support import Community, rejected

# Drawing long operation lists is slow on a loaded machine; that is not a failure.
SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large]

MINUTE = 60_000
HOUR = 60 * MINUTE
PEOPLE = ("alice", "bob", "carol", "dave", "erin")
OWNERS = ("alice", "dave")
RESOURCES = {"fc-0": "fuel_cell", "bat-1": "battery", "pv-2": "pv", "usb-3": "usb_port"}
RESOURCE_IDS = tuple(RESOURCES)
# Offers mostly name registered resources; usb-3 is registered only if a registration says so.
OFFERED = ("fc-0", "bat-1", "pv-2", "fc-0", "bat-1", "pv-2", "fc-0", "usb-3")

OP_KINDS = (
    *("seal",) * 5,
    *("tick",) * 2,
    "topup",
    *("transfer",) * 2,
    "registration",
    "resource_update",
    *("offer",) * 6,
    *("auction",) * 2,
    *("acceptance",) * 6,
    "counter",
    "confirmation",
    "rejection",
    "cancel",
    *("bid",) * 2,
    "termination",
    *("meter_reading",) * 2,
    *("settlement",) * 2,
    "rating",
)

N = st.integers(0, 2**22)
Op = tuple[str, int, int, int, int]
OPS = st.tuples(st.sampled_from(OP_KINDS), N, N, N, st.integers(0, 99))


# --- independent arithmetic over the state -----------------------------------------------------


def money_held(state: State) -> int:
    """Every milli-unit the state accounts for: wallets, escrow and fees not yet paid out."""
    wallets = sum(a.balance + a.escrow for a in state.accounts.rows.values())
    return wallets + sum(f.amount for f in state.fees.rows.values())


def power_of(trade: Trade, state: State) -> int:
    """The W a trade holds while it runs: a capacity trade its quantity, an energy trade its
    Wh spread over the window it was agreed for (its offer's), rounded up."""
    if trade.mode == "capacity":
        return trade.quantity
    offer = state.offers.rows[trade.offer]
    hours_ms = offer.end - offer.start
    return (trade.energy_wh * 3_600_000 + hours_ms - 1) // hours_ms


def peak_load(trades: list[Trade], start: int, end: int, state: State) -> int:
    """The highest sum of power (W) of `trades` at any instant of [start, end).

    Windows are half-open, so a trade ending at t and one starting at t do not overlap."""
    instants = {start} | {t.start for t in trades if start <= t.start < end}
    return max(
        (sum(power_of(t, state) for t in trades if t.start <= i < t.end) for i in instants),
        default=0,
    )


def counts_energy(trade: Trade, capacity_wh: int) -> bool:
    """Whether a trade draws on its resource's stored energy: energy sales always, capacity
    sales when the resource stores energy (a battery, hydrogen) when the trade is made."""
    return trade.mode == "energy" or capacity_wh > 0


# Whether each trade drew on stored energy, decided from its resource as it was when the
# trade was made (a later re-registration adding or removing storage must not change it).
COUNTED_AT_CREATION: dict[str, bool] = {}


@dataclass
class View:
    """A resource as the rules must have seen it, with its trades not yet settled."""

    power_w: int
    capacity_wh: int
    available_wh: int
    open_trades: list[Trade] = field(default_factory=list)

    @property
    def committed_wh(self) -> int:
        return sum(
            t.energy_wh
            for t in self.open_trades
            if COUNTED_AT_CREATION.get(t.id, counts_energy(t, self.capacity_wh))
        )


def views(state: State) -> dict[str, View]:
    found = {
        rid: View(r.power_w, r.capacity_wh, r.available_wh)
        for rid, r in state.resources.rows.items()
    }
    for trade in state.trades.rows.values():
        if trade.status != "settled":
            found[trade.resource].open_trades.append(trade)
    return found


def check_new_trades_fit(before: dict[str, View], known: set[str], state: State) -> None:
    """Trades that appeared since `before` fit what their resource had free at that moment."""
    new: dict[str, list[Trade]] = {}
    for trade_id, trade in state.trades.rows.items():
        if trade_id not in known:
            new.setdefault(trade.resource, []).append(trade)
    for rid, trades in new.items():
        view = before[rid]
        for trade in trades:
            load = peak_load(view.open_trades + trades, trade.start, trade.end, state)
            assert load <= view.power_w, (rid, trade, load, view)
        for trade in trades:
            COUNTED_AT_CREATION[trade.id] = counts_energy(trade, view.capacity_wh)
        drawn = sum(t.energy_wh for t in trades if counts_energy(t, view.capacity_wh))
        # A sale that draws no stored energy (storage since removed) has nothing to fit.
        if drawn:
            assert drawn <= view.available_wh - view.committed_wh, (rid, trades, view)


class Shadow:
    """Applies each block record by record to a fresh state, checking every trade as it is
    created against the state just before it."""

    def __init__(self, c: Community) -> None:
        self.genesis = c.genesis
        self.state = State()
        self.recorded: set[str] = set()
        self.trades_created = 0

    def apply(self, block: Block) -> str:
        ctx = BlockContext(
            genesis=self.genesis,
            height=block.height,
            time=block.header.time,
            sealer=block.header.sealer_account,
            is_recorded=self.recorded.__contains__,
        )
        before = views(self.state)
        known = set(self.state.trades.rows)

        def step(_record: Record | None = None) -> None:
            nonlocal before, known
            check_new_trades_fit(before, known, self.state)
            self.trades_created += len(self.state.trades.rows) - len(known)
            before, known = views(self.state), set(self.state.trades.rows)

        apply_block(self.state, block.records, ctx, step)
        step()
        self.recorded.update(r.id for r in block.records)
        self.state.journal.clear()
        return self.state.digest()


# --- the random community ----------------------------------------------------------------------


class Scenario:
    """Turns drawn operations into records, submits them and seals blocks, checking the
    invariants after every block."""

    def __init__(self, c: Community, ledger: Ledger) -> None:
        self.c = c
        self.ledger = ledger
        self.people = [c.key(n) for n in PEOPLE]
        self.meters = {r: c.key(f"meter-{r}") for r in RESOURCE_IDS}
        self.keys: dict[str, KeyPair] = {
            k.account: k for k in [*self.people, *self.meters.values(), c.registrar]
        }
        self.offers: list[str] = []
        self.auctions: list[str] = []
        self.counters: list[str] = []
        self.trades: list[str] = []
        self.meter_end: dict[str, int] = {}
        self.max_power: dict[str, int] = {}
        self.lowered: set[str] = set()
        self.blocks: list[Block] = []
        self.digests: list[str] = []
        self.shadow = Shadow(c)
        self.refused: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.in_turn = True
        self.min_fee = c.genesis.consensus.min_fee

    # -- submitting ------------------------------------------------------------------------

    def submit(self, wire: Record | dict[str, Any]) -> Record | None:
        try:
            record = self.ledger.submit(wire)
        except Rejected as exc:
            self.refused[exc.reason.value] += 1
            return None
        self.accepted[record.kind] += 1
        return record

    def emit(
        self,
        key: KeyPair,
        kind: str,
        flags: int,
        wrong: KeyPair | None = None,
        **fields: Any,
    ) -> Record | None:
        """Sign and submit a record; flags 8 (mod 10) signs it with `wrong` instead,
        flags 9 forges the signature, the tens digit picks a fee around the minimum."""
        trouble = flags % 10
        if trouble == 8 and wrong is not None:
            key = wrong
        if key is not self.c.registrar:
            # Mostly the minimum; sometimes one more, or one less (too low when min_fee > 0).
            fields["fee"] = max(0, self.c.genesis.consensus.min_fee + (0, 1, -1)[flags // 10 % 3])
        record = self.c.sign(key, kind, **fields)
        if trouble == 9:
            wire = record.to_wire()
            wire["signer"] = self.other(key, flags).public_hex
            return self.submit(wire)
        return self.submit(record)

    def other(self, key: KeyPair, n: int) -> KeyPair:
        candidates = [k for k in self.people if k is not key]
        return candidates[n % len(candidates)]

    def person(self, n: int) -> KeyPair:
        return self.people[n % len(self.people)]

    def pick(self, items: list[str], n: int) -> str:
        """One of `items`, or now and then an id the ledger has never seen."""
        if not items or n % 11 == 10:
            return f"{n:064x}"[-64:]
        return items[n % len(items)]

    def live_offers(self, auctions: bool = False) -> list[str]:
        """Offers a buyer could still take: open and unexpired, or waiting in the pool."""
        state, now = self.ledger.state, self.c.now + 1_000
        live = []
        for offer_id in self.auctions if auctions else self.offers:
            offer = state.offers.get(offer_id)
            if offer_id in self.ledger.pool or (
                offer is not None and offer.status == "open" and offer.expires > now
            ):
                live.append(offer_id)
        return live

    def pick_offer(self, n: int, auctions: bool = False) -> str:
        """Mostly an offer still open, now and then any offer ever made (or none)."""
        if n % 4 == 3:
            return self.pick(self.auctions if auctions else self.offers, n // 4)
        return self.pick(self.live_offers(auctions) or self.offers, n // 4)

    def owner_of(self, resource: str) -> KeyPair:
        r = self.ledger.state.resources.get(resource)
        return self.keys.get(r.owner, self.people[0]) if r else self.people[0]

    # -- sealing ---------------------------------------------------------------------------

    def seal(self) -> Block:
        c, ledger = self.c, self.ledger
        c.now += 1_000
        keys = [k for k in c.sealers if ledger.can_seal(k) and ledger.in_turn(k) == self.in_turn]
        block = ledger.build_block(keys[0], now=c.now)
        assert block is not None
        assert ledger.add_block(block).status == "connected"
        self.after_block(block)
        return block

    def after_block(self, block: Block) -> None:
        state = self.ledger.state
        self.blocks.append(block)
        self.digests.append(state.digest())
        # Applied record by record elsewhere, the block gives the same state.
        assert self.shadow.apply(block) == self.digests[-1]
        assert money_held(state) == state.totals.issued
        for account in state.accounts.rows.values():
            assert account.balance >= 0
            assert account.escrow >= 0
        for rid, view in views(state).items():
            resource = state.resources.rows[rid]
            if view.power_w < self.max_power.get(rid, 0):
                self.lowered.add(rid)
            self.max_power[rid] = max(self.max_power.get(rid, 0), view.power_w)
            assert resource.committed_wh == view.committed_wh, (rid, resource, view)
            if rid not in self.lowered:
                for trade in view.open_trades:
                    load = peak_load(view.open_trades, trade.start, trade.end, state)
                    assert load <= view.power_w, (rid, trade, load, view)

    # -- operations ------------------------------------------------------------------------

    def setup(self) -> None:
        c = self.c
        alice, dave = self.people[0], self.people[3]
        for record in (
            c.register("fc-0", alice, meter=self.meters["fc-0"].public_hex),
            c.register(
                "bat-1",
                dave,
                kind="battery",
                power_w=5_000,
                capacity_wh=20_000,
                available_wh=12_000,
                meter=self.meters["bat-1"].public_hex,
            ),
            c.register("pv-2", alice, kind="pv", power_w=6_000, capacity_wh=0),
            *(c.topup(k, 2_000_000) for k in self.people),
            *(c.topup(k, 10_000) for k in self.meters.values()),
        ):
            assert self.submit(record) is not None
        # A few open offers, so that buyers have something to take from the first operation.
        start = c.now + HOUR
        for record in (
            c.offer(alice, "fc-0", 6_000, start=start, hours=2, fee=self.min_fee),
            c.offer(dave, "bat-1", 4_000, mode="energy", start=start, fee=self.min_fee),
            c.offer(alice, "pv-2", 3_000, start=start, fee=self.min_fee),
            # Each fits alone; taken with the ones above they would ask more power than the
            # rating (4 + 3 kW of a 5 kW battery, 6 + 5 kW of a 10 kW fuel cell).
            c.offer(dave, "bat-1", 3_000, mode="energy", start=start, fee=self.min_fee),
            c.offer(alice, "fc-0", 10_000, mode="energy", start=start, hours=2, fee=self.min_fee),
        ):
            assert self.submit(record) is not None
            self.offers.append(record.id)
        closes = c.now + 30 * MINUTE
        auction = c.offer(
            alice,
            "fc-0",
            2_000,
            start=start,
            auction={"closes": closes, "cap": 900},
            fee=self.min_fee,
        )
        assert self.submit(auction) is not None
        self.offers.append(auction.id)
        self.auctions.append(auction.id)
        self.seal()
        # The battery's 4 kWh hour is sold (4 kW of its 5 kW): more than 1 kWh of its 3 kWh
        # offer for the same hour would ask more power than its rating.
        sale = c.sign(
            self.people[1], "acceptance", offer=self.offers[1], quantity=4_000, fee=self.min_fee
        )
        assert self.submit(sale) is not None
        self.trades.append(sale.id)
        self.seal()

    def run(self, op: Op) -> None:
        kind, a, b, x, flags = op
        getattr(self, f"op_{kind}")(a, b, x, flags)

    def op_seal(self, a: int, b: int, x: int, flags: int) -> None:
        self.seal()

    def op_tick(self, a: int, b: int, x: int, flags: int) -> None:
        self.c.now += (1 + a % 180) * MINUTE

    def op_topup(self, a: int, b: int, x: int, flags: int) -> None:
        recipients = [*self.people, *self.meters.values()]
        to = recipients[a % len(recipients)]
        self.emit(
            self.c.registrar,
            "topup",
            flags,
            wrong=self.person(b),
            to=to.account,
            amount=1 + x % 3_000_000,
        )

    def op_transfer(self, a: int, b: int, x: int, flags: int) -> None:
        sender, to = self.person(a), self.other(self.person(a), b)
        balance = self.ledger.state.account(sender.account).balance
        amount = 1 + x % (balance * 5 // 4 + 1)
        self.emit(sender, "transfer", flags, to=to.account, amount=amount)

    def op_registration(self, a: int, b: int, x: int, flags: int) -> None:
        rid = RESOURCE_IDS[a % len(RESOURCE_IDS)]
        kind = RESOURCES[rid]
        # Now and then a resource gains or loses storage (capacity_wh 0 <-> > 0), which must
        # not change what its open trades hold.
        capacity = (0 if kind == "pv" else (1 + b % 40) * 1_000) if x % 7 else (b % 2) * 5_000
        extra: dict[str, Any] = {}
        if x % 3:
            extra["available_wh"] = x % (capacity * 5 // 4 + 1)
        if kind != "pv":
            extra["meter"] = self.meters[rid].public_hex
        self.emit(
            self.c.registrar,
            "registration",
            flags,
            wrong=self.person(b),
            resource=rid,
            owner=self.c.key(OWNERS[b % 2 if a % 5 == 4 else int(rid == "bat-1")]).account,
            resource_kind=kind,
            power_w=(12 - a // 7 % 13) * 1_000,
            capacity_wh=capacity,
            **extra,
        )

    def op_resource_update(self, a: int, b: int, x: int, flags: int) -> None:
        rid = RESOURCE_IDS[a % len(RESOURCE_IDS)]
        resource = self.ledger.state.resources.get(rid)
        capacity = resource.capacity_wh if resource else 10_000
        signer = self.meters[rid] if b % 2 else self.owner_of(rid)
        self.emit(
            signer,
            "resource_update",
            flags,
            wrong=self.other(self.owner_of(rid), b),
            resource=rid,
            available_wh=x % (capacity * 5 // 4 + 1),
        )

    def offer_fields(self, a: int, b: int, x: int) -> dict[str, Any]:
        now = self.c.now
        start = now + (x % 300) * MINUTE
        if (x // 300) % 4 == 3:  # a window that has already begun
            start -= HOUR
        end = start + (60 + (x // 1_200) % 180) * MINUTE
        expires = min(end, now + (10 + (x // 216_000) % 120) * MINUTE)
        if (x // 7) % 13 == 12:
            expires = now - 1
        fields: dict[str, Any] = {
            "resource": OFFERED[a % len(OFFERED)],
            "mode": "energy" if b % 2 else "capacity",
            "quantity": 1 + (b // 2) % 9_000,
            "price": 100 + (a // 4) % 500,
            "start": start,
            "end": end,
            "expires": expires,
        }
        if (a // 4_000) % 5 == 4:
            fields["to"] = [self.person(b // 5).account]
        if (b // 3) % 4 == 3:
            fields["min_quantity"] = 1 + (b // 12) % fields["quantity"]
        return fields

    def op_offer(self, a: int, b: int, x: int, flags: int) -> None:
        fields = self.offer_fields(a, b, x)
        seller = self.owner_of(fields["resource"])
        record = self.emit(seller, "offer", flags, wrong=self.other(seller, b), **fields)
        if record is not None:
            self.offers.append(record.id)

    def op_auction(self, a: int, b: int, x: int, flags: int) -> None:
        fields = self.offer_fields(a, b, x)
        fields.pop("min_quantity", None)
        closes = min(fields["expires"], self.c.now + (1 + a % 40) * MINUTE)
        fields["auction"] = {"closes": closes, "cap": fields["price"] * (1 + b % 3)}
        seller = self.owner_of(fields["resource"])
        record = self.emit(seller, "offer", flags, wrong=self.other(seller, b), **fields)
        if record is not None:
            self.offers.append(record.id)
            self.auctions.append(record.id)

    def acceptance_quantity(self, offer_id: str, x: int) -> int:
        offer = self.ledger.state.offers.get(offer_id)
        remaining = offer.remaining if offer else 5_000
        return 1 + x % (remaining * 5 // 4 + 1)

    def op_acceptance(self, a: int, b: int, x: int, flags: int) -> None:
        offer_id = self.pick_offer(a)
        buyer = self.person(b)
        seller = self.seller_of(offer_id)
        quantity = self.acceptance_quantity(offer_id, x)
        record = self.emit(
            buyer, "acceptance", flags, wrong=seller, offer=offer_id, quantity=quantity
        )
        if record is not None:
            self.trades.append(record.id)

    def op_counter(self, a: int, b: int, x: int, flags: int) -> None:
        offer_id = self.pick_offer(a)
        offer = self.ledger.state.offers.get(offer_id)
        price = max(0, (offer.price if offer else 300) - 1 - b % 200)
        record = self.emit(
            self.person(b),
            "acceptance",
            flags,
            wrong=self.seller_of(offer_id),
            offer=offer_id,
            quantity=self.acceptance_quantity(offer_id, x),
            price=price,
        )
        if record is not None:
            self.counters.append(record.id)

    def seller_of(self, offer_id: str) -> KeyPair:
        offer = self.ledger.state.offers.get(offer_id)
        return self.keys.get(offer.seller, self.people[0]) if offer else self.people[0]

    def counter_parties(self, counter_id: str) -> tuple[KeyPair, KeyPair]:
        acceptance = self.ledger.state.acceptances.get(counter_id)
        if acceptance is None:
            return self.people[0], self.people[1]
        return self.seller_of(acceptance.offer), self.keys[acceptance.buyer]

    def op_confirmation(self, a: int, b: int, x: int, flags: int) -> None:
        counter_id = self.pick(self.counters, a)
        seller, buyer = self.counter_parties(counter_id)
        record = self.emit(seller, "confirmation", flags, wrong=buyer, acceptance=counter_id)
        if record is not None:
            self.trades.append(counter_id)

    def op_rejection(self, a: int, b: int, x: int, flags: int) -> None:
        if b % 2:
            counter_id = self.pick(self.counters, a)
            seller, buyer = self.counter_parties(counter_id)
            signer = seller if x % 2 else buyer
            self.emit(signer, "rejection", flags, wrong=self.person(x), target=counter_id)
        else:
            offer_id = self.pick(self.offers, a)
            self.emit(self.person(x), "rejection", flags, target=offer_id)

    def op_cancel(self, a: int, b: int, x: int, flags: int) -> None:
        offer_id = self.pick(self.offers, a)
        seller = self.seller_of(offer_id)
        self.emit(seller, "cancel", flags, wrong=self.other(seller, b), offer=offer_id)

    def op_bid(self, a: int, b: int, x: int, flags: int) -> None:
        offer_id = self.pick_offer(a, auctions=b % 4 != 3)
        offer = self.ledger.state.offers.get(offer_id)
        floor = max(offer.price, offer.best_bid_price + 1) if offer else 100
        cap = offer.auction_cap if offer else 1_000
        record = self.emit(
            self.person(b),
            "bid",
            flags,
            wrong=self.seller_of(offer_id),
            offer=offer_id,
            price=floor + x % (cap - floor + 30) if cap >= floor else floor,
        )
        if record is not None:
            self.trades.append(record.id)

    def trade_parties(self, trade_id: str) -> tuple[KeyPair, KeyPair, Trade | None]:
        trade = self.ledger.state.trades.get(trade_id)
        if trade is None:
            return self.people[0], self.people[1], None
        return self.keys[trade.seller], self.keys[trade.buyer], trade

    def op_termination(self, a: int, b: int, x: int, flags: int) -> None:
        trade_id = self.pick(self.trades, a)
        seller, buyer, _ = self.trade_parties(trade_id)
        stranger = next(k for k in self.people if k not in (seller, buyer))
        fields: dict[str, Any] = {"trade": trade_id}
        if x % 3:
            fields["at"] = self.c.now + (x % 240) * MINUTE
        self.emit(seller if b % 2 else buyer, "termination", flags, wrong=stranger, **fields)

    def op_meter_reading(self, a: int, b: int, x: int, flags: int) -> None:
        rid = RESOURCE_IDS[a % len(RESOURCE_IDS)]
        start = self.meter_end.get(rid, self.c.now - 3 * HOUR)
        end = max(self.c.now - (b % 3) * MINUTE, start + MINUTE)
        record = self.emit(
            self.meters[rid],
            "meter_reading",
            flags,
            wrong=self.owner_of(rid),
            resource=rid,
            start=start,
            end=end,
            export_wh=x % 20_000,
            import_wh=b % 1_000,
        )
        if record is not None:
            self.meter_end[rid] = end

    def op_settlement(self, a: int, b: int, x: int, flags: int) -> None:
        trade_id = self.pick(self.trades, a)
        seller, buyer, trade = self.trade_parties(trade_id)
        energy = trade.energy_wh if trade else 1_000
        signer = self.c.registrar if b % 3 == 0 else seller if b % 3 == 1 else buyer
        stranger = next(k for k in self.people if k not in (seller, buyer))
        self.emit(
            signer,
            "settlement",
            flags,
            wrong=stranger,
            trade=trade_id,
            delivered_wh=x % (energy * 3 // 2 + 1),
        )

    def op_rating(self, a: int, b: int, x: int, flags: int) -> None:
        trade_id = self.pick(self.trades, a)
        seller, buyer, _ = self.trade_parties(trade_id)
        stranger = next(k for k in self.people if k not in (seller, buyer))
        self.emit(
            seller if b % 2 else buyer,
            "rating",
            flags,
            wrong=stranger,
            trade=trade_id,
            score=x % 11,
        )


def community(
    min_fee: int, confirmations: int, max_records: int, sealers: int = 1, rules: int = LATEST_RULES
) -> Community:
    return Community(
        mode="poa",
        sealers=sealers,
        min_fee=min_fee,
        confirmations=confirmations,
        max_block_records=max_records,
        rules=rules,
    )


def replay(c: Community, blocks: list[Block], digests: list[str]) -> Ledger:
    """Feed `blocks` to a fresh in-memory node, checking its digest after each one."""
    node = c.node()
    for block, digest in zip(blocks, digests, strict=True):
        assert node.add_block(block).status == "connected"
        assert node.state.digest() == digest
    return node


# --- the properties ----------------------------------------------------------------------------


@settings(max_examples=50, deadline=None, suppress_health_check=SLOW_IS_FINE)
@given(
    ops=st.lists(OPS, min_size=40, max_size=120),
    min_fee=st.sampled_from([0, 0, 3]),
    confirmations=st.integers(0, 3),
    max_records=st.sampled_from([4, 5_000]),
)
def test_random_records_keep_money_capacity_and_energy_and_replay_to_the_same_state(
    ops: list[Op], min_fee: int, confirmations: int, max_records: int
) -> None:
    c = community(min_fee, confirmations, max_records)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.sqlite"
        ledger = Ledger(c.genesis, store=SqliteStore(path, synchronous="OFF"), clock=lambda: c.now)
        s = Scenario(c, ledger)
        s.setup()
        for op in ops:
            s.run(op)
        s.seal()
        ledger.close()

        # Replaying the chain into a fresh node gives the same state, block by block.
        node = replay(c, s.blocks, s.digests)
        assert node.head.hash == s.blocks[-1].hash
        # Reopening the file gives the same head and state.
        reopened = Ledger(c.genesis, store=SqliteStore(path), clock=lambda: c.now)
        try:
            assert reopened.head.hash == s.blocks[-1].hash
            assert reopened.state.digest() == s.digests[-1]
        finally:
            reopened.close()

    for reason in s.refused:
        event(f"refused: {reason}")
    for kind in s.accepted:
        event(f"accepted: {kind}")
    event(f"trades created: {min(s.shadow.trades_created, 5)}+")


@settings(max_examples=30, deadline=None, suppress_health_check=SLOW_IS_FINE)
@given(
    prefix=st.lists(OPS, min_size=5, max_size=40),
    losing=st.lists(OPS, min_size=1, max_size=25),
    winning=st.lists(OPS, min_size=0, max_size=25),
    losing_blocks=st.integers(1, 4),
    min_fee=st.sampled_from([0, 3]),
)
def test_a_reorg_restores_the_fork_state_and_returns_orphaned_records_to_the_pool(
    prefix: list[Op], losing: list[Op], winning: list[Op], losing_blocks: int, min_fee: int
) -> None:
    # The first rules: a losing branch of up to four blocks is below the latest rules' final
    # height, which they never reorganise (tests/attacks/test_history.py).
    c = community(min_fee, confirmations=2, max_records=5_000, sealers=3, rules=FIRST_RULES)
    node = c.node()
    s = Scenario(c, node)
    s.setup()
    for op in prefix:
        s.run(op)
    s.seal()
    fork_digest, fork = node.state.digest(), node.head
    prefix_blocks, prefix_digests = list(s.blocks), list(s.digests)

    # A second node follows the same chain up to the fork.
    rival = replay(c, prefix_blocks, prefix_digests)
    # The first node's branch is sealed out of turn: weight 1 a block.
    s.in_turn = False
    step = max(1, len(losing) // losing_blocks)
    for i, op in enumerate(losing):
        s.run(op)
        if (i + 1) % step == 0 and node.height < fork.height + losing_blocks:
            s.seal()
    while node.height < fork.height + losing_blocks:
        s.seal()
    lost = s.blocks[len(prefix_blocks) :]
    lost_work = node.head.work - fork.work

    # The rival seals in turn (weight 2 a block) from the fork, enough to outweigh it.
    s.ledger, s.in_turn = rival, True
    s.blocks, s.digests = list(prefix_blocks), list(prefix_digests)
    s.shadow = Shadow(c)
    for block in prefix_blocks:
        s.shadow.apply(block)
    for i, op in enumerate(winning):
        s.run(op)
        if i % 3 == 2:
            s.seal()
    while rival.head.work - fork.work <= lost_work:
        s.seal()
    won = s.blocks[len(prefix_blocks) :]
    assert rival.head.work - fork.work > lost_work

    seen_at_fork: list[str] = []
    first_won = won[0].records
    real_apply_block = chain_module.apply_block

    def watching_apply_block(state: Any, records: Any, *args: Any, **kwargs: Any) -> None:
        # The moment the reorganisation starts applying the winning branch.
        if records == first_won and state is node.state:
            seen_at_fork.append(state.digest())
        real_apply_block(state, records, *args, **kwargs)

    chain_module.apply_block = watching_apply_block
    try:
        for block in won:
            node.add_block(block)
    finally:
        chain_module.apply_block = real_apply_block

    # Rolled back to exactly the fork point's state before the winning branch was applied.
    assert seen_at_fork[:1] == [fork_digest]
    assert (node.head.hash, node.state.digest()) == (rival.head.hash, rival.state.digest())
    assert money_held(node.state) == node.state.totals.issued
    # Records only the losing branch held wait in the pool again; the winner's do not.
    won_ids = {r.id for b in won for r in b.records}
    orphaned = {r.id for b in lost for r in b.records} - won_ids
    assert orphaned <= set(node.pool)
    assert not won_ids & set(node.pool)
    event(f"orphaned records: {min(len(orphaned), 5)}+")


def test_energy_sold_never_exceeds_the_available_energy_after_a_registration_adds_storage() -> None:
    c = Community()
    ledger = c.node()
    alice, bob = c.key("alice"), c.key("bob")
    c.seal(
        ledger,
        c.register("pv-2", alice, kind="pv", power_w=6_000, capacity_wh=0),
        c.topup(bob, 10_000_000),
    )
    offer = c.offer(alice, "pv-2", 3_000)  # 3 kW for an hour: no stored energy behind it
    sale = c.accept(bob, offer, 3_000)
    c.seal(ledger, offer, sale)
    # The registrar certifies a 10 kWh battery behind the inverter, full.
    c.seal(
        ledger,
        c.register(
            "pv-2", alice, kind="pv", power_w=6_000, capacity_wh=10_000, available_wh=10_000
        ),
    )
    c.seal(ledger, c.sign(bob, "termination", trade=sale.id))  # hands the 3 kW back unused
    assert ledger.state.resources.rows["pv-2"].committed_wh >= 0
    # Over three hours (4.3 kW, within the 6 kW rating) so only the energy is short.
    thirteen_kwh = c.offer(alice, "pv-2", 13_000, mode="energy", hours=3)
    rejected(ledger, thirteen_kwh, Reason.EXCEEDS_ENERGY)
