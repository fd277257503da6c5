"""The simulators' physics, driven by a simulated clock: no sleeping, hours pass instantly."""

from __future__ import annotations

import pytest

from edge_controller.devices import (
    Command,
    FuelCellState,
    Quantity,
    SimulatedClock,
)
from edge_controller.simulation import (
    HYDROGEN_EMPTY,
    BatteryModel,
    FuelCellModel,
    HouseholdLoad,
    PvInverter,
    SimulatedSite,
    Weather,
)

HOUR = 3_600_000
MINUTE = 60_000
# 2024-06-01T00:00:00Z, a midnight, so hours below are UTC (= local solar time, offset 0).
DAY_START = 1_717_200_000_000


def test_pv_gives_nothing_at_night_and_peaks_near_solar_noon() -> None:
    pv = PvInverter(5000, start_ms=DAY_START, sunrise_hour=6, sunset_hour=20)
    for hour in (0, 3, 5.9, 20.1, 23):
        assert pv.power_at(DAY_START + int(hour * HOUR)) == 0

    by_minute = {m: pv.power_at(DAY_START + m * MINUTE) for m in range(0, 24 * 60, 5)}
    peak_minute = max(by_minute, key=lambda m: by_minute[m])
    assert abs(peak_minute - 13 * 60) <= 15  # midway between sunrise 6:00 and sunset 20:00
    assert by_minute[peak_minute] == pytest.approx(5000, rel=0.01)
    assert 0 < pv.power_at(DAY_START + 8 * HOUR) < pv.power_at(DAY_START + 11 * HOUR)


def test_pv_daily_yield_matches_the_clear_sky_curve_and_clouds_reduce_it() -> None:
    clear = PvInverter(5000, start_ms=DAY_START, sunrise_hour=6, sunset_hour=20)
    cloudy = PvInverter(
        5000, start_ms=DAY_START, sunrise_hour=6, sunset_hour=20, weather=Weather(0.8, seed=3)
    )
    clear.advance_to(DAY_START + 24 * HOUR)
    cloudy.advance_to(DAY_START + 24 * HOUR)

    # The sin² bell over 14 h of daylight averages half the peak: 5 kW * 14 h / 2 = 35 kWh.
    assert clear.yield_wh == pytest.approx(35_000, rel=0.01)
    assert 0.2 * clear.yield_wh < cloudy.yield_wh < 0.9 * clear.yield_wh
    assert clear.telemetry()[Quantity.EXPORT_ENERGY_WH] == round(clear.yield_wh)


def test_pv_obeys_production_limit_and_off() -> None:
    noon = DAY_START + 13 * HOUR
    pv = PvInverter(5000, start_ms=noon)
    assert pv.obey(Command.EXPORT_LIMIT_W, 800)
    assert pv.telemetry()[Quantity.POWER_W] == 800
    assert pv.obey(Command.EXPORT_LIMIT_W, 99_999)
    assert pv.limit_w == 5000
    assert pv.obey(Command.START_STOP, 0)
    assert pv.telemetry()[Quantity.POWER_W] == 0
    assert not pv.obey(Command.BATTERY_SETPOINT_W, 100)


def test_battery_charging_stores_energy_after_losses() -> None:
    clock = SimulatedClock(DAY_START)
    battery = BatteryModel(10_000, start_ms=clock.now_ms(), soc_percent=20, charge_efficiency=0.9)
    battery.obey(Command.BATTERY_SETPOINT_W, 1000)
    battery.advance_to(clock.advance(HOUR))

    assert battery.stored_wh == pytest.approx(2000 + 900)
    assert battery.charged_wh == pytest.approx(1000)
    telemetry = battery.telemetry()
    assert telemetry[Quantity.SOC_PERCENT] == 29
    assert telemetry[Quantity.BATTERY_POWER_W] == 1000
    assert telemetry[Quantity.IMPORT_ENERGY_WH] == 1000


def test_battery_stops_charging_when_full_and_discharging_when_empty() -> None:
    clock = SimulatedClock(DAY_START)
    battery = BatteryModel(
        5000,
        start_ms=clock.now_ms(),
        soc_percent=90,
        max_charge_w=2000,
        charge_efficiency=0.95,
        discharge_efficiency=0.9,
    )
    battery.obey(Command.BATTERY_SETPOINT_W, 10_000)
    assert battery.power_w() == 2000  # limited by the inverter rating
    battery.advance_to(clock.advance(3 * HOUR))
    assert battery.soc_percent == pytest.approx(100)
    assert battery.charged_wh == pytest.approx(500 / 0.95)
    assert battery.telemetry()[Quantity.BATTERY_POWER_W] == 0

    battery.obey(Command.BATTERY_SETPOINT_W, -2500)
    battery.advance_to(clock.advance(10 * HOUR))
    assert battery.stored_wh == 0
    assert battery.discharged_wh == pytest.approx(5000 * 0.9)
    assert battery.telemetry()[Quantity.BATTERY_POWER_W] == 0


