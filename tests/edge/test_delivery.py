"""Trades become energy and money: real edge controller processes over a real Mosquitto.

One street trades through one short window (12 s, metered every 2 s). The Hydrogen House
sells fuel-cell capacity, the Solar House sells battery energy, the Flat buys, and the
Annex buys with a meter of its own. The simulated devices speak MQTT in the test process
and remember every command they obey, so the tests see what each home told its hardware
and when. Each trade plays one situation: delivered as agreed, under-delivered (the fuel
cell runs dry), over-delivered (an inverter that overshoots), disputed by the buyer's
meter, terminated mid-window, and metered by a meter that stops reporting; one more offer
is never bought, so its battery must never be commanded.

Windows last seconds instead of hours, so the powers are scaled up: 30 kW for 12 s is
100 Wh. Prices are 2 000 milli-units per kWh, so 100 Wh cost 200.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from edge_controller.config import parse_config
from edge_controller.devices import Command
from edge_controller.ledger import energy_of
from edge_controller.simulation import BatteryModel, FuelCellModel, HouseholdLoad

from .delivery_support import (
    BATTERY_COMMANDS,
    BATTERY_QUANTITIES,
    FUEL_CELL_COMMANDS,
    FUEL_CELL_QUANTITIES,
    METER_QUANTITIES,
    Obeyed,
    OvershootingBattery,
    Rack,
    Rig,
    StoredRecord,
    WebSocketListener,
    chain_verifies,
    cost,
    now_ms,
    process_alive,
    sleep_until,
    start_mosquitto,
    stored_records,
)
from .support import Community, EdgeProcess, wait_until

pytestmark = pytest.mark.slow

PERIOD_S = 2
PERIOD_MS = PERIOD_S * 1000
WINDOW_MS = 12_000
LEAD_MS = 8_000  # time for the offers to be sealed and bought before the window opens
POWER_W = 30_000  # 30 kW for 12 s: 100 Wh
ENERGY_WH = 100
PRICE = 2_000  # milli-units per kWh
TOP_UP = 100_000
NO_POLICY = {
    "sell": {"auto_sell": False, "battery": None, "pv": None, "fuel_cell": None},
    "buy": {"auto_accept": False},
}


def fuel_cell_rig(name: str, hydrogen_g: float) -> Rig:
    """The Hydrogen House's 60 kW fuel cell that warms up and ramps at once (the window is
    only seconds long)."""
    cell = FuelCellModel(
        60_000, hydrogen_g, start_ms=now_ms(), warmup_ms=0, ramp_w_per_s=10_000_000
    )
    return Rig("hydrogen", name, "fuel_cell", cell, FUEL_CELL_QUANTITIES, FUEL_CELL_COMMANDS)


def battery_rig(name: str, model: type[BatteryModel] = BatteryModel, stale_after_s: int = 5) -> Rig:
    """The Solar House's 5 kWh battery at 60 %, whose inverter gives up to 100 kW."""
    battery = model(5_000, start_ms=now_ms(), soc_percent=60.0, max_discharge_w=100_000)
    return Rig(
        "solar", name, "battery", battery, BATTERY_QUANTITIES, BATTERY_COMMANDS, stale_after_s
    )


@dataclass
class Sale:
    """One situation of the street: who sells what to whom, and the trade it became."""

    rig: Rig
    buyer: str
    mode: str
    quantity: int
    trade_id: str = ""


@dataclass
class Street:
    community: Community
    homes: dict[str, EdgeProcess]
    rigs: dict[str, Rig]
    sales: dict[str, Sale]
    start: int
    end: int
    idle_offer: str
    terminated_at: int
    silenced_at: int

    def trade(self, situation: str, home: str = "flat") -> dict[str, Any]:
        """The trade of a situation as `home` lists it (`GET trades?all=1`)."""
        trade_id = self.sales[situation].trade_id
        trades = self.homes[home].get("trades?all=1")["trades"]
        return next(t for t in trades if t["id"] == trade_id)

    def records(self, home: str = "flat") -> list[StoredRecord]:
        return stored_records(
            self.community.folder / home / "ledger.sqlite3", self.community.genesis
        )

    def readings(self, resource: str, home: str = "flat") -> list[dict[str, Any]]:
        return [
            r.body | {"signer": r.signer}
            for r in self.records(home)
            if r.kind == "meter_reading" and r.body["resource"] == resource
        ]


