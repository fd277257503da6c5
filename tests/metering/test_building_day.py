"""A landlord, two tenants and a shared PV roof through one day of quarter hours, with
every figure worked by hand (the working is in the comments).

Taps: `main` (landlord, the grid connection), `common` (landlord, the stairwell, a
sub-meter under `main`), `roof-pv` (landlord, shared, under `main`), `flat-a` (tenant A)
and `flat-b` (tenant B) under `main`. The day has four blocks of identical quarter hours;
per quarter hour, in Wh:

| block   | periods | pv out | common | flat A | flat B | main in | main out |
|---------|---------|--------|--------|--------|--------|---------|----------|
| night   | 24      | 0      | 10     | 50     | 30     | 90      | 0        |
| morning | 16      | 100    | 20     | 120    | 60     | 100     | 0        |
| midday  | 24      | 400    | 20     | 80     | 40     | 0       | 260      |
| evening | 32      | 0      | 30     | 150    | 90     | 270     | 0        |

Prices per kWh: grid 300 milli-units, export 80, shared 150. Key: dynamic.
"""

from __future__ import annotations

from collections.abc import Iterator

from edge_controller.metering import (
    CommunityConfig,
    CommunityPeriod,
    CutOff,
    MeteringPoint,
    MeteringTree,
    Restore,
    SettlementBook,
    SettlementConfig,
    SettlementPeriod,
    Sharing,
    SharingKey,
    TapReading,
    settle_period,
)

QUARTER = 15 * 60_000
DAY_START = 1_764_547_200_000  # 2025-12-01T00:00Z
BLOCKS = (  # periods, pv out, common, flat A, flat B
    (24, 0, 10, 50, 30),
    (16, 100, 20, 120, 60),
    (24, 400, 20, 80, 40),
    (32, 0, 30, 150, 90),
)
TREE = MeteringTree(
    (
        MeteringPoint("main", "landlord"),
        MeteringPoint("common", "landlord", "main"),
        MeteringPoint("roof-pv", "landlord", "main"),
        MeteringPoint("flat-a", "tenant-a", "main"),
        MeteringPoint("flat-b", "tenant-b", "main"),
    )
)
CONFIG = CommunityConfig(
    SettlementConfig(period_ms=QUARTER, buy_price=300, sell_price=80),
    shared_price=150,
    sharing=Sharing(SharingKey.DYNAMIC),
)


def quarter_hours() -> Iterator[tuple[SettlementPeriod, list[TapReading], int]]:
    index = 0
    for count, pv, common, flat_a, flat_b in BLOCKS:
        for _ in range(count):
            start = DAY_START + index * QUARTER
            period = SettlementPeriod(start, start + QUARTER)
            net = common + flat_a + flat_b - pv
            yield (
                period,
                [
                    TapReading("main", period, max(net, 0), max(-net, 0)),
                    TapReading("common", period, common, 0),
                    TapReading("roof-pv", period, 0, pv),
                    TapReading("flat-a", period, flat_a, 0),
                    TapReading("flat-b", period, flat_b, 0),
                ],
                pv,
            )
            index += 1


def run_day(book: SettlementBook) -> tuple[SettlementBook, list[CommunityPeriod]]:
    settled = []
    for period, readings, pv in quarter_hours():
        figures = TREE.figures(period, readings)
        book, result = settle_period(book, CONFIG, figures, shared_export={"landlord": pv})
        settled.append(result)
    return book, settled


def totals(settled: list[CommunityPeriod], owner: str) -> dict[str, int]:
    rows = [p.owner(owner) for p in settled]
    fields = ("import_wh", "export_wh", "shared_in_wh", "shared_out_wh")
    return {
        **{f: sum(getattr(r, f) for r in rows) for f in fields},
        "grid_import_wh": sum(r.grid_import_wh for r in rows),
        "grid_export_wh": sum(r.grid_export_wh for r in rows),
        "movement": sum(r.movement for r in rows),
    }