def test_fuel_cell_warms_up_then_ramps_to_its_setpoint() -> None:
    clock = SimulatedClock(DAY_START)
    cell = FuelCellModel(
        5000, hydrogen_g=5000, start_ms=clock.now_ms(), ramp_w_per_s=100, warmup_ms=30_000
    )
    cell.obey(Command.START_STOP, 1)
    cell.advance_to(clock.advance(20_000))
    assert cell.telemetry()[Quantity.STATE] == FuelCellState.STARTING
    assert cell.telemetry()[Quantity.POWER_W] == 0

    cell.advance_to(clock.advance(10_000 + 20_000))  # warm, then 20 s of ramp at 100 W/s
    assert cell.telemetry()[Quantity.STATE] == FuelCellState.RUNNING
    assert cell.telemetry()[Quantity.POWER_W] == 2000

    cell.obey(Command.SETPOINT_W, 9000)  # above the rating: clamped
    cell.advance_to(clock.advance(60_000))
    assert cell.telemetry()[Quantity.POWER_W] == 5000


def test_fuel_cell_burns_hydrogen_in_proportion_to_energy_delivered() -> None:
    clock = SimulatedClock(DAY_START)
    cell = FuelCellModel(2000, hydrogen_g=1000, start_ms=clock.now_ms(), warmup_ms=0)
    cell.obey(Command.START_STOP, 1)
    cell.advance_to(clock.advance(2 * HOUR))

    delivered = cell.delivered_wh
    assert delivered == pytest.approx(4000, rel=0.01)  # 2 h at 2 kW, less a 20 s ramp
    assert 1000 - cell.hydrogen_g == pytest.approx(delivered * 0.060)
    reported = cell.telemetry()[Quantity.HYDROGEN_G]
    assert isinstance(reported, int)
    assert abs(reported - (1000 - delivered * 0.060)) < 1


def test_fuel_cell_stops_in_fault_when_the_tank_is_empty_until_refilled() -> None:
    clock = SimulatedClock(DAY_START)
    cell = FuelCellModel(3000, hydrogen_g=90, start_ms=clock.now_ms(), warmup_ms=0)
    cell.obey(Command.START_STOP, 1)
    cell.advance_to(clock.advance(5 * HOUR))  # 90 g is 1.5 kWh: half an hour at 3 kW

    assert cell.telemetry()[Quantity.STATE] == FuelCellState.FAULT
    assert cell.hydrogen_g == 0
    assert cell.delivered_wh == pytest.approx(1500, rel=0.001)
    telemetry = cell.telemetry()
    assert telemetry[Quantity.POWER_W] == 0
    assert telemetry[Quantity.FAULT_CODES] == (HYDROGEN_EMPTY,)

    cell.obey(Command.START_STOP, 1)
    assert cell.telemetry()[Quantity.STATE] == FuelCellState.FAULT
    cell.refill(500)
    assert cell.telemetry()[Quantity.STATE] == FuelCellState.OFF
    assert cell.faults == ()
    cell.obey(Command.START_STOP, 1)
    cell.advance_to(clock.advance(MINUTE))
    assert cell.telemetry()[Quantity.STATE] == FuelCellState.RUNNING


def test_fuel_cell_stop_ramps_down_to_off() -> None:
    clock = SimulatedClock(DAY_START)
    cell = FuelCellModel(1000, hydrogen_g=1000, start_ms=clock.now_ms(), warmup_ms=0)
    cell.obey(Command.START_STOP, 1)
    cell.advance_to(clock.advance(MINUTE))
    cell.obey(Command.START_STOP, 0)
    cell.advance_to(clock.advance(5_000))
    assert cell.telemetry()[Quantity.STATE] == FuelCellState.STOPPING
    assert cell.telemetry()[Quantity.POWER_W] == 500
    cell.advance_to(clock.advance(MINUTE))
    assert cell.telemetry()[Quantity.STATE] == FuelCellState.OFF
    assert cell.telemetry()[Quantity.POWER_W] == 0


def test_household_load_peaks_in_the_evening_and_sums_to_its_daily_energy() -> None:
    load = HouseholdLoad(12_000, start_ms=DAY_START, variation=0.15)
    night = load.power_at(DAY_START + 3 * HOUR + 30 * MINUTE)
    evening = load.power_at(DAY_START + 19 * HOUR + 30 * MINUTE)
    assert evening > 2.5 * night

    load.advance_to(DAY_START + 24 * HOUR)
    assert load.consumed_wh == pytest.approx(12_000, rel=0.03)
    assert not load.obey(Command.SETPOINT_W, 1)


def test_site_export_limit_curtails_pv_so_feed_in_stays_under_it() -> None:
    noon = DAY_START + 13 * HOUR
    site = SimulatedSite(
        PvInverter(8000, start_ms=noon),
        BatteryModel(10_000, start_ms=noon),
        HouseholdLoad(8000, start_ms=noon),
        start_ms=noon,
    )
    assert site.grid_power_w() < -5000  # exporting most of the 8 kW

    site.obey(Command.EXPORT_LIMIT_W, 1000)
    site.advance_to(noon + HOUR)
    assert site.grid_power_w() >= -1001
    assert site.exported_wh == pytest.approx(1000, rel=0.02)

    site.obey(Command.BATTERY_SETPOINT_W, 3000)
    site.advance_to(noon + 2 * HOUR)
    telemetry = site.telemetry()
    assert telemetry[Quantity.BATTERY_POWER_W] == 3000
    assert telemetry[Quantity.SOC_PERCENT] == 78  # 50 % + 3 kWh * 0.95 of 10 kWh
