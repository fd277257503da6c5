"""The metering-point tree: seed 003's FIG. 7 (a landlord and two tenants), settled by hand.

FIG. 7 as built here (arrows point upstream, towards the grid):

    grid
     └── T2    landlord A   (the house's connection; A's stair lights hang directly on it)
          ├── T21   A        ├── T211 A (kitchen)   ├── T212 A (lights)
          │                  ├── T213 A (roof PV)   └── T214 A (battery)
          ├── T22   tenant B ├── T221 B  ├── T222 B  └── T223 B (B's plug loads)
          └── T23   tenant C ├── T231 C  ├── T232 C  └── T233 C (C's balcony PV)
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edge_controller.metering import (
    CutOff,
    MeteringError,
    MeteringPoint,
    MeteringTree,
    PeriodFigures,
    Problem,
    Restore,
    SettlementBook,
    SettlementConfig,
    SettlementPeriod,
    TapReading,
    period_containing,
)

HALF_HOUR = 30 * 60 * 1000
DAY = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp()) * 1000
NOON = DAY + 12 * 2 * HALF_HOUR
CONFIG = SettlementConfig(period_ms=HALF_HOUR, buy_price=300, sell_price=200, counterparty="grid")

FIG7 = MeteringTree(
    (
        MeteringPoint("T2", "A"),
        MeteringPoint("T21", "A", "T2"),
        *(MeteringPoint(f"T21{i}", "A", "T21") for i in range(1, 5)),
        MeteringPoint("T22", "B", "T2"),
        *(MeteringPoint(f"T22{i}", "B", "T22") for i in range(1, 4)),
        MeteringPoint("T23", "C", "T2"),
        *(MeteringPoint(f"T23{i}", "C", "T23") for i in range(1, 4)),
    )
)

# One half hour at noon, in Wh, (import, export) per point:
#   B, a pure consumer: T221 300 + T222 150 + T223 50           -> T22 imports 500
#   C: loads T231 20 + T232 10, PV T233 exports 230             -> T23 (30 in, 230 out)
#   A behind T21: kitchen 250 + lights 100 + battery charge 50 in, roof PV 300 out;
#     across the half hour T21 saw 140 in and 40 out (net 100 in);
#     the stair lights on T2 itself take 60 more
#   T2 saw everything of A, B and C:  import 140 + 60 + 500 + 30 = 730
#                                     export  40 +  0 +   0 + 230 = 270
NOON_READINGS = {
    "T2": (730, 270),
    "T21": (140, 40),
    "T211": (250, 0),
    "T212": (100, 0),
    "T213": (0, 300),
    "T214": (50, 0),
    "T22": (500, 0),
    "T221": (300, 0),
    "T222": (150, 0),
    "T223": (50, 0),
    "T23": (30, 230),
    "T231": (20, 0),
    "T232": (10, 0),
    "T233": (0, 230),
}


def period_at(at_ms: int) -> SettlementPeriod:
    return period_containing(at_ms, HALF_HOUR)


def readings(period: SettlementPeriod, table: dict[str, tuple[int, int]]) -> list[TapReading]:
    return [TapReading(point, period, imp, exp) for point, (imp, exp) in table.items()]


def noon_figures(tree: MeteringTree = FIG7) -> PeriodFigures:
    period = period_at(NOON)
    return tree.figures(period, readings(period, NOON_READINGS))


def test_fig7_each_owner_gets_their_own_energy_and_no_more():
    figures = noon_figures()
    # A is counted once, at T2, minus the tenants' points T22 and T23 direction by direction:
    #   import 730 - 500 (T22) - 30 (T23) = 200    (= T21's 140 + the stair lights' 60)
    #   export 270 -   0 (T22) - 230 (T23) =  40   (= T21's 40)
    t2 = figures.point("T2")
    assert t2.subtracted == ("T22", "T23")
    assert (t2.import_wh, t2.export_wh) == (200, 40)
    a = figures.owner("A")
    assert (a.import_wh, a.export_wh, a.net_wh) == (200, 40, 160)
    # T21 and T211..T214 are A's sub-meters inside T2's reading: counting them too would give
    # A 200 + 140 + 250 + 100 + 50 = 740 Wh of import.
    assert a.accounting_points == ("T2",)
    b = figures.owner("B")
    assert (b.import_wh, b.export_wh, b.net_wh) == (500, 0, 500)  # T22 alone, not + T221..T223
    c = figures.owner("C")
    assert (c.import_wh, c.export_wh, c.net_wh) == (30, 230, -200)
    # Nothing is created or lost: 160 + 500 - 200 = 460 = 730 - 270 at the grid connection.
    assert a.net_wh + b.net_wh + c.net_wh == figures.grid_net_wh == 460


def test_fig7_sub_meters_of_the_same_owner_change_nothing():
    period = period_at(NOON)
    changed = dict(NOON_READINGS, T21=(999, 0), T211=(0, 0), T221=(1, 1), T233=(5000, 0))
    assert FIG7.figures(period, readings(period, changed)) == noon_figures()
    # and they may be missing altogether: only accounting points must report
    only_tops = {p: NOON_READINGS[p] for p in ("T2", "T22", "T23")}
    assert FIG7.figures(period, readings(period, only_tops)) == noon_figures()


def test_fig7_settles_each_owner_at_the_prices():
    book, settled = SettlementBook().settle(CONFIG, noon_figures())
    # A nets 160 Wh in  at 300/kWh: 160 * 300 / 1000 =  48 paid
    # B nets 500 Wh in  at 300/kWh: 500 * 300 / 1000 = 150 paid
    # C nets 200 Wh out at 200/kWh: 200 * 200 / 1000 =  40 received
    assert [(o.owner, o.net_wh, o.movement, o.carry) for o in settled.owners] == [
        ("A", 160, -48, 0),
        ("B", 500, -150, 0),
        ("C", -200, 40, 0),
    ]
    # The grid supplied the 460 Wh net and took 48 + 150 - 40 = 158.
    assert (settled.counterparty_net_wh, settled.counterparty_movement) == (-460, 158)
    assert book.settled_until_ms == NOON + HALF_HOUR


def test_a_tenants_tap_taken_over_by_the_other_tenant_is_subtracted_from_the_first():
    # From 14:00 C pays for the plug tap T223 in B's flat (the seed's T223-T233 link).
    tree = FIG7.transfer("T223", "C", NOON + 4 * HALF_HOUR)
    period = period_at(NOON + 4 * HALF_HOUR)
    figures = tree.figures(period, readings(period, NOON_READINGS))
    # B: T22 - T223 = 500 - 50 = 450 in; C: T23 + T223 = (30 + 50) in, 230 out
    assert figures.point("T22").subtracted == ("T223",)
    assert (figures.owner("B").import_wh, figures.owner("B").export_wh) == (450, 0)
    assert (figures.owner("C").import_wh, figures.owner("C").export_wh) == (80, 230)
    assert figures.owner("C").accounting_points == ("T223", "T23")
    # A is untouched: T2 still subtracts only the tops of the tenants' stretches.
    assert figures.point("T2").subtracted == ("T22", "T23")
    assert figures.owner("A").net_wh == 160
    assert sum(o.net_wh for o in figures.owners) == figures.grid_net_wh


def test_ownership_transfer_mid_day_moves_readings_from_that_period_on():
    # B moves out; D takes over B's flat (all of B's points) from 13:00.
    moved = NOON + 2 * HALF_HOUR
    tree = FIG7
    for point in ("T22", "T221", "T222", "T223"):
        tree = tree.transfer(point, "D", moved)
    before = period_at(moved - 1)  # 12:30-13:00
    after = period_at(moved)  # 13:00-13:30
    assert before.end_ms == after.start_ms == moved
    old = tree.figures(before, readings(before, NOON_READINGS))
    new = tree.figures(after, readings(after, NOON_READINGS))
    assert [o.owner for o in old.owners] == ["A", "B", "C"]
    assert [o.owner for o in new.owners] == ["A", "C", "D"]
    assert old.owner("B").net_wh == new.owner("D").net_wh == 500
    assert tree.owner_at("T22", moved - 1) == "B"
    assert tree.owner_at("T22", moved) == "D"
    # The original tree is unchanged: transfers return a new tree.
    assert FIG7.owner_at("T22", moved) == "B"


def test_a_transfer_inside_a_period_takes_effect_at_the_next_boundary():
    ten_past_one = NOON + 2 * HALF_HOUR + 10 * 60 * 1000
    tree = FIG7.transfer("T23", "D", ten_past_one)
    for point in ("T231", "T232", "T233"):
        tree = tree.transfer(point, "D", ten_past_one)
    straddling = period_at(ten_past_one)  # 13:00-13:30 started with C
    following = period_at(straddling.end_ms)
    assert tree.figures(straddling, readings(straddling, NOON_READINGS)).owner("C").net_wh == -200
    assert tree.figures(following, readings(following, NOON_READINGS)).owner("D").net_wh == -200


def test_the_landlord_is_never_cut_off_at_the_house_connection():
    figures = noon_figures()
    # Opening T2 would switch off both tenants; A's own circuit is T21.
    assert figures.owner("A").cut_off_points == ("T21",)
    assert figures.owner("B").cut_off_points == ("T22",)
    assert figures.owner("C").cut_off_points == ("T23",)
    book = SettlementBook().open_account("A", 100).open_account("B", 200)
    book, first = book.settle(CONFIG, figures)  # A pays 48 (52 left), B pays 150 (50 left)
    assert first.decisions == ()
    assert (first.owner("A").balance, first.owner("B").balance, first.owner("C").balance) == (
        52,
        50,
        None,  # C is not prepaid and is never cut off
    )
    second_period = period_at(NOON + HALF_HOUR)
    second = FIG7.figures(second_period, readings(second_period, NOON_READINGS))
    book, settled = book.settle(CONFIG, second)  # A: 52 - 48 = 4, B: 50 - 150 = -100
    assert settled.decisions == (CutOff("B", ("T22",), second_period),)
    book, restored = book.top_up("B", 500, second_period)
    assert restored == (Restore("B", ("T22",), second_period),)
    assert book.balances["B"] == 400


def test_an_owner_whose_only_points_feed_others_has_nothing_to_cut():
    tree = MeteringTree(
        (MeteringPoint("T2", "A"), MeteringPoint("T22", "B", "T2"), MeteringPoint("T23", "C", "T2"))
    )
    period = period_at(NOON)
    figures = tree.figures(
        period,
        [
            TapReading("T2", period, 100, 0),
            TapReading("T22", period, 60, 0),
            TapReading("T23", period, 0, 0),
        ],
    )
    assert figures.owner("A").cut_off_points == ()
    assert figures.owner("A").net_wh == 40


def test_other_owners_flows_that_cancel_behind_a_point_collapse_to_the_net():
    # C's 400 Wh of PV feeds B's 400 Wh load behind T2 and never reaches the grid, so T2 saw
    # only A's 10 Wh: import 10 - 400 (T22) - 0 (T23) = -390, export 0 - 0 - 400 = -400.
    # The net, -390 - (-400) = 10 Wh in, is exact; the split is not, so A gets 10 in, 0 out.
    tree = MeteringTree(
        (MeteringPoint("T2", "A"), MeteringPoint("T22", "B", "T2"), MeteringPoint("T23", "C", "T2"))
    )
    period = period_at(NOON)
    figures = tree.figures(
        period,
        [
            TapReading("T2", period, 10, 0),
            TapReading("T22", period, 400, 0),
            TapReading("T23", period, 0, 400),
        ],
    )
    assert (figures.owner("A").import_wh, figures.owner("A").export_wh) == (10, 0)
    assert sum(o.net_wh for o in figures.owners) == figures.grid_net_wh == 10


# --- validation ----------------------------------------------------------------------------


def refused(problem: Problem) -> pytest.RaisesExc[MeteringError]:
    return pytest.raises(MeteringError, match=problem.value)


def test_duplicate_ids_are_refused():
    with refused(Problem.DUPLICATE_POINT):
        MeteringTree((MeteringPoint("T1", "A"), MeteringPoint("T1", "B")))


def test_an_unknown_parent_is_refused():
    with refused(Problem.UNKNOWN_PARENT):
        MeteringTree((MeteringPoint("T1", "A"), MeteringPoint("T11", "A", "T9")))


def test_cycles_are_refused_with_the_loop_named():
    with pytest.raises(MeteringError, match="T1 -> T3 -> T2 -> T1") as caught:
        MeteringTree(
            (
                MeteringPoint("T0", "A"),
                MeteringPoint("T1", "A", "T3"),
                MeteringPoint("T2", "A", "T1"),
                MeteringPoint("T3", "A", "T2"),
            )
        )
    assert caught.value.problem is Problem.CYCLE
    with refused(Problem.CYCLE):
        MeteringPoint("T1", "A", "T1")


def test_bad_readings_are_refused():
    period = period_at(NOON)
    good = readings(period, NOON_READINGS)
    with refused(Problem.UNKNOWN_POINT):
        FIG7.figures(period, [*good, TapReading("T9", period, 1, 0)])
    with refused(Problem.WRONG_PERIOD):
        FIG7.figures(period, [*good[1:], TapReading("T2", period_at(NOON + HALF_HOUR), 730, 270)])
    with refused(Problem.DUPLICATE_READING):
        FIG7.figures(period, [*good, good[0]])
    with pytest.raises(MeteringError, match="T22, T23"):
        FIG7.figures(period, [good[0]])
    with refused(Problem.NEGATIVE):
        TapReading("T2", period, -1, 0)
    with refused(Problem.NOT_AN_INTEGER):
        TapReading("T2", period, 1, 2.5)  # type: ignore[arg-type]


def test_bad_transfers_are_refused():
    with refused(Problem.UNKNOWN_POINT):
        FIG7.transfer("T9", "D", NOON)
    with refused(Problem.BAD_TRANSFER):
        FIG7.transfer("T22", "B", NOON)  # already B's
    later = FIG7.transfer("T22", "D", NOON)
    with refused(Problem.BAD_TRANSFER):
        later.transfer("T22", "E", NOON - 1)  # out of time order


def test_bad_periods_are_refused():
    with refused(Problem.BAD_PERIOD):
        SettlementPeriod(NOON, NOON)
    with refused(Problem.BAD_CONFIG):
        period_containing(NOON, 999)
    with refused(Problem.BAD_CONFIG):
        SettlementConfig(period_ms=HALF_HOUR + 1)
