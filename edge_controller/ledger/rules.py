"""Consensus rules: how each signed record changes the ledger state, or why it may not.

Pure functions over `State`: no clock, no I/O, no randomness. Given the same blocks, every
node computes the same state. Each rule that refuses a record raises `Rejected` with its
reason code; `apply_record` then leaves the state exactly as it found it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .consensus import authority_rules, check_equivocation
from .errors import Reason, Rejected
from .forget import forget_closed
from .genesis import FIRST_RULES, FOURTH_RULES, THIRD_RULES, Genesis
from .keys import Verifier, account_id
from .queries import (
    allocated_export,
    allocated_import,
    allocation_horizon,
    average_power_w,
    bidding_open,
    cost_of,
    energy_of,
    metered_export,
    minimum_bid,
    offer_of,
    peak_power,
    reading_most_wh,
)
from .records import MAX_WINDOW_MS, Record
from .sealers import apply_change, ever_sealers, ruling
from .state import (
    Acceptance,
    Account,
    AuctionIndex,
    Commitments,
    Funding,
    Member,
    MeterLog,
    MeterReading,
    Offer,
    PendingFee,
    Request,
    Resource,
    State,
    Suspension,
    Trade,
    Vouched,
    evolve,
)

# Evidence is checked once per node per record: no cache to keep.
_EVIDENCE_VERIFIER = Verifier(cache_size=0)


@dataclass
class BlockContext:
    """What a record's rules may know about the block that carries it."""

    genesis: Genesis
    height: int
    time: int
    sealer: str
    is_recorded: Callable[[str], bool] = lambda _id: False
    seen: set[str] = field(default_factory=set)
    fees: int = 0
    applied: int = 0
    # Where the block's writes start in the state's journal (`begin_block`).
    first_write: int = 0

    def __post_init__(self) -> None:
        self.registrars = frozenset(account_id(k) for k in self.genesis.registrars)

    @property
    def rules(self) -> int:
        """The rules the community runs by (see `genesis.FIRST_RULES`)."""
        return self.genesis.consensus.rules


# --- the entry point -----------------------------------------------------------------------


def apply_record(state: State, record: Record, ctx: BlockContext) -> None:
    """Apply one record whose signature was checked; raise `Rejected` and change nothing
    when a rule refuses it."""
    mark = state.mark()
    try:
        _apply(state, record, ctx)
    except Rejected:
        state.revert(mark)
        raise
    ctx.seen.add(record.id)
    ctx.applied += 1


def _apply(state: State, record: Record, ctx: BlockContext) -> None:
    body = record.body
    who = record.account
    account = state.account(who)
    seq, window = _use_sequence(account, record, ctx)
    if body["time"] > ctx.time + ctx.genesis.consensus.max_future_ms:
        raise Rejected(Reason.FROM_THE_FUTURE, "record is signed later than its block's time")
    fee = record.fee
    # Registrars hold no money of their own, so their certifications and top-ups carry no
    # minimum fee.
    if fee < ctx.genesis.consensus.min_fee and who not in ctx.registrars:
        raise Rejected(Reason.FEE_TOO_LOW, f"fee {fee} is below {ctx.genesis.consensus.min_fee}")
    if fee > account.balance:
        raise Rejected(Reason.INSUFFICIENT_FUNDS, f"{who} cannot pay the fee of {fee}")
    check_stake(state, record, ctx)
    check_standing(state, record, ctx)
    state.accounts.put(
        who, evolve(account, seq=seq, seq_window=window, balance=account.balance - fee)
    )
    _HANDLERS[body["kind"]](state, record, ctx, body)
    ctx.fees += fee


# Rules 2 on: records that close what the ledger already holds for their signer. Each is
# allowed once per trade, offer or counter-offer, so they cannot be multiplied, and a party
# that put all its money in escrow (or a seller never paid yet) must still be able to
# settle, dispute, rate, hand back, withdraw or confirm.
_CLOSING_KINDS = frozenset(
    {"settlement", "dispute", "termination", "rating", "cancel", "confirmation"}
)
# Records a resource's registered meter signs about its resource: the meter holds no money,
# and its key is certified by a registrar.
_METER_KINDS = frozenset({"meter_reading", "resource_update"})
# Evidence that a sealer signed two blocks at one height: any node that saw them may record
# it, funded or not; it cannot be made up (both sealer signatures are checked) and counts
# once per sealer, so it costs a spammer what it costs the cheat.
_EVIDENCE_KINDS = frozenset({"equivocation"})


def check_stake(state: State, record: Record, ctx: BlockContext) -> None:
    """Rules 2 on: refuse a record whose account holds less than the genesis `min_balance`
    (balance and escrow, besides its fee), so keys nobody funded cannot make the
    community carry their records. Registrars, a resource's own meter, the closing kinds
    and a sealer's equivocation evidence are exempt. Cheap: callers may ask it before
    checking the signature."""
    minimum = ctx.genesis.consensus.min_balance
    if ctx.genesis.consensus.rules < 2 or minimum <= 0:
        return
    kind = record.kind
    if record.account in ctx.registrars or kind in _CLOSING_KINDS or kind in _EVIDENCE_KINDS:
        return
    if kind in _METER_KINDS:
        resource = state.resources.get(record.body["resource"])
        if resource is not None and resource.meter == record.signer:
            return
    account = state.account(record.account)
    held = account.balance + account.escrow - record.fee
    if held < minimum:
        raise Rejected(
            Reason.BELOW_MIN_BALANCE,
            f"{record.account} holds {max(held, 0)}; its records need {minimum}",
        )


