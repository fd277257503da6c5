"""The ledger's read API: what a state says about energy, power, money, meters and bids.

Pure functions over `State` (and the records it is built from), used by the consensus
rules and by anyone who needs the same answer: the app asks what a trade holds of a
resource, what a meter delivered to a trade, or the lowest bid an auction takes next, and
gets exactly the figure every node's rules work with.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .genesis import FIRST_RULES
from .records import Record
from .state import MeterReading, Offer, Resource, State, Trade

MS_PER_HOUR = 3_600_000


# --- energy, money, power ------------------------------------------------------------------


def energy_of(mode: str, quantity: int, start: int, end: int) -> int:
    """Wh a trade delivers: the quantity itself, or capacity W held over the window."""
    if mode == "energy":
        return quantity
    return quantity * (end - start) // MS_PER_HOUR


def cost_of(energy_wh: int, price_per_kwh: int) -> int:
    """Milli-units a buyer pays for `energy_wh` at `price_per_kwh` milli-units per kWh."""
    return energy_wh * price_per_kwh // 1000


def average_power_w(energy_wh: int, start: int, end: int) -> int:
    """The power in W an energy trade asks of its resource: its Wh spread evenly over the
    window, rounded up so that the ledger never books less than delivery draws."""
    if end <= start:
        return 0
    return -(-energy_wh * MS_PER_HOUR // (end - start))


def trade_power_w(state: State, trade: Trade) -> int:
    """The power a trade holds of its resource while its window runs: a capacity trade its
    W, an energy trade its average power over the window it was agreed for (a termination
    shortens `trade.end` but not the rate it was booked at, as for capacity)."""
    if trade.mode == "capacity":
        return trade.quantity
    offer = state.offers.get(trade.offer)
    # The offer's window is the one the trade was booked over (a termination shortens only
    # the trade's); the trade's own start and end stand in where the offer is not kept.
    start, end = (offer.start, offer.end) if offer is not None else (trade.start, trade.end)
    return average_power_w(trade.energy_wh, start, end)


def power_holds(state: State, resource_id: str) -> Iterator[tuple[int, int, int]]:
    """(start, end, W) of each trade that holds a resource's power: capacity trades at
    their W, energy trades at their average power."""
    commitments = state.commitments.get(resource_id)
    if commitments is None:
        return
    for trade_id in commitments.trades:
        t = state.trades.rows[trade_id]
        yield t.start, t.end, trade_power_w(state, t)


def held_energy_wh(state: State, resource_id: str, start: int, end: int) -> int:
    """The Wh a resource's trades hold of [start, end): each one's power over the part of
    its window inside it."""
    held = 0
    for t_start, t_end, power in power_holds(state, resource_id):
        overlap = min(end, t_end) - max(start, t_start)
        if overlap > 0:
            held += power * overlap
    return held // MS_PER_HOUR


def reading_most_wh(resource: Resource, start: int, end: int) -> int | None:
    """The most one direction of a meter reading of `resource` over [start, end) may show:
    its rating's energy, rounded up (meters count whole Wh). None: no bound (a household
    meter, kind `meter`)."""
    if resource.kind == "meter":
        return None
    return -(-resource.power_w * (end - start) // MS_PER_HOUR)


def peak_power(state: State, resource_id: str, start: int, end: int) -> int:
    """The highest sum of the power a resource's trades hold at any instant of a window."""
    events: list[tuple[int, int]] = []
    for t_start, t_end, power in power_holds(state, resource_id):
        if t_start < end and start < t_end:
            events.append((max(t_start, start), power))
            events.append((min(t_end, end), -power))
    # Windows are half-open: a commitment ending at t frees its power for one starting at t,
    # so at equal times the releases (negative) sort first.
    events.sort()
    peak = running = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


# --- offers and auctions -------------------------------------------------------------------


def offer_of(record: Record) -> Offer:
    """The offer an offer record makes, before any of it is sold."""
    body = record.body
    auction = body.get("auction") or {}
    return Offer(
        id=record.id,
        seller=record.account,
        resource=body["resource"],
        mode=body["mode"],
        quantity=body["quantity"],
        remaining=body["quantity"],
        price=body["price"],
        start=body["start"],
        end=body["end"],
        expires=body["expires"],
        to=tuple(body.get("to", ())),
        min_quantity=body.get("min_quantity", 1),
        request=body.get("request", ""),
        auction_closes=auction.get("closes", 0),
        auction_cap=auction.get("cap", 0),
        time=body["time"],
    )


def bidding_open(offer: Offer, now: int) -> bool:
    """Whether an offer takes bids at `now`: it is an auction, open, and not yet closed."""
    return offer.is_auction and offer.status == "open" and now < offer.auction_closes


def minimum_bid(offer: Offer) -> int:
    """The lowest price per kWh the ledger takes as the next bid on an auction: the reserve
    price, then one above the best bid (an equal later bid would lose to the earlier one,
    so it is refused)."""
    if offer.best_bidder:
        return max(offer.price, offer.best_bid_price + 1)
    return offer.price


# --- meters: first-in-first-out allocation -------------------------------------------------


def reach_back(trades: Sequence[Trade], start: int) -> int:
    """How far back the chain of trades overlapping `start` reaches: earlier trades take
    their first-in-first-out share from readings before a later trade's window too."""
    moved = True
    while moved:
        moved = False
        for earlier in trades:
            if earlier.start < start < earlier.end:
                start, moved = earlier.start, True
    return start