def registered_and_topped_up(home: EdgeProcess) -> bool:
    devices = home.get("devices")["devices"]
    return all(d["resource"] for d in devices) and home.get("wallet")["balance"] == TOP_UP


def lists_offer(home: EdgeProcess, offer_id: str) -> bool:
    return any(o["id"] == offer_id for o in home.get("offers")["offers"])


def holds_trade(home: EdgeProcess, trade_id: str) -> bool:
    return any(t["id"] == trade_id for t in home.get("trades")["trades"])


def _settled_and_rated(homes: dict[str, EdgeProcess], trade_ids: list[str]) -> bool:
    for home in homes.values():
        trades = {t["id"]: t for t in home.get("trades?all=1")["trades"]}
        for trade_id in trade_ids:
            trade = trades.get(trade_id)
            if trade is None or trade["status"] != "settled":
                return False
            if trade["buyer_rating"] is None or trade["seller_rating"] is None:
                return False
    return True


@pytest.fixture(scope="module")
def street(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Street]:
    folder = tmp_path_factory.mktemp("street")
    broker = start_mosquitto(folder)
    community = Community(folder, ["hydrogen", "solar", "flat", "annex"])
    rigs = {
        rig.name: rig
        for rig in [
            fuel_cell_rig("fuel-cell", 1_500),
            fuel_cell_rig("fuel-cell-dry", 2.4),  # 2.4 g of hydrogen make 40 Wh
            fuel_cell_rig("fuel-cell-2", 1_500),
            battery_rig("battery"),
            battery_rig("battery-big", OvershootingBattery),
            battery_rig("battery-quiet", stale_after_s=2),
            battery_rig("battery-idle"),
            battery_rig("battery-annex"),
            # The Annex's own meter: about 1 kW of household load, far below 30 kW.
            Rig(
                "annex",
                "meter",
                "meter",
                HouseholdLoad(24_000, start_ms=now_ms(), variation=0.0),
                METER_QUANTITIES,
            ),
        ]
    }
    sales = {
        "capacity": Sale(rigs["fuel-cell"], "flat", "capacity", POWER_W),
        "energy": Sale(rigs["battery"], "flat", "energy", ENERGY_WH),
        "under": Sale(rigs["fuel-cell-dry"], "flat", "capacity", POWER_W),
        "over": Sale(rigs["battery-big"], "flat", "energy", ENERGY_WH),
        "terminated": Sale(rigs["fuel-cell-2"], "flat", "capacity", POWER_W),
        "silent": Sale(rigs["battery-quiet"], "flat", "energy", ENERGY_WH),
        "disputed": Sale(rigs["battery-annex"], "annex", "energy", ENERGY_WH),
    }
    quiet = Rack(broker.port, [rigs["battery-quiet"]])
    rack = Rack(broker.port, [r for r in rigs.values() if r is not rigs["battery-quiet"]])
    homes: dict[str, EdgeProcess] = {}
    try:
        rack.start()
        quiet.start()
        for name in community.homes:
            config = community.config(
                name,
                broker.port,
                devices=[r.edge_device() for r in rigs.values() if r.home == name],
                policy=NO_POLICY,
                settlement_period_s=PERIOD_S,
                # These homes rate by themselves at once: no owner here to wait for.
                rating_grace_s=0,
            )
            homes[name] = EdgeProcess(config, folder / f"{name}.log").start()
        registrar_relay = homes["flat"]
        for rig in rigs.values():
            if rig.role == "meter":
                record = community.registration(rig.home, rig.resource, "meter", 0, 0)
            elif rig.name == "fuel-cell-dry":
                # Registered for its power only: nothing tells the ledger the tank is low.
                record = community.registration(rig.home, rig.resource, "fuel_cell", 60_000, 0)
            elif rig.role == "fuel_cell":
                record = community.registration(rig.home, rig.resource, "fuel_cell", 60_000, 25_000)
            else:
                record = community.registration(
                    rig.home, rig.resource, "battery", 100_000, 5_000, 3_000
                )
            registrar_relay.post("records", record)
        for name in community.homes:
            registrar_relay.post("records", community.topup(name, TOP_UP))
        for name, home in homes.items():
            wait_until(
                partial(registered_and_topped_up, home),
                what=f"{name}'s resources and top-up in its ledger",
            )

        start = -(-(now_ms() + LEAD_MS) // PERIOD_MS) * PERIOD_MS
        end = start + WINDOW_MS
        window = {"price": PRICE, "start": start, "end": end, "expires": start}
        offers: dict[str, str] = {}
        for situation, sale in sales.items():
            seller = homes[sale.rig.home]
            offers[situation] = seller.post(
                "offers",
                {
                    "resource": sale.rig.resource,
                    "mode": sale.mode,
                    "quantity": sale.quantity,
                    "to": [homes[sale.buyer].account],
                    **window,
                },
            )["id"]
        idle_offer = homes["solar"].post(
            "offers",
            {
                "resource": rigs["battery-idle"].resource,
                "mode": "energy",
                "quantity": ENERGY_WH,
                "to": [homes["flat"].account],
                **window,
            },
        )["id"]
        for situation, sale in sales.items():
            buyer = homes[sale.buyer]
            offer_id = offers[situation]
            wait_until(partial(lists_offer, buyer, offer_id), what=f"the {situation} offer")
            sale.trade_id = buyer.post(f"offers/{offer_id}/accept")["acceptance"]
        for situation, sale in sales.items():
            seller = homes[sale.rig.home]
            wait_until(
                partial(holds_trade, seller, sale.trade_id),
                timeout=max(1.0, (start - now_ms()) / 1000),
                what=f"the {situation} trade in the seller's ledger before its window opens",
            )

        # Mid-window: the Flat terminates one trade and one seller's meter falls silent.
        sleep_until(start + 5_000)
        terminated_at = now_ms()
        homes["flat"].post(f"trades/{sales['terminated'].trade_id}/terminate")
        silenced_at = now_ms()
        quiet.stop()

        sleep_until(end)
        wait_until(
            lambda: _settled_and_rated(homes, [s.trade_id for s in sales.values()]),
            timeout=60,
            what="every trade settled and rated in every home",
        )
        yield Street(
            community=community,
            homes=homes,
            rigs=rigs,
            sales=sales,
            start=start,
            end=end,
            idle_offer=idle_offer,
            terminated_at=terminated_at,
            silenced_at=silenced_at,
        )
    finally:
        for home in homes.values():
            home.stop()
        quiet.stop()
        rack.stop()
        broker.stop()


def paid_wh(trade: dict[str, Any]) -> int:
    """The energy a settled trade was paid for: what was delivered, at most what was agreed,
    at most what the buyer measured when it disputed."""
    wh = int(min(trade["delivered_wh"], trade["energy_wh"]))
    measured = trade["buyer_measured_wh"]
    return wh if measured is None else min(wh, int(measured))


def setpoints(commands: list[Obeyed]) -> list[Obeyed]:
    return [c for c in commands if c.command in (Command.SETPOINT_W, Command.BATTERY_SETPOINT_W)]


# --- a trade delivered as agreed -----------------------------------------------------------


def test_the_sellers_devices_are_driven_only_inside_the_trade_windows(street: Street) -> None:
    for situation, power in (("capacity", POWER_W), ("energy", -POWER_W)):
        commands = street.sales[situation].rig.recording.commands
        assert commands, f"the {situation} seller's device was never commanded"
        # Nothing before the window opens ...
        assert min(c.at_ms for c in commands) >= street.start, commands
        driven = [c for c in setpoints(commands) if c.value != 0]
        # ... the trade's power while it runs (a battery discharges: negative) ...
        assert {c.value for c in driven} == {power}, commands
        assert max(c.at_ms for c in driven) < street.end + 500, commands
        # ... and back to zero within moments of the window's end, for good.
        last = setpoints(commands)[-1]
        assert last.value == 0 and street.end <= last.at_ms < street.end + 4_000, commands
    fuel_cell = street.sales["capacity"].rig.recording.commands
    assert fuel_cell[0].command == Command.START_STOP and fuel_cell[0].value == 1

    # An offer nobody bought is no trade: its battery is never touched.
    offer = street.homes["solar"].get(f"offers/{street.idle_offer}")
    assert offer["remaining"] == ENERGY_WH
    assert street.rigs["battery-idle"].recording.commands == []


def test_meter_readings_are_signed_by_the_sellers_meter_key_and_cover_the_window(
    street: Street,
) -> None:
    for situation, seller in (("capacity", "hydrogen"), ("energy", "solar")):
        resource = street.sales[situation].rig.resource
        readings = street.readings(resource)
        assert readings, f"no meter readings of {resource}"
        assert {r["signer"] for r in readings} == {street.community.meters[seller].public_hex}
        # Contiguous periods of the configured length, across the whole window.
        in_window = [r for r in readings if r["start"] < street.end and street.start < r["end"]]
        assert in_window[0]["start"] <= street.start and in_window[-1]["end"] >= street.end
        for before, after in itertools.pairwise(in_window):
            assert after["start"] == before["end"]
        assert all(r["end"] - r["start"] >= PERIOD_MS for r in in_window)
        metered = sum(r["export_wh"] for r in in_window)
        trade = street.trade(situation)
        assert trade["delivered_wh"] <= metered
    # Every home's stored chain checks out, signatures included.
    for home in street.homes:
        ok, message = chain_verifies(
            street.community.folder / home / "ledger.sqlite3", street.community.genesis
        )
        assert ok, f"{home}: {message}"


def test_a_delivered_trade_pays_the_seller_for_what_was_metered_and_refunds_the_rest(
    street: Street,
) -> None:
    capacity = street.trade("capacity")
    energy = street.trade("energy")
    assert capacity["energy_wh"] == energy_of("capacity", POWER_W, street.start, street.end)
    assert energy["energy_wh"] == ENERGY_WH
    for trade in (capacity, energy):
        assert trade["status"] == "settled"
        assert trade["cost"] == cost(ENERGY_WH, PRICE) == 200
        # The device follows within a control cycle: most of it arrives, never more.
        assert 0.8 * ENERGY_WH <= trade["delivered_wh"] <= ENERGY_WH, trade
        assert trade["paid"] == cost(trade["delivered_wh"], PRICE)
        assert trade["refunded"] == trade["cost"] - trade["paid"]
        assert not trade["disputed"]
        # Both parties rated: the seller by its delivery, the buyer for paying.
        assert trade["buyer_rating"] >= 8 and trade["seller_rating"] == 10
    # The fuel cell really produced it, and its hydrogen paid for it.
    cell = street.rigs["fuel-cell"].hardware
    assert isinstance(cell, FuelCellModel)
    assert cell.delivered_wh >= capacity["delivered_wh"] - 1 and cell.hydrogen_g < 1_500


def test_every_home_holds_the_same_settled_trades_and_wallets_that_match_them(
    street: Street,
) -> None:
    homes = street.homes
    views = {
        name: {
            t["id"]: {k: v for k, v in t.items() if k != "role"}
            for t in home.get("trades?all=1")["trades"]
        }
        for name, home in homes.items()
    }
    first = views["flat"]
    assert {s.trade_id for s in street.sales.values()} <= set(first)
    for name, view in views.items():
        assert view == first, f"{name} holds other trades than the flat"
    for name, home in homes.items():
        account = home.account
        earned = sum(t["paid"] for t in first.values() if t["seller"] == account)
        spent = sum(t["paid"] for t in first.values() if t["buyer"] == account)
        sold = sum(paid_wh(t) for t in first.values() if t["seller"] == account)
        expected = {"balance": TOP_UP + earned - spent, "escrow": 0, "energy_sold_wh": sold}
        for viewer in homes.values():
            wallet = viewer.get(f"wallet?account={account}")
            assert {k: wallet[k] for k in expected} == expected, f"{name} as {viewer.url} sees"
    # The sellers earned something, the buyers spent it: money is conserved.
    assert sum(homes[n].get("wallet")["balance"] for n in homes) == 4 * TOP_UP


# --- deliveries that went wrong --------------------------------------------------------------


def test_a_fuel_cell_running_dry_is_paid_only_for_what_it_delivered(street: Street) -> None:
    trade = street.trade("under")
    agreed = energy_of("capacity", POWER_W, street.start, street.end)
    # 2.4 g of hydrogen give 40 Wh of the 100 Wh sold.
    assert 25 <= trade["delivered_wh"] <= 45, trade
    assert trade["paid"] == cost(trade["delivered_wh"], PRICE)
    assert trade["refunded"] == cost(agreed, PRICE) - trade["paid"] > 0
    assert trade["buyer_rating"] <= 5
    cell = street.rigs["fuel-cell-dry"].hardware
    assert isinstance(cell, FuelCellModel) and cell.hydrogen_g == 0 and cell.faults


def test_an_over_delivering_battery_is_paid_only_the_agreed_amount(street: Street) -> None:
    trade = street.trade("over")
    resource = street.sales["over"].rig.resource
    metered = sum(
        r["export_wh"]
        * (min(r["end"], street.end) - max(r["start"], street.start))
        // (r["end"] - r["start"])
        for r in street.readings(resource)
        if r["start"] < street.end and street.start < r["end"]
    )
    assert metered >= 1.5 * ENERGY_WH, "the overshooting battery should export about twice"
    assert trade["delivered_wh"] == ENERGY_WH
    assert (trade["paid"], trade["refunded"]) == (cost(ENERGY_WH, PRICE), 0)
    assert trade["buyer_rating"] == 10


def test_a_buyer_whose_meter_measured_less_disputes_and_pays_only_its_own_figure(
    street: Street,
) -> None:
    trade = street.trade("disputed", home="annex")
    annex = street.community.account("annex")
    disputes = [
        r for r in street.records("annex") if r.kind == "dispute" and r.body["trade"] == trade["id"]
    ]
    assert len(disputes) == 1 and disputes[0].signer == street.community.keys["annex"].public_hex
    assert trade["disputed"] is True and trade["buyer"] == annex
    measured = trade["buyer_measured_wh"]
    assert measured == disputes[0].body["measured_wh"]
    # The Annex's meter took in about 1 kW for 12 s (4 Wh), the battery sent 100 Wh.
    assert measured < 20 <= trade["delivered_wh"], trade
    assert trade["paid"] == cost(measured, PRICE)
    assert trade["refunded"] == trade["cost"] - trade["paid"]
    assert trade["seller_rating"] < 10  # the seller marks down a disputing buyer
    # The Annex's own import was metered and signed with its meter key.
    readings = street.readings("annex/meter", home="annex")
    assert readings and {r["signer"] for r in readings} == {
        street.community.meters["annex"].public_hex
    }


def test_terminating_mid_window_stops_the_fuel_cell_and_pays_for_the_shortened_agreement(
    street: Street,
) -> None:
    trade = street.trade("terminated")
    # The agreement now ends when the termination was sealed, soon after it was asked.
    assert street.terminated_at <= trade["end"] < street.terminated_at + 4_000
    shortened = energy_of("capacity", POWER_W, street.start, trade["end"])
    assert trade["energy_wh"] == shortened < ENERGY_WH
    commands = setpoints(street.sales["terminated"].rig.recording.commands)
    last = commands[-1]
    assert last.value == 0 and trade["end"] <= last.at_ms < trade["end"] + 3_000, commands
    assert all(c.at_ms < trade["end"] + 500 for c in commands if c.value != 0), commands
    assert 0.5 * shortened <= trade["delivered_wh"] <= shortened, trade
    assert trade["paid"] == cost(trade["delivered_wh"], PRICE)
    assert trade["refunded"] == cost(ENERGY_WH, PRICE) - trade["paid"]


def test_a_meter_that_stops_reporting_settles_for_what_was_metered(street: Street) -> None:
    trade = street.trade("silent")
    resource = street.sales["silent"].rig.resource
    readings = street.readings(resource)
    # Nothing was metered after the meter fell silent (5 s into the 12 s window) ...
    assert readings and readings[-1]["end"] <= street.silenced_at + PERIOD_MS
    metered = sum(r["export_wh"] for r in readings)
    # ... so the trade settled for that part only, and the rest went back to the Flat.
    assert 0 < trade["delivered_wh"] <= metered < 0.7 * ENERGY_WH, trade
    assert trade["paid"] == cost(trade["delivered_wh"], PRICE)
    assert trade["refunded"] == trade["cost"] - trade["paid"] > 0
    solar = street.homes["solar"]
    assert process_alive(solar.process) and solar.get("status")["broker"]["connected"]


# --- prepaid ----------------------------------------------------------------------------------


@pytest.fixture
def prepaid(tmp_path: Path, mosquitto: Any) -> Iterator[dict[str, Any]]:
    community = Community(tmp_path, ["solar", "student"])
    homes = {
        name: EdgeProcess(
            community.config(name, mosquitto.port, policy=NO_POLICY, settlement_period_s=PERIOD_S),
            tmp_path / f"{name}.log",
        )
        for name in community.homes
    }
    listener: WebSocketListener | None = None
    try:
        for home in homes.values():
            home.start()
        solar, student = homes["solar"], homes["student"]
        solar.post(
            "records",
            community.registration("solar", "solar/battery", "battery", 3_000, 5_000),
        )
        # A community of the latest rules hears only funded accounts, sellers included.
        solar.post("records", community.topup("solar", 1_000))
        listener = WebSocketListener(student.url, student.token).start()
        yield {"community": community, "homes": homes, "ws": listener}
    finally:
        if listener is not None:
            listener.stop()
        for home in homes.values():
            home.stop()


def test_a_prepaid_account_reaching_zero_is_cut_off_once_and_a_top_up_restores_it(
    prepaid: dict[str, Any],
) -> None:
    community: Community = prepaid["community"]
    solar, student = prepaid["homes"]["solar"], prepaid["homes"]["student"]
    ws: WebSocketListener = prepaid["ws"]
    # A home with nothing in its wallet starts cut off; its first top-up restores it.
    solar.post("records", community.topup("student", 500))
    wait_until(lambda: student.get("wallet")["balance"] == 500, what="the student's top-up")
    assert student.get("wallet")["cut_off"] is False
    first = wait_until(lambda: ws.events("prepaid_restored"), what="the first restore")
    assert len(first) == 1 and first[0]["data"]["balance"] == 500

    # The student spends its last 500 on 250 Wh at 2 000 per kWh.
    start = now_ms() + 120_000
    offers = [
        solar.post(
            "offers",
            {
                "resource": "solar/battery",
                "mode": "energy",
                "quantity": 250,
                "price": PRICE,
                "start": start,
                # 250 Wh in 5 minutes is 3 kW, the battery's rating.
                "end": start + 300_000,
                "to": [student.account],
            },
        )["id"]
        for _ in range(2)
    ]
    wait_until(
        lambda: {o["id"] for o in student.get("offers")["offers"]} >= set(offers),
        what="the offers at the student",
    )
    student.post(f"offers/{offers[0]}/accept")
    wallet = wait_until(
        lambda: (w := student.get("wallet"))["cut_off"] and w,
        what="the cut-off in the wallet",
    )
    assert (wallet["balance"], wallet["escrow"]) == (0, 500)
    wait_until(lambda: ws.events("prepaid_cutoff"), what="the prepaid_cutoff event")

    # More of the student's own records in the ledger, still at zero: no second cut-off.
    student.post(f"offers/{offers[1]}/reject", {"reason": "no money left"})
    wait_until(
        lambda: any(
            r["kind"] == "rejection" and r["account"] == student.account
            for b in student.get("ledger/blocks?limit=20")["blocks"]
            for r in b["records"]
        ),
        what="the student's rejection sealed",
    )
    time.sleep(1.5)  # a block or two more
    assert len(ws.events("prepaid_cutoff")) == 1
    assert len(ws.events("prepaid_restored")) == 1

    solar.post("records", community.topup("student", 1_000))
    wallet = wait_until(
        lambda: (w := student.get("wallet"))["balance"] == 1_000 and w,
        what="the second top-up",
    )
    assert wallet["cut_off"] is False
    restored = wait_until(
        lambda: (r := ws.events("prepaid_restored"))[1:] and r, what="prepaid_restored"
    )
    assert len(restored) == 2 and restored[1]["data"]["balance"] == 1_000
    cutoff = ws.events("prepaid_cutoff")
    assert len(cutoff) == 1 and cutoff[0]["data"]["balance"] == 0
    assert cutoff[0]["data"]["cut_off"] is True


# --- configuration ----------------------------------------------------------------------------


def test_an_edge_yaml_may_set_a_short_settlement_period(tmp_path: Path) -> None:
    genesis = tmp_path / "genesis.json"
    genesis.write_text("{}")
    config = parse_config(
        {"name": "x", "genesis": str(genesis), "settlement_period_s": PERIOD_S}, base=tmp_path
    )
    assert config.settlement_period_ms == PERIOD_MS