def check_standing(state: State, record: Record, ctx: BlockContext) -> None:
    """Rules 3 on: a member its registrar marked `revoked` (a lost or stolen key) signs
    nothing more; one that `left` only closes what it holds (settles, rates, cancels...)."""
    if ctx.rules < THIRD_RULES or not state.members.rows:
        return
    member = state.members.get(record.account)
    if member is None or member.status == "active":
        return
    if member.status == "revoked":
        raise Rejected(
            Reason.MEMBER_REVOKED,
            f"{member.name or record.account}'s key was revoked by the registrar at block"
            f" {member.height}; it signs nothing more",
        )
    if record.kind not in _CLOSING_KINDS:
        raise Rejected(
            Reason.MEMBER_LEFT,
            f"{member.name or record.account} left the community at block {member.height};"
            " it may only settle, dispute, rate, cancel, confirm or terminate",
        )


# A signer's records may reach the sealers out of order (relayed by different homes), so a
# sequence number below the highest one seen is still good if it is within this window and
# unused, as in IPsec's anti-replay window. Anything older, or used, is a replay.
SEQUENCE_WINDOW = 64
_WINDOW_MASK = (1 << SEQUENCE_WINDOW) - 1


def _use_sequence(account: Account, record: Record, ctx: BlockContext) -> tuple[int, int]:
    """The account's (highest sequence, window bitmap) after using `record.seq`, or raise.

    Bit i of the window is set when sequence `highest - 1 - i` has been used. Constant
    time whatever the jump: a jump past the window leaves none of the old bits in it."""
    seq, highest, window = record.seq, account.seq, account.seq_window
    if seq > highest:
        shift = seq - highest
        limit = ctx.genesis.consensus.sequence_jump_limit
        if limit is not None and shift > limit:
            raise Rejected(
                Reason.SEQUENCE_JUMP,
                f"sequence {seq} of {record.account} jumps {shift} past {highest}"
                f" (at most {limit})",
            )
        if shift > SEQUENCE_WINDOW:
            return seq, 0
        carried = (window << shift) | (1 << (shift - 1) if highest else 0)
        return seq, carried & _WINDOW_MASK
    offset = highest - 1 - seq
    if seq == highest or (offset < SEQUENCE_WINDOW and window >> offset & 1):
        if record.id in ctx.seen or ctx.is_recorded(record.id):
            raise Rejected(Reason.DUPLICATE, f"record {record.id[:12]} is already recorded")
        raise Rejected(Reason.STALE_SEQUENCE, f"sequence {record.seq} of {record.account} is used")
    if offset >= SEQUENCE_WINDOW:
        raise Rejected(
            Reason.STALE_SEQUENCE,
            f"sequence {seq} of {record.account} is too far below {highest}",
        )
    return highest, window | (1 << offset)


def sequence_spent(account: Account, seq: int) -> bool:
    """Whether `seq` can never be used again by the account: it is used, or below the
    window (a pooled record holding it will never reach a block)."""
    highest, window = account.seq, account.seq_window
    if seq > highest:
        return False
    offset = highest - 1 - seq
    return seq == highest or offset >= SEQUENCE_WINDOW or bool(window >> offset & 1)


# --- helpers -------------------------------------------------------------------------------


def _credit(state: State, who: str, amount: int = 0, escrow: int = 0) -> None:
    a = state.account(who)
    state.accounts.put(who, evolve(a, balance=a.balance + amount, escrow=a.escrow + escrow))


def _resource(state: State, resource_id: str) -> Resource:
    resource = state.resources.get(resource_id)
    if resource is None:
        raise Rejected(Reason.UNKNOWN_RESOURCE, f"resource {resource_id!r} is not registered")
    return resource


def _offer(state: State, offer_id: str) -> Offer:
    offer = state.offers.get(offer_id)
    if offer is None:
        raise Rejected(Reason.UNKNOWN_OFFER, f"offer {offer_id[:12]} is not in the ledger")
    return offer


def _trade(state: State, trade_id: str) -> Trade:
    trade = state.trades.get(trade_id)
    if trade is None:
        raise Rejected(Reason.UNKNOWN_TRADE, f"trade {trade_id[:12]} is not in the ledger")
    return trade


# Rules 4: how far ahead of its block an offer's or request's window may start. Its row
# stays in the state until the window closes (`forget.py`): without a bound, one record
# could keep a row for years.
MAX_AHEAD_MS = 31 * 24 * 3_600_000


def _check_window(start: int, end: int, expires: int, ctx: BlockContext) -> None:
    now = ctx.time
    if not start < end or end - start > MAX_WINDOW_MS:
        raise Rejected(Reason.BAD_WINDOW, "the window must end after it starts, within a week")
    if ctx.rules >= FOURTH_RULES and start > now + MAX_AHEAD_MS:
        raise Rejected(Reason.BAD_WINDOW, "the window must start within 31 days")
    if expires > end:
        raise Rejected(Reason.BAD_WINDOW, "an offer or request cannot expire after its window")
    if expires <= now:
        raise Rejected(Reason.EXPIRED, "it expired before it reached the ledger")


def _check_open(offer: Offer, now: int) -> None:
    if offer.status != "open":
        raise Rejected(Reason.OFFER_CLOSED, f"offer {offer.id[:12]} is {offer.status}")
    if now >= offer.expires:
        raise Rejected(Reason.EXPIRED, f"offer {offer.id[:12]} has expired")


def _check_addressee(offer: Offer, buyer: str) -> None:
    if buyer == offer.seller:
        raise Rejected(Reason.OWN_OFFER, "a seller cannot buy its own offer")
    if offer.to and buyer not in offer.to:
        raise Rejected(Reason.NOT_ADDRESSEE, f"offer {offer.id[:12]} is private to other homes")


