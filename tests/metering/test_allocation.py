"""FIFO allocation of metered export to overlapping trades, and buyer/seller disputes."""

from __future__ import annotations

import pytest

from edge_controller.metering import (
    Direction,
    Dispute,
    DisputeReason,
    MeteringError,
    Problem,
    Reading,
    Share,
    Tolerance,
    Trade,
    allocate,
    find_disputes,
)

from .support import MINUTE, minute

# Three trades on one battery, created in this order:
#   t1: minutes 0-3, 500 Wh     t2: 0 - 1.5 (ends mid-period 1), 300 Wh     t3: 1-4, 400 Wh
TRADES = (
    Trade("t1", 0, 3 * MINUTE, 500, created=1),
    Trade("t2", 0, 3 * MINUTE // 2, 300, created=2),
    Trade("t3", MINUTE, 4 * MINUTE, 400, created=3),
)
# Metered export per minute; minute 2 exported nothing.
EXPORT = (400, 300, 0, 500)


def battery_readings(export: tuple[int, ...] = EXPORT) -> list[Reading]:
    return [Reading("bat-1", minute(i), 0, wh) for i, wh in enumerate(export)]


def test_fifo_across_overlapping_trades():
    allocation = allocate(battery_readings(), reversed(TRADES))  # order given does not matter
    shares = [(p.period.start_ms // MINUTE, p.shares, p.unallocated_wh) for p in allocation.periods]
    assert shares == [
        # minute 0: t1 is first and takes all 400; t2 gets nothing; t3 has not started
        (0, (Share("t1", 400),), 0),
        # minute 1: t1 takes its last 100; t2 covers half the minute, so at most 300 * 1/2 =
        # 150; t3 gets what is left, 300 - 100 - 150 = 50
        (1, (Share("t1", 100), Share("t2", 150), Share("t3", 50)), 0),
        # minute 2: nothing was exported
        (2, (), 0),
        # minute 3: only t3 is active and needs 350 more; 500 - 350 = 150 is left over
        (3, (Share("t3", 350),), 150),
    ]
    assert allocation.delivered == {"t1": 500, "t2": 150, "t3": 400}
    assert allocation.delivery("t2").shortfall_wh == 150  # under-delivered, window ended
    assert allocation.unallocated_wh == 150  # over-delivery beyond every trade
    assert allocation.point == "bat-1"


def test_the_earlier_trade_wins_when_there_is_not_enough():
    trades = [Trade("late", 0, MINUTE, 100, created=9), Trade("early", 0, MINUTE, 100, created=3)]
    allocation = allocate([Reading("pv", minute(0), 0, 120)], trades)
    assert allocation.delivered == {"early": 100, "late": 20}
    # Same creation instant: by id, so every home allocates alike.
    tied = [Trade("b", 0, MINUTE, 100, created=3), Trade("a", 0, MINUTE, 100, created=3)]
    assert allocate([Reading("pv", minute(0), 0, 120)], tied).delivered == {"a": 100, "b": 20}


def test_the_buyer_side_allocates_import():
    buyer = [Reading("home-b", minute(i), wh, 0) for i, wh in enumerate((390, 310, 0, 800))]
    allocation = allocate(buyer, TRADES, Direction.IMPORT)
    # minute 0: t1 390; minute 1: t1 110, t2 min(300, 310 / 2 = 155) = 155, t3 310 - 265 = 45;
    # minute 3: t3 needs 355 of 800
    assert allocation.delivered == {"t1": 500, "t2": 155, "t3": 400}


def test_no_readings_deliver_nothing():
    allocation = allocate([], TRADES)
    assert allocation.delivered == {"t1": 0, "t2": 0, "t3": 0}
    assert allocation.unallocated_wh == 0
    assert allocation.point is None


def test_disputes_only_beyond_the_tolerance():
    seller = allocate(battery_readings(), TRADES)  # t1 500, t2 150, t3 400
    tolerance = Tolerance(percent=2, min_wh=5)
    # t1: 2 % of 500 = 10 allowed, 490 is exactly on the edge; t2: 5 Wh floor (2 % is 3);
    # t3: 2 % of 400 = 8 allowed.
    assert find_disputes(seller, {"t1": 490, "t2": 145, "t3": 408}, tolerance) == ()
    disputes = find_disputes(seller, {"t1": 489, "t2": 156, "t3": 300}, tolerance)
    assert disputes == (
        Dispute("t1", 500, 489, DisputeReason.SELLER_ABOVE_BUYER),
        Dispute("t2", 150, 156, DisputeReason.BUYER_ABOVE_SELLER),
        Dispute("t3", 400, 300, DisputeReason.SELLER_ABOVE_BUYER),
    )


def test_a_buyer_meter_that_reported_nothing_is_a_dispute():
    seller = allocate(battery_readings(), TRADES)
    assert find_disputes(seller, {"t1": 500, "t3": 400}) == (
        Dispute("t2", 150, 0, DisputeReason.BUYER_MISSING),
    )
    # Comparing only one buyer's trades leaves the others alone.
    assert find_disputes(seller, {"t1": 500}, trades=["t1"]) == ()


def test_a_buyer_allocation_feeds_the_comparison():
    seller = allocate(battery_readings(), TRADES)
    buyer_readings = [
        Reading("home-b", minute(i), wh, 0) for i, wh in enumerate((390, 310, 0, 800))
    ]
    buyer = allocate(buyer_readings, TRADES, Direction.IMPORT)
    # t2: 150 sold, 155 received: 5 Wh apart, inside the 5 Wh floor.
    assert find_disputes(seller, buyer.delivered) == ()


def test_bad_inputs_are_refused():
    with pytest.raises(MeteringError, match=Problem.DUPLICATE_TRADE.value):
        allocate(battery_readings(), [*TRADES, TRADES[0]])
    with pytest.raises(MeteringError, match=Problem.BAD_TRADE.value):
        Trade("t", MINUTE, MINUTE, 1, created=0)
    with pytest.raises(MeteringError, match=Problem.BAD_TRADE.value):
        Trade("t", 0, MINUTE, -1, created=0)
    overlapping = [Reading("bat-1", minute(0), 0, 1), Reading("bat-1", minute(0), 0, 2)]
    with pytest.raises(MeteringError, match=Problem.OVERLAPPING_READINGS.value):
        allocate(overlapping, TRADES)
    mixed = [Reading("bat-1", minute(0), 0, 1), Reading("pv-2", minute(1), 0, 2)]
    with pytest.raises(MeteringError, match=Problem.MIXED_POINTS.value):
        allocate(mixed, TRADES)
    with pytest.raises(MeteringError, match=Problem.BAD_CONFIG.value):
        Tolerance(percent=-1)
