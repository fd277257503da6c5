"""The three sharing keys against the published rules and examples they implement.

Sources (public, read 2026):
- Austria, Koordinationsstelle für Energiegemeinschaften, "Energiezuteilung in
  Energiegemeinschaften" (energiegemeinschaften.gv.at/downloads/energiezuteilung-in-
  energiegemeinschaften) and "Messung und Aufteilung" (energiegemeinschaften.gv.at/
  messung-und-aufteilung): allocation per quarter hour, limited by each participant's
  consumption in that quarter hour; static: a fixed share agreed in advance, a share not
  consumed in the quarter hour counts as surplus fed into the grid; dynamic: in relation
  to the consumption measured in the quarter hour.
- Luxembourg, ILR (Institut Luxembourgeois de Régulation), FAQ "Ich möchte gern den von
  meiner Photovoltaikanlage erzeugten Strom mit meinen Nachbarn teilen": a plant makes
  500 Wh in a quarter hour, its owner uses 200 Wh, the 300 Wh surplus goes to members of
  the sharing group, whose grid withdrawal is reduced by those 300 Wh; keys by priority,
  percentage or share. weshareenergy.lu "Sharing keys": priority (a predefined order),
  percentage (a household always receives the same share), pro rata (to present
  consumption).
"""

from __future__ import annotations

import pytest

from edge_controller.metering import (
    CommunityConfig,
    MeteringError,
    MeteringPoint,
    MeteringTree,
    SettlementBook,
    SettlementConfig,
    Sharing,
    SharingKey,
    TapReading,
    period_containing,
    settle_period,
)

QUARTER = 15 * 60_000


def test_static_key_gives_fixed_shares_and_an_unconsumed_share_is_surplus() -> None:
    # Austria, static: 10 kWh shared 50/30/20 while A, B, C use 3, 4 and 5 kWh. A's
    # 5 kWh share is limited by its 3 kWh; its unused 2 kWh go to the grid, not to C.
    key = Sharing(SharingKey.STATIC, shares={"a": 50, "b": 30, "c": 20})
    allocation = key.allocate(10_000, {"a": 3_000, "b": 4_000, "c": 5_000})
    assert allocation == {"a": 3_000, "b": 3_000, "c": 2_000}
    assert 10_000 - sum(allocation.values()) == 2_000


def test_dynamic_key_shares_pro_rata_to_the_quarter_hours_consumption() -> None:
    # Austria, dynamic: 6 kWh among consumptions of 2, 4 and 6 kWh: one sixth, two
    # sixths, three sixths of the pool.
    key = Sharing(SharingKey.DYNAMIC)
    assert key.allocate(6_000, {"a": 2_000, "b": 4_000, "c": 6_000}) == {
        "a": 1_000,
        "b": 2_000,
        "c": 3_000,
    }
    # Limited by consumption: a pool larger than the demand covers it, the rest is surplus.
    assert key.allocate(20_000, {"a": 2_000, "b": 4_000}) == {"a": 2_000, "b": 4_000}


def test_dynamic_rounding_creates_and_loses_no_wh() -> None:
    allocation = Sharing(SharingKey.DYNAMIC).allocate(80, {"a": 120, "b": 60})
    # 53.33 and 26.67 Wh: the leftover Wh goes to the larger remainder.
    assert allocation == {"a": 53, "b": 27}


def test_priority_key_serves_owners_in_order_after_the_producers_own_use() -> None:
    # Luxembourg, ILR: 500 Wh made in the quarter hour, 200 Wh used by the producer
    # behind the same meter, 300 Wh shared; the first member in the order uses 250 Wh,
    # the second 400 Wh: 250 and 50 Wh, and their grid withdrawal drops by 300 Wh.
    period = period_containing(0, QUARTER)
    tree = MeteringTree(
        (
            MeteringPoint("house", "producer"),
            MeteringPoint("pv", "producer", "house"),
            MeteringPoint("first", "first"),
            MeteringPoint("second", "second"),
        )
    )
    figures = tree.figures(
        period,
        [
            TapReading("house", period, 0, 300),  # 500 made - 200 used
            TapReading("pv", period, 0, 500),
            TapReading("first", period, 250, 0),
            TapReading("second", period, 400, 0),
        ],
    )
    config = CommunityConfig(
        SettlementConfig(period_ms=QUARTER, buy_price=300, sell_price=80),
        shared_price=150,
        sharing=Sharing(SharingKey.PRIORITY, order=("first", "second")),
    )
    _, settled = settle_period(SettlementBook(), config, figures, shared_export={"producer": 500})
    assert settled.pool_wh == 300
    first, second = settled.owner("first"), settled.owner("second")
    assert (first.shared_in_wh, first.grid_import_wh) == (250, 0)
    assert (second.shared_in_wh, second.grid_import_wh) == (50, 350)
    assert first.shared_in_wh + second.shared_in_wh == 300
    assert settled.owner("producer").shared_out_wh == 300


def test_keys_refuse_what_cannot_be_applied() -> None:
    with pytest.raises(MeteringError, match="needs shares"):
        Sharing(SharingKey.STATIC)
    with pytest.raises(MeteringError, match="needs an order"):
        Sharing(SharingKey.PRIORITY)
    with pytest.raises(MeteringError, match="twice"):
        Sharing(SharingKey.PRIORITY, order=("a", "a"))
    with pytest.raises(MeteringError, match="negative"):
        Sharing().allocate(-1, {})