def _sells_generated_energy(resource: Resource, mode: str, rules: int) -> bool:
    """Whether a sale is energy a PV inverter without storage generates over the window
    (rules 3): bounded by its rating and paid by its meter, not by energy it holds."""
    return (
        rules >= THIRD_RULES
        and mode == "energy"
        and resource.kind == "pv"
        and (resource.capacity_wh == 0)
    )


def _check_resource_can_supply(
    state: State, resource: Resource, mode: str, quantity: int, start: int, end: int, rules: int
) -> None:
    # What a resource holds comes first: an energy sale it has not the energy for is refused
    # as such, whatever its power. Energy-limited resources (battery, hydrogen) must also
    # hold the energy behind a capacity sale; a PV inverter registers no storage and is
    # limited by power alone.
    if _sells_generated_energy(resource, mode, rules):
        # Energy a PV inverter generates is known only from its signed meter readings,
        # which the rating bounds (exceeds_rating): without a meter nobody could say it
        # was delivered. The rating check below bounds its average power over the window.
        if not resource.meter:
            raise Rejected(
                Reason.NO_METER,
                f"{resource.id} has no registered meter: it can sell capacity, not energy",
            )
    elif mode == "energy" or resource.capacity_wh > 0:
        energy = energy_of(mode, quantity, start, end)
        free_wh = resource.available_wh - resource.committed_wh
        if energy > free_wh:
            raise Rejected(
                Reason.EXCEEDS_ENERGY,
                f"{resource.id} has {max(free_wh, 0)} Wh uncommitted, not {energy} Wh",
            )
    # Delivery drives an energy trade at its average power, so both modes must fit within
    # the registered rating at every instant of the window (a rating of 0 W supplies none).
    needed = quantity if mode == "capacity" else average_power_w(quantity, start, end)
    free = resource.power_w - peak_power(state, resource.id, start, end)
    if needed > free:
        asked = "" if mode == "capacity" else f" ({quantity} Wh over the window)"
        raise Rejected(
            Reason.EXCEEDS_CAPACITY,
            f"{resource.id} has {max(free, 0)} W free in that window, needs {needed} W{asked}",
        )


def _create_trade(
    state: State,
    ctx: BlockContext,
    offer: Offer,
    buyer: str,
    quantity: int,
    price: int,
    trade_id: str,
    prepaid: int = 0,
) -> Trade:
    """Bind an offer and a buyer into a trade: checks capacity, energy and funds, moves the
    buyer's money into escrow and commits the resource. `prepaid` is money the buyer already
    has in escrow for it (an auction bid)."""
    if quantity > offer.remaining:
        raise Rejected(
            Reason.EXCEEDS_OFFER, f"{quantity} asked, offer {offer.id[:12]} has {offer.remaining}"
        )
    if quantity < min(offer.min_quantity, offer.remaining):
        raise Rejected(Reason.BELOW_MINIMUM, f"offer sells at least {offer.min_quantity}")
    resource = _resource(state, offer.resource)
    _check_resource_can_supply(
        state, resource, offer.mode, quantity, offer.start, offer.end, ctx.rules
    )
    energy = energy_of(offer.mode, quantity, offer.start, offer.end)
    cost = cost_of(energy, price)
    buyer_account = state.account(buyer)
    if cost > buyer_account.balance + prepaid:
        raise Rejected(
            Reason.INSUFFICIENT_FUNDS,
            f"{buyer} has {buyer_account.balance + prepaid}, the trade costs {cost}",
        )
    _credit(state, buyer, amount=prepaid - cost, escrow=cost - prepaid)
    remaining = offer.remaining - quantity
    state.offers.put(
        offer.id, evolve(offer, remaining=remaining, status="open" if remaining else "sold")
    )
    stored = offer.mode == "energy" or resource.capacity_wh > 0
    # Generated energy is not taken from a store: it holds power (peak_power), not Wh.
    counted = (
        energy if stored and not _sells_generated_energy(resource, offer.mode, ctx.rules) else 0
    )
    state.resources.put(resource.id, evolve(resource, committed_wh=resource.committed_wh + counted))
    existing = state.commitments.get(resource.id)
    state.commitments.put(
        resource.id, Commitments((*existing.trades, trade_id) if existing else (trade_id,))
    )
    trade = Trade(
        id=trade_id,
        offer=offer.id,
        seller=offer.seller,
        buyer=buyer,
        resource=resource.id,
        mode=offer.mode,
        quantity=quantity,
        price=price,
        start=offer.start,
        end=offer.end,
        energy_wh=energy,
        committed_wh=counted,
        cost=cost,
        time=ctx.time,
    )
    state.trades.put(trade_id, trade)
    _remember_trade(state, resource.id, trade_id, ctx)
    return trade


def _release(state: State, trade: Trade, delivered_wh: int = 0) -> None:
    """Hand a trade's commitment back to its resource."""
    resource = state.resources.rows[trade.resource]
    state.resources.put(
        resource.id,
        evolve(
            resource,
            committed_wh=resource.committed_wh - trade.committed_wh,
            available_wh=max(resource.available_wh - delivered_wh, 0),
        ),
    )
    existing = state.commitments.rows[resource.id].trades
    remaining = tuple(t for t in existing if t != trade.id)
    if remaining:
        state.commitments.put(resource.id, Commitments(remaining))
    else:
        state.commitments.delete(resource.id)


def _remember_trade(state: State, resource_id: str, trade_id: str, ctx: BlockContext) -> None:
    """Add a trade to its resource's list, dropping those no unsettled trade (nor any
    trade from now on) can share a reading with any more."""
    if ctx.rules >= FOURTH_RULES and not state.resources.rows[resource_id].meter:
        return  # nothing is allocated without a meter (its trades are settled as claimed)
    index = state.resource_trades.get(resource_id)
    trades = [state.trades.rows[t] for t in (*(index.trades if index else ()), trade_id)]
    horizon = allocation_horizon(state, resource_id, trades, ctx.time, ctx.rules)
    state.resource_trades.put(
        resource_id, Commitments(tuple(t.id for t in trades if t.end > horizon))
    )