def test_every_owners_day_equals_the_hand_figures() -> None:
    _, settled = run_day(SettlementBook())
    assert len(settled) == 96
    # Tenant A: import 50x24 + 120x16 + 80x24 + 150x32 = 9,840 Wh. Shared: in the morning
    # the pool is 80 Wh (pv 100 - common 20) against demands 120 and 60: 80x120/180 =
    # 53.3 -> 53 (B has the larger remainder and gets the leftover Wh); at midday the
    # pool of 380 covers both. 53x16 + 80x24 = 2,768 Wh; grid 9,840 - 2,768 = 7,072.
    # Money: -(7,072 x 300 + 2,768 x 150) / 1000 = -2,536.8: -2,536 moved, -0.8 carried.
    assert totals(settled, "tenant-a") == {
        "import_wh": 9_840,
        "export_wh": 0,
        "shared_in_wh": 2_768,
        "shared_out_wh": 0,
        "grid_import_wh": 7_072,
        "grid_export_wh": 0,
        "movement": -2_536,
    }
    # Tenant B: 30x24 + 60x16 + 40x24 + 90x32 = 5,520; shared 27x16 + 40x24 = 1,392;
    # grid 4,128; -(4,128 x 300 + 1,392 x 150) / 1000 = -1,447.2 -> -1,447.
    assert totals(settled, "tenant-b") == {
        "import_wh": 5_520,
        "export_wh": 0,
        "shared_in_wh": 1_392,
        "shared_out_wh": 0,
        "grid_import_wh": 4_128,
        "grid_export_wh": 0,
        "movement": -1_447,
    }
    # Landlord: main minus the flats. Night 10 and evening 30 in: 240 + 960 = 1,200 Wh.
    # Morning 80 out (pv 100 - common 20), midday 380 out: 1,280 + 9,120 = 10,400 Wh,
    # of which 80x16 + 120x24 = 4,160 shared and 6,240 to the grid.
    # Money, period by period (carries in thousandths): night 24 x -3 = -72; morning
    # 16 x 80 x 150 = +12 each = +192; midday 24 x (260 x 80 + 120 x 150 = 38,800):
    # 931,200 -> +931, carry 200; evening: 200 - 9,000 -> -8 (carry -800), then 31 x -9.
    # -72 + 192 + 931 - 8 - 279 = 764.
    assert totals(settled, "landlord") == {
        "import_wh": 1_200,
        "export_wh": 10_400,
        "shared_in_wh": 0,
        "shared_out_wh": 4_160,
        "grid_import_wh": 1_200,
        "grid_export_wh": 6_240,
        "movement": 764,
    }
    # The grid connection measured 90x24 + 100x16 + 270x32 = 12,400 in and 260x24 = 6,240
    # out: exactly the owners' grid figures, and the counterparty's money mirrors theirs.
    assert (
        sum(totals(settled, o)["grid_import_wh"] for o in ("landlord", "tenant-a", "tenant-b"))
        == 12_400
    )
    assert sum(p.counterparty_movement for p in settled) == 2_536 + 1_447 - 764


def test_the_common_sub_meter_is_not_counted_twice() -> None:
    period, readings, _ = next(quarter_hours())
    figures = TREE.figures(period, readings)
    assert figures.owner("landlord").accounting_points == ("main",)
    assert figures.owner("landlord").import_wh == 10


def test_a_prepaid_tenant_is_cut_off_once_and_restored_once_on_a_top_up() -> None:
    book = SettlementBook().open_account("tenant-b", 1_000)
    decisions = []
    for index, (period, readings, pv) in enumerate(quarter_hours()):
        figures = TREE.figures(period, readings)
        book, result = settle_period(book, CONFIG, figures, shared_export={"landlord": pv})
        decisions += [(index, d) for d in result.decisions]
    # B pays 9 per night quarter (216), 223 in the morning (-13,950 each, 223.2 in all),
    # 144 at midday (40 Wh shared at 150): 583 by the evening, when each quarter costs 27.
    # 1,000 - 583.2 - 27 x 15 = 11.8 left after 15 evening quarters; the 16th empties it.
    assert [(i, type(d)) for i, d in decisions] == [(24 + 16 + 24 + 15, CutOff)]
    cut = decisions[0][1]
    assert cut.owner == "tenant-b" and cut.points == ("flat-b",)
    assert book.balances["tenant-b"] == 1_000 - 1_447
    book, restored = book.top_up("tenant-b", 400, cut.at_period)
    assert restored == ()  # -47: still not above zero, nothing switches back yet
    book, restored = book.top_up("tenant-b", 100, cut.at_period)
    assert [type(d) for d in restored] == [Restore]
    assert restored[0].points == ("flat-b",)
    book, again = book.top_up("tenant-b", 1, cut.at_period)
    assert again == ()