def reading_across(state: State, resource_id: str, at: int) -> MeterReading | None:
    """The resource's reading whose period runs across `at` (starts before, ends after), if
    any: readings never overlap, so there is at most one, found by bisection."""
    log = state.meters.get(resource_id)
    low, high = 0, log.count if log else 0
    readings = state.readings.rows
    # The first reading that starts at `at` or later; the one before it may run across.
    # Forgotten readings (rules 4) are the oldest ones: they count as starting before.
    while low < high:
        middle = (low + high) // 2
        reading = readings.get(f"{resource_id}#{middle}")
        if reading is None or reading.start < at:
            low = middle + 1
        else:
            high = middle
    before = readings.get(f"{resource_id}#{low - 1}") if low else None
    return before if before is not None and before.end > at else None


def sharing_reach(state: State, meter: str, trades: Sequence[Trade], start: int) -> int:
    """How far back what happens from `start` on depends on `meter`'s readings and
    `trades` (latest rules): back across every trade and every reading that runs across the
    point reached, since trades that share a reading take from it in turn even when their
    windows never meet."""
    while True:
        reached = reach_back(trades, start)
        across = reading_across(state, meter, reached)
        if across is not None:
            reached = across.start
        if reached == start:
            return start
        start = reached


def allocation_horizon(
    state: State, resource_id: str, trades: Sequence[Trade], now: int, rules: int
) -> int:
    """The chain time before which nothing of `resource_id`'s meter matters any more to
    `trades` (its allocation list) or to any trade made from `now` on: its readings and
    trades that end by then can never share a reading with an open or future trade."""
    open_starts = [t.start for t in trades if t.status != "settled"]
    if rules == FIRST_RULES:
        return reach_back(trades, min([now, *open_starts]))
    # A reading yet to come starts where the last one ended (anywhere, before the first)
    # and may run across trades that ended before the open ones started.
    log = state.meters.get(resource_id)
    metered_to = log.last_end if log else 0
    return sharing_reach(state, resource_id, trades, min([now, metered_to, *open_starts]))


def allocated_export(state: State, trade: Trade, *, rules: int) -> int:
    """What the resource's signed meter readings delivered to `trade`: its export shared
    first-in-first-out among the resource's trades in the order they were made, by the
    allocation rule of the community's `rules`."""
    index = state.resource_trades.get(trade.resource)
    trades = [state.trades.rows[t] for t in (index.trades if index else (trade.id,))]
    return _first_in_first_out(state, trade.resource, trades, trade, imported=False, rules=rules)


def allocated_import(state: State, meter: str, trade: Trade, *, rules: int) -> int:
    """What the buyer's meter (resource `meter`) took in for `trade`: its import shared
    first-in-first-out among the buyer's purchases, by the rule `allocated_export` uses.

    Purchases from several resources have no common index, so they are taken in the order
    of the time they were made, then by id (the same on every node)."""
    trades = sorted(
        (t for t in state.trades.values_all() if t.buyer == trade.buyer),
        key=lambda t: (t.time, t.id),
    )
    return _first_in_first_out(state, meter, trades, trade, imported=True, rules=rules)


def _first_in_first_out(
    state: State,
    meter: str,
    trades: Sequence[Trade],
    trade: Trade,
    *,
    imported: bool,
    rules: int,
) -> int:
    """The allocation rule: in each of `meter`'s readings, the trades whose window it
    overlaps take, in the order of `trades`, their pro-rata part of what it measured (the
    meter cannot say when inside a period the energy flowed), each up to what remains of
    its agreed energy; returns what `trade` got.

    The first rules share a reading only among the trades whose windows reach `trade`'s
    through a chain of overlaps, so a trade made earlier that meets `trade` only inside a
    reading is left out and that reading is handed out twice. Later rules take every trade
    made up to `trade` that shares a reading with it, or with one that does, and so on."""
    if rules == FIRST_RULES:
        start = reach_back(trades, trade.start)
        sharing = [t for t in trades if t.start < trade.end and start < t.end]
        if trade.id not in {t.id for t in sharing}:
            return 0
        readings = readings_between(state, meter, start, trade.end)
    else:
        made = next((i for i, t in enumerate(trades) if t.id == trade.id), None)
        if made is None or not trade.start < trade.end:
            return 0
        earlier = trades[: made + 1]
        start = sharing_reach(state, meter, earlier, trade.start)
        readings = readings_between(state, meter, start, trade.end)
        end = max(trade.end, readings[-1].end) if readings else trade.end
        sharing = [t for t in earlier if t.start < end and start < t.end]
    remaining = {t.id: t.energy_wh for t in sharing}
    for reading in readings:
        measured = reading.import_wh if imported else reading.export_wh
        available = measured
        length = reading.end - reading.start
        for t in sharing:
            overlap = min(reading.end, t.end) - max(reading.start, t.start)
            if overlap <= 0 or remaining[t.id] == 0:
                continue
            taken = min(remaining[t.id], measured * overlap // length, available)
            remaining[t.id] -= taken
            available -= taken
    return trade.energy_wh - remaining[trade.id]


def readings_between(state: State, resource_id: str, start: int, end: int) -> list[MeterReading]:
    """The resource's readings overlapping [start, end), oldest first."""
    log = state.meters.get(resource_id)
    found: list[MeterReading] = []
    if log is None:
        return found
    readings = state.readings.rows
    for i in range(log.count - 1, -1, -1):
        reading = readings.get(f"{resource_id}#{i}")
        # Past the oldest reading kept (rules 4 forget the older ones) or the window's start.
        if reading is None or reading.end <= start:
            break
        if reading.start < end:
            found.append(reading)
    found.reverse()
    return found


def metered_export(state: State, resource_id: str, start: int, end: int) -> int:
    """Export a resource's meter recorded within [start, end), pro rata for readings that
    straddle the window's edges."""
    total = 0
    for r in readings_between(state, resource_id, start, end):
        overlap = min(r.end, end) - max(r.start, start)
        total += r.export_wh * overlap // (r.end - r.start)
    return total