# --- one handler per record kind -----------------------------------------------------------

Handler = Callable[[State, Record, BlockContext, dict[str, Any]], None]


def _registration(state: State, record: Record, ctx: BlockContext, body: dict[str, Any]) -> None:
    if record.account not in ctx.registrars:
        raise Rejected(Reason.NOT_REGISTRAR, "only a registrar named in genesis may register")
    existing = state.resources.get(body["resource"])
    capacity = body["capacity_wh"]
    available = body.get("available_wh", existing.available_wh if existing else capacity)
    if available > capacity:
        raise Rejected(Reason.EXCEEDS_ENERGY, "available energy above the registered capacity")
    state.resources.put(
        body["resource"],
        Resource(
            id=body["resource"],
            kind=body["resource_kind"],
            owner=body["owner"],
            power_w=body["power_w"],
            capacity_wh=capacity,
            available_wh=available,
            committed_wh=existing.committed_wh if existing else 0,
            meter=body.get("meter", ""),
            location=body.get("location", ""),
            registered_at=existing.registered_at if existing else ctx.height,
        ),
    )
    _vouch(state, ctx, body["owner"])


def _resource_update(state: State, record: Record, ctx: BlockContext, body: dict[str, Any]) -> None:
    resource = _resource(state, body["resource"])
    # Rules 3 on a registrar certifies a change too (a battery replaced, worn, refilled).
    by_registrar = ctx.rules >= THIRD_RULES and record.account in ctx.registrars
    if record.account != resource.owner and record.signer != resource.meter and not by_registrar:
        who = "owner, meter or a registrar" if ctx.rules >= THIRD_RULES else "owner or meter"
        raise Rejected(Reason.NOT_OWNER, f"only the {who} of {resource.id} may update it")
    if body["available_wh"] > resource.capacity_wh:
        raise Rejected(Reason.EXCEEDS_ENERGY, "available energy above the registered capacity")
    state.resources.put(resource.id, evolve(resource, available_wh=body["available_wh"]))


def _offer_record(state: State, record: Record, ctx: BlockContext, body: dict[str, Any]) -> None:
    resource = _resource(state, body["resource"])
    if record.account != resource.owner:
        raise Rejected(Reason.NOT_OWNER, f"{record.account} does not own {resource.id}")
    start, end, expires, quantity = body["start"], body["end"], body["expires"], body["quantity"]
    _check_window(start, end, expires, ctx)
    min_quantity = body.get("min_quantity", 1)
    if min_quantity > quantity:
        raise Rejected(Reason.MALFORMED, "min_quantity is above the quantity offered")
    request = body.get("request", "")
    if request and request not in state.requests:
        raise Rejected(Reason.UNKNOWN_REQUEST, f"request {request[:12]} is not in the ledger")
    to = tuple(body.get("to", ()))
    if record.account in to:
        raise Rejected(Reason.OWN_OFFER, "an offer cannot be addressed to its seller")
    auction = body.get("auction")
    if auction is not None:
        closes, cap = auction["closes"], auction["cap"]
        if not ctx.time < closes <= expires:
            raise Rejected(Reason.BAD_WINDOW, "an auction closes after now and by the expiry")
        if cap < body["price"]:
            raise Rejected(Reason.MALFORMED, "the bid cap is below the reserve price")
    _check_resource_can_supply(state, resource, body["mode"], quantity, start, end, ctx.rules)
    state.offers.put(record.id, offer_of(record))
    if auction is not None:
        index = state.open_auctions.get("")
        state.open_auctions.put("", AuctionIndex((*(index.offers if index else ()), record.id)))


def _request(state: State, record: Record, ctx: BlockContext, body: dict[str, Any]) -> None:
    _check_window(body["start"], body["end"], body["expires"], ctx)
    state.requests.put(
        record.id,
        Request(
            id=record.id,
            buyer=record.account,
            mode=body["mode"],
            quantity=body["quantity"],
            max_price=body["max_price"],
            start=body["start"],
            end=body["end"],
            expires=body["expires"],
        ),
    )


def _acceptance(state: State, record: Record, ctx: BlockContext, body: dict[str, Any]) -> None:
    offer = _offer(state, body["offer"])
    _check_open(offer, ctx.time)
    _check_addressee(offer, record.account)
    if offer.is_auction:
        raise Rejected(Reason.AUCTION_ONLY, f"offer {offer.id[:12]} is sold by auction: bid")
    quantity = body["quantity"]
    price = body.get("price", offer.price)
    if price == offer.price:
        _create_trade(state, ctx, offer, record.account, quantity, price, record.id)
        return
    # A different price makes it a conditional acceptance: a counter-offer the seller may
    # confirm. The buyer must be able to pay it now; the money moves on confirmation.
    if quantity > offer.remaining:
        raise Rejected(Reason.EXCEEDS_OFFER, f"offer {offer.id[:12]} has {offer.remaining} left")
    cost = cost_of(energy_of(offer.mode, quantity, offer.start, offer.end), price)
    if cost > state.account(record.account).balance:
        raise Rejected(Reason.INSUFFICIENT_FUNDS, f"the counter-offer would cost {cost}")
    state.acceptances.put(
        record.id,
        Acceptance(
            id=record.id, offer=offer.id, buyer=record.account, quantity=quantity, price=price
        ),
    )


def _pending_acceptance(state: State, acceptance_id: str) -> Acceptance:
    acceptance = state.acceptances.get(acceptance_id)
    if acceptance is None:
        raise Rejected(Reason.UNKNOWN_ACCEPTANCE, f"no counter-offer {acceptance_id[:12]}")
    if acceptance.status != "pending":
        raise Rejected(Reason.NOT_PENDING, f"counter-offer is already {acceptance.status}")
    return acceptance


def _confirmation(state: State, record: Record, ctx: BlockContext, body: dict[str, Any]) -> None:
    acceptance = _pending_acceptance(state, body["acceptance"])
    offer = _offer(state, acceptance.offer)
    if record.account != offer.seller:
        raise Rejected(Reason.NOT_OWNER, "only the seller may confirm a counter-offer")
    _check_open(offer, ctx.time)
    _create_trade(
        state, ctx, offer, acceptance.buyer, acceptance.quantity, acceptance.price, acceptance.id
    )
    state.acceptances.put(acceptance.id, evolve(acceptance, status="confirmed"))


def _rejection(state: State, record: Record, ctx: BlockContext, body: dict[str, Any]) -> None:
    target = body["target"]
    if target in state.acceptances:
        acceptance = _pending_acceptance(state, target)
        offer = _offer(state, acceptance.offer)
        if record.account not in (offer.seller, acceptance.buyer):
            raise Rejected(Reason.NOT_A_PARTY, "only the seller or the buyer may reject it")
        state.acceptances.put(target, evolve(acceptance, status="rejected"))
        return
    offer = _offer(state, target)
    # A buyer's rejection of an offer is kept as a signal to the seller; the offer stays open
    # for everyone else.
    if record.account == offer.seller:
        raise Rejected(Reason.OWN_OFFER, "a seller withdraws its offer with cancel")


def _cancel(state: State, record: Record, ctx: BlockContext, body: dict[str, Any]) -> None:
    offer = _offer(state, body["offer"])
    if record.account != offer.seller:
        raise Rejected(Reason.NOT_OWNER, "only the seller may cancel an offer")
    if offer.status != "open":
        raise Rejected(Reason.OFFER_CLOSED, f"offer {offer.id[:12]} is {offer.status}")
    if offer.is_auction:
        if offer.best_bidder:
            _credit(state, offer.best_bidder, offer.best_bid_cost, -offer.best_bid_cost)
        _drop_auction(state, offer.id)
    state.offers.put(offer.id, evolve(offer, status="cancelled"))


def _bid(state: State, record: Record, ctx: BlockContext, body: dict[str, Any]) -> None:
    offer = _offer(state, body["offer"])
    if not offer.is_auction:
        raise Rejected(Reason.NOT_AN_AUCTION, f"offer {offer.id[:12]} is not an auction")
    if not bidding_open(offer, ctx.time):
        raise Rejected(Reason.AUCTION_CLOSED, f"auction {offer.id[:12]} has closed")
    _check_addressee(offer, record.account)
    price = body["price"]
    if price > offer.auction_cap:
        raise Rejected(Reason.BID_ABOVE_CAP, f"bids are capped at {offer.auction_cap}")
    floor = minimum_bid(offer)
    if price < floor:
        raise Rejected(Reason.BID_TOO_LOW, f"the next bid must be at least {floor}")
    if offer.best_bidder:
        _credit(state, offer.best_bidder, offer.best_bid_cost, -offer.best_bid_cost)
    cost = cost_of(energy_of(offer.mode, offer.remaining, offer.start, offer.end), price)
    bidder = state.account(record.account)
    if cost > bidder.balance:
        raise Rejected(Reason.INSUFFICIENT_FUNDS, f"the bid locks {cost}, balance {bidder.balance}")
    _credit(state, record.account, -cost, cost)
    state.offers.put(
        offer.id,
        evolve(
            offer,
            best_bid=record.id,
            best_bidder=record.account,
            best_bid_price=price,
            best_bid_cost=cost,
        ),
    )


def _drop_auction(state: State, offer_id: str) -> None:
    index = state.open_auctions.rows[""]
    remaining = tuple(o for o in index.offers if o != offer_id)
    if remaining:
        state.open_auctions.put("", AuctionIndex(remaining))
    else:
        state.open_auctions.delete("")


def close_auctions(state: State, ctx: BlockContext) -> None:
    """Close every auction due by this block's time: the highest bid (the earliest among
    equals, since a later equal bid is refused) becomes a trade."""
    index = state.open_auctions.get("")
    if index is None:
        return
    for offer_id in index.offers:
        offer = state.offers.rows[offer_id]
        if ctx.time < offer.auction_closes:
            continue
        _drop_auction(state, offer_id)
        if not offer.best_bidder:
            state.offers.put(offer_id, evolve(offer, status="closed"))
            continue
        mark = state.mark()
        try:
            _create_trade(
                state,
                ctx,
                offer,
                offer.best_bidder,
                offer.remaining,
                offer.best_bid_price,
                offer.best_bid,
                prepaid=offer.best_bid_cost,
            )
        except Rejected:
            # The resource can no longer supply it: the bidder gets the money back.
            state.revert(mark)
            _credit(state, offer.best_bidder, offer.best_bid_cost, -offer.best_bid_cost)
            state.offers.put(offer_id, evolve(offer, status="failed"))


def _party(trade: Trade, who: str) -> None:
    if who not in (trade.buyer, trade.seller):
        raise Rejected(Reason.NOT_A_PARTY, f"{who} is not a party of trade {trade.id[:12]}")


def _termination(state: State, record: Record, ctx: BlockContext, body: dict[str, Any]) -> None:
    trade = _trade(state, body["trade"])
    _party(trade, record.account)
    if trade.status != "active":
        raise Rejected(Reason.TRADE_CLOSED, f"trade {trade.id[:12]} is {trade.status}")
    at = body.get("at", ctx.time)
    if at < ctx.time:
        raise Rejected(Reason.BAD_WINDOW, "capacity cannot be handed back in the past")
    end = min(max(at, trade.start), trade.end)
    energy = trade.energy_wh
    committed = trade.committed_wh
    if trade.mode == "capacity":
        energy = energy_of(trade.mode, trade.quantity, trade.start, end)
        if committed:
            # The energy behind the capacity handed back is free again from now on.
            resource = state.resources.rows[trade.resource]
            state.resources.put(
                resource.id,
                evolve(resource, committed_wh=resource.committed_wh - (committed - energy)),
            )
            committed = energy
    state.trades.put(
        trade.id,
        evolve(trade, end=end, energy_wh=energy, committed_wh=committed, status="terminated"),
    )


def _meter_reading(state: State, record: Record, ctx: BlockContext, body: dict[str, Any]) -> None:
    resource = _resource(state, body["resource"])
    if not resource.meter or record.signer != resource.meter:
        raise Rejected(Reason.WRONG_SIGNER, f"not the registered meter of {resource.id}")
    start, end = body["start"], body["end"]
    if not start < end:
        raise Rejected(Reason.BAD_WINDOW, "a reading's period must end after it starts")
    if end > ctx.time + ctx.genesis.consensus.max_future_ms:
        raise Rejected(Reason.FROM_THE_FUTURE, "a reading cannot cover time not yet passed")
    log = state.meters.get(resource.id) or MeterLog()
    if start < log.last_end:
        raise Rejected(Reason.METER_OVERLAP, "the period overlaps an earlier reading")
    if ctx.rules > FIRST_RULES:
        _check_within_rating(resource, start, end, body["export_wh"], body["import_wh"])
    state.readings.put(
        f"{resource.id}#{log.count}",
        MeterReading(start, end, body["export_wh"], body["import_wh"], log.export_wh),
    )
    state.meters.put(
        resource.id,
        MeterLog(
            count=log.count + 1,
            last_end=end,
            export_wh=log.export_wh + body["export_wh"],
            import_wh=log.import_wh + body["import_wh"],
        ),
    )


def _check_within_rating(
    resource: Resource, start: int, end: int, export_wh: int, import_wh: int
) -> None:
    """A reading may not show more energy than the resource's rating delivers over its
    period (`reading_most_wh`)."""
    most = reading_most_wh(resource, start, end)
    if most is None:
        return
    for direction, wh in (("export", export_wh), ("import", import_wh)):
        if wh > most:
            raise Rejected(
                Reason.EXCEEDS_RATING,
                f"{wh} Wh of {direction} in {end - start} ms; {resource.id}'s {resource.power_w} W"
                f" give at most {most} Wh",
            )


# Latest rules: a buyer settles a metered trade once its meter has read past the window's
# end, or this long after it ended when the meter went silent.
SILENT_METER_MS = 3_600_000


def _settlement(state: State, record: Record, ctx: BlockContext, body: dict[str, Any]) -> None:
    trade = _trade(state, body["trade"])
    if record.account not in ctx.registrars:
        _party(trade, record.account)
    if trade.status == "settled":
        raise Rejected(Reason.ALREADY_SETTLED, f"trade {trade.id[:12]} is already settled")
    if ctx.time < trade.end and trade.status == "active":
        raise Rejected(Reason.NOT_DUE, f"trade {trade.id[:12]} runs until {trade.end}")
    delivered = body["delivered_wh"]
    resource = state.resources.rows[trade.resource]
    if resource.meter:
        # The ledger shares the metered export among the resource's trades itself, so no
        # two trades can be paid for the same energy.
        allocated = allocated_export(state, trade, rules=ctx.rules)
        if ctx.rules > FIRST_RULES and record.account == trade.buyer:
            _check_buyer_settles_the_meter(state, trade, delivered, allocated, ctx.time)
        metered = metered_export(state, resource.id, trade.start, trade.end)
        # What is paid must be the trade's own share; an over-delivery beyond the agreement
        # may be claimed (and is recorded) as far as the window's readings show it.
        if min(delivered, trade.energy_wh) > allocated or delivered > metered:
            raise Rejected(
                Reason.EXCEEDS_METERED,
                f"{delivered} Wh claimed; the readings give this trade {allocated} Wh"
                f" ({metered} Wh in its window)",
            )
    _pay(state, trade, delivered)


def _pay(state: State, trade: Trade, delivered: int) -> None:
    """Settle `trade` for `delivered` Wh: the seller is paid for what was delivered up to
    the agreement (and a dispute), the buyer gets the rest of the escrow back."""
    paid_wh = min(delivered, trade.energy_wh)
    if trade.disputed_wh >= 0:
        # The buyer measured less than the seller claims: pay what both agree was delivered.
        paid_wh = min(paid_wh, trade.disputed_wh)
    paid = min(cost_of(paid_wh, trade.price), trade.cost)
    refund = trade.cost - paid
    _credit(state, trade.buyer, amount=refund, escrow=-trade.cost)
    _credit(state, trade.seller, amount=paid)
    buyer = state.account(trade.buyer)
    state.accounts.put(trade.buyer, evolve(buyer, energy_in_wh=buyer.energy_in_wh + paid_wh))
    seller = state.account(trade.seller)
    state.accounts.put(trade.seller, evolve(seller, energy_out_wh=seller.energy_out_wh + paid_wh))
    _release(state, trade, delivered_wh=paid_wh)
    state.trades.put(
        trade.id,
        evolve(trade, status="settled", delivered_wh=delivered, paid=paid, refunded=refund),
    )


def settle_overdue(state: State, trade: Trade, ctx: BlockContext) -> None:
    """Rules 4: a trade nobody settled within `forget_after_ms` of its end is settled by
    the ledger before its readings go: for what the resource's meter delivered to it (as
    its buyer would have to pay), or all that was agreed when the resource has no meter
    (as its seller could claim); a dispute caps it as it caps any settlement."""
    resource = state.resources.rows[trade.resource]
    if resource.meter:
        delivered = allocated_export(state, trade, rules=ctx.rules)
    else:
        delivered = trade.energy_wh
    _pay(state, trade, delivered)


def _check_buyer_settles_the_meter(
    state: State, trade: Trade, delivered: int, allocated: int, now: int
) -> None:
    """Latest rules: the buyer pays at least what the seller's meter delivered to the trade
    (a buyer who measured less disputes first); it waits for the meter's last reading."""
    log = state.meters.get(trade.resource)
    if (log.last_end if log else 0) < trade.end and now < trade.end + SILENT_METER_MS:
        raise Rejected(
            Reason.NOT_DUE,
            f"the meter of {trade.resource} has not read to the end of trade {trade.id[:12]}",
        )
    owed = min(allocated, trade.energy_wh)
    if delivered < owed:
        raise Rejected(
            Reason.BELOW_METERED,
            f"the buyer settles {delivered} Wh; the readings give this trade {owed} Wh"
            " (dispute to pay less)",
        )


def _buyer_meters(state: State, buyer: str) -> list[Resource]:
    return [
        r
        for r in state.resources.rows.values()
        if r.owner == buyer and r.kind == "meter" and r.meter
    ]


def _check_dispute_is_metered(state: State, trade: Trade, measured: int, rules: int) -> None:
    """Latest rules: a dispute stands on the buyer's own registered meter, once it has read
    past the trade's window, and claims no less than it shows for the trade."""
    meters = _buyer_meters(state, trade.buyer)
    if not meters:
        raise Rejected(Reason.NO_METER, f"{trade.buyer} has no registered meter to dispute with")
    for meter in meters:
        log = state.meters.get(meter.id)
        if (log.last_end if log else 0) < trade.end:
            raise Rejected(Reason.NOT_DUE, f"meter {meter.id} has not read to the trade's end")
    shown = sum(allocated_import(state, m.id, trade, rules=rules) for m in meters)
    if measured < shown:
        raise Rejected(
            Reason.BELOW_METERED, f"{measured} Wh disputed; the buyer's meters show {shown} Wh"
        )


def _dispute(state: State, record: Record, ctx: BlockContext, body: dict[str, Any]) -> None:
    """The buyer's measured import disagrees with the seller's export: recorded on the trade.
    Before settlement it caps the payment; after it, it stands for the registrar to see."""
    trade = _trade(state, body["trade"])
    if record.account != trade.buyer:
        raise Rejected(Reason.NOT_A_PARTY, "only the buyer disputes a delivery")
    if trade.disputed_wh >= 0:
        raise Rejected(Reason.ALREADY_DISPUTED, f"trade {trade.id[:12]} is already disputed")
    if ctx.rules > FIRST_RULES:
        _check_dispute_is_metered(state, trade, body["measured_wh"], ctx.rules)
    state.trades.put(trade.id, evolve(trade, disputed_wh=body["measured_wh"]))


def _rating(state: State, record: Record, ctx: BlockContext, body: dict[str, Any]) -> None:
    trade = _trade(state, body["trade"])
    _party(trade, record.account)
    if trade.status != "settled":
        raise Rejected(Reason.NOT_DUE, "a trade is rated after it is settled")
    by_buyer = record.account == trade.buyer
    if (trade.buyer_rating if by_buyer else trade.seller_rating) >= 0:
        raise Rejected(Reason.ALREADY_RATED, "each party rates a trade once")
    score = body["score"]
    rated = trade.seller if by_buyer else trade.buyer
    if ctx.rules > FIRST_RULES:
        _check_independent(state, record.account, rated)
    account: Account = state.account(rated)
    state.accounts.put(
        rated,
        evolve(
            account, rating_sum=account.rating_sum + score, rating_count=account.rating_count + 1
        ),
    )
    if by_buyer:
        state.trades.put(trade.id, evolve(trade, buyer_rating=score))
    else:
        state.trades.put(trade.id, evolve(trade, seller_rating=score))


def _check_independent(state: State, rater: str, rated: str) -> None:
    """Latest rules against wash-rating: a rating counts only from an account a registrar
    stands behind that the rated party has never sent money to. Two table lookups."""
    if rater not in state.vouched:
        raise Rejected(
            Reason.NOT_INDEPENDENT,
            f"{rater} rates nobody: no registrar topped it up or registered a resource to it",
        )
    if f"{rated}>{rater}" in state.funding:
        raise Rejected(
            Reason.NOT_INDEPENDENT, f"{rater} was funded by {rated}, so it cannot rate it"
        )


def _vouch(state: State, ctx: BlockContext, who: str) -> None:
    if ctx.rules > FIRST_RULES and who not in state.vouched:
        state.vouched.put(who, Vouched(ctx.height))


def _topup(state: State, record: Record, ctx: BlockContext, body: dict[str, Any]) -> None:
    if record.account not in ctx.registrars:
        raise Rejected(Reason.NOT_REGISTRAR, "only a registrar may issue currency")
    _credit(state, body["to"], amount=body["amount"])
    state.add_totals(issued=body["amount"])
    _vouch(state, ctx, body["to"])


def _transfer(state: State, record: Record, ctx: BlockContext, body: dict[str, Any]) -> None:
    amount = body["amount"]
    if amount > state.account(record.account).balance:
        raise Rejected(Reason.INSUFFICIENT_FUNDS, f"{record.account} cannot send {amount}")
    _credit(state, record.account, amount=-amount)
    _credit(state, body["to"], amount=amount)
    if ctx.rules > FIRST_RULES and body["to"] != record.account:
        edge = f"{record.account}>{body['to']}"
        sent = state.funding.get(edge)
        state.funding.put(edge, Funding((sent.amount if sent else 0) + amount))


def _equivocation(state: State, record: Record, ctx: BlockContext, body: dict[str, Any]) -> None:
    """Any member may record that a sealer signed two blocks at one height: from the next
    block on, blocks it seals are invalid (its turns pass to the others)."""
    if not authority_rules(ctx.genesis):
        raise Rejected(Reason.MALFORMED, "equivocation evidence needs proof of authority, rules 2")
    # Rules 3 on, a sealer a registrar added is held to the same account.
    evidence_genesis = ruling(ctx.genesis, ever_sealers(state, ctx.genesis))
    header = check_equivocation(evidence_genesis, body["first"], body["second"], _EVIDENCE_VERIFIER)
    sealer = header.sealer_account
    if sealer in state.suspended:
        raise Rejected(Reason.DUPLICATE, f"sealer {sealer} is already suspended")
    state.suspended.put(sealer, Suspension(height=ctx.height, evidence=record.id))


def _member(state: State, record: Record, ctx: BlockContext, body: dict[str, Any]) -> None:
    """Rules 3 on: a registrar names a member (display name) and records its standing:
    `active`, `left`, or `revoked` (its key lost; the registrar re-registers its resources
    to the member's new account)."""
    if ctx.rules < THIRD_RULES:
        raise Rejected(Reason.MALFORMED, "member records are a rule of rules 3 and later")
    if record.account not in ctx.registrars:
        raise Rejected(Reason.NOT_REGISTRAR, "only a registrar named in genesis names members")
    status = body.get("status", "active")
    existing = state.members.get(body["account"])
    if existing is not None and existing.status == "revoked" and status != "revoked":
        raise Rejected(
            Reason.MEMBER_REVOKED, f"{body['account']} was revoked; a revoked key stays revoked"
        )
    state.members.put(body["account"], Member(name=body["name"], status=status, height=ctx.height))
    if status == "active":
        _vouch(state, ctx, body["account"])


def _sealer(state: State, record: Record, ctx: BlockContext, body: dict[str, Any]) -> None:
    """Rules 3 on, proof of authority: a registrar adds a sealer key or removes one; the
    set changes once the record is final (`sealers.py`)."""
    if ctx.rules < THIRD_RULES or ctx.genesis.consensus.mode != "poa":
        raise Rejected(
            Reason.MALFORMED, "sealer records are a rule of rules 3 and proof of authority"
        )
    if record.account not in ctx.registrars:
        raise Rejected(Reason.NOT_REGISTRAR, "only a registrar named in genesis changes sealers")
    apply_change(state, ctx.genesis, ctx.height, body["key"], body["action"])


_HANDLERS: dict[str, Handler] = {
    "registration": _registration,
    "resource_update": _resource_update,
    "offer": _offer_record,
    "request": _request,
    "acceptance": _acceptance,
    "confirmation": _confirmation,
    "rejection": _rejection,
    "cancel": _cancel,
    "bid": _bid,
    "termination": _termination,
    "meter_reading": _meter_reading,
    "settlement": _settlement,
    "dispute": _dispute,
    "rating": _rating,
    "topup": _topup,
    "transfer": _transfer,
    "equivocation": _equivocation,
    "member": _member,
    "sealer": _sealer,
}


def apply_block(
    state: State,
    records: Iterable[Record],
    ctx: BlockContext,
    on_applied: Callable[[Record], None] | None = None,
) -> None:
    """Apply a whole block's records (signatures already checked) between its begin and end
    steps. Raises `Rejected(INVALID_RECORD)` naming the first record a rule refuses; the
    caller reverts the state to before the block."""
    if ctx.sealer in state.suspended and authority_rules(ctx.genesis):
        raise Rejected(Reason.SEALER_SUSPENDED, f"sealer {ctx.sealer} is suspended")
    begin_block(state, ctx)
    for record in records:
        try:
            apply_record(state, record, ctx)
        except Rejected as exc:
            raise Rejected(
                Reason.INVALID_RECORD, f"record {record.id[:12]} ({record.kind}): {exc}"
            ) from None
        if on_applied is not None:
            on_applied(record)
    end_block(state, ctx)


def begin_block(state: State, ctx: BlockContext) -> None:
    """What happens at a block's time before its records: due auctions close, and (rules 4
    on) long-closed business is forgotten (`forget.py`)."""
    ctx.first_write = state.mark()
    close_auctions(state, ctx)
    if ctx.rules >= FOURTH_RULES:
        forget_closed(state, ctx.genesis, ctx.time, lambda s, t: settle_overdue(s, t, ctx))


def end_block(state: State, ctx: BlockContext) -> None:
    """Book the block's fees for its sealer and pay the fees that are now confirmed."""
    if ctx.rules >= FOURTH_RULES:
        state.index_closing(state.journal[ctx.first_write :])
    confirmations = ctx.genesis.consensus.confirmations
    if ctx.applied:
        state.add_totals(records=ctx.applied)
    if ctx.fees:
        state.fees.put(str(ctx.height), PendingFee(ctx.sealer, ctx.fees))
    due = str(ctx.height - confirmations)
    pending = state.fees.get(due)
    if pending is not None:
        _credit(state, pending.sealer, amount=pending.amount)
        state.fees.delete(due)
        state.add_totals(fees_paid=pending.amount)
