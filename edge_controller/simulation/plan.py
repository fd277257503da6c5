"""The demo's homes, planned: each one's simulated hardware, its devices as the edge
controller configures them, the ledger resources the registrar certifies, and its owner's
trading policy.

`plan_homes` gives a PV + battery home whose battery is about to cross its selling
threshold, a hydrogen fuel-cell home with free capacity to sell, and consumer homes that buy
by their owners' criteria; the first consumer has a virtual USB hub with a meter and a
phone to plug in. The simulated sun is at local noon whatever the hour. `HomePlan.simulate`
builds a home's simulated world (`SimulatedHome`); the edge controller side of a plan
(`devices`, `policy`, `usb`) is production configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_controller.building_config import BuildingConfig, BuildingSection
from edge_controller.config import DeviceConfig, UsbConfig
from edge_controller.devices import Clock, Command, Quantity, simple_generic_profile
from edge_controller.devices.roles import Role
from edge_controller.ledger import KeyPair
from edge_controller.market import (
    AcceptanceCriteria,
    BatterySellRule,
    FixedPrice,
    FuelCellSellRule,
    MarketPolicy,
    QuantityRange,
    SellPolicy,
)
from edge_controller.market.checks import from_dict
from edge_controller.simulation.building import MAIN, ROOF, SimulatedBuilding
from edge_controller.simulation.models import (
    BatteryModel,
    FuelCellModel,
    PvInverter,
    SimulatedHardware,
)
from edge_controller.simulation.mqtt_device import SimulatedMqttDevice
from edge_controller.simulation.site import HouseholdLoad, SimulatedSite
from edge_controller.simulation.usb_world import VirtualUsbWorld
from edge_controller.simulation.world import SimulatedHome
from edge_controller.usb.charging import UsbSettings

# The demo's device topics are `demo/<home>/<device>`, its control topics `demo/sim/<home>/...`.
TOPIC_PREFIX = "demo"
# The consumer's phone: a USB-PD fast-charging phone buys 1 Wh (about a minute at 60 W on a
# 20 V contract) at this price, in milli-units per kWh.
USB_PRICE = 2_000
VIRTUAL_HUB_PORTS = 4

SITE_QUANTITIES = (
    Quantity.GRID_POWER_W,
    Quantity.IMPORT_ENERGY_WH,
    Quantity.EXPORT_ENERGY_WH,
    Quantity.SOC_PERCENT,
    Quantity.CAPACITY_WH,
    Quantity.BATTERY_POWER_W,
    Quantity.POWER_W,
    Quantity.EXPORT_LIMIT_W,
)
METER_QUANTITIES = (Quantity.POWER_W, Quantity.IMPORT_ENERGY_WH)
FUEL_CELL_QUANTITIES = (
    Quantity.POWER_W,
    Quantity.POWER_RATING_W,
    Quantity.STATE,
    Quantity.HYDROGEN_G,
    Quantity.FAULT_CODES,
    Quantity.EXPORT_ENERGY_WH,
)


@dataclass
class ResourcePlan:
    """A ledger resource of a demo home, as the registrar registers it."""

    id: str
    kind: str
    power_w: int
    capacity_wh: int
    available_wh: int


@dataclass
class HomePlan:
    """One demo home: who it is, what hardware it has, how its owner trades."""

    name: str
    slug: str
    hardware: list[tuple[str, SimulatedHardware, Sequence[Quantity], Sequence[Command]]]
    devices: list[DeviceConfig]
    resources: list[ResourcePlan]
    policy: MarketPolicy
    usb: UsbConfig | None = None
    # Phones to plug into the virtual hub once the home runs: (port, the plug message).
    phones: tuple[tuple[int, dict[str, Any]], ...] = ()
    key: KeyPair = field(default_factory=KeyPair.generate)
    meter: KeyPair = field(default_factory=KeyPair.generate)
    # `building:` as edge.yaml would say it; the landlord's account is this home's own.
    building: dict[str, Any] | None = None

    def building_config(self) -> BuildingConfig | None:
        """The home's building, read by the one checker like edge.yaml's section."""
        if self.building is None:
            return None
        document = dict(self.building)
        document["owners"] = [
            {**o, "account": self.key.account} if o.get("landlord") is True else o
            for o in document["owners"]
        ]
        for owner in document["owners"]:
            owner.pop("landlord", None)
        return from_dict(BuildingSection, document).config()

    def simulate(self, clock: Clock) -> SimulatedHome:
        """This home's simulated world on `clock`: its devices as MQTT simulators in the
        layout its device profiles read, and a virtual USB hub when it sells USB charge."""
        devices = {
            name: SimulatedMqttDevice(
                f"{self.slug}/{name}",
                hardware,
                simple_generic_profile(f"{TOPIC_PREFIX}/{self.slug}/{name}", quantities, commands),
                clock,
            )
            for name, hardware, quantities, commands in self.hardware
        }
        usb = None
        if self.usb is not None:
            usb = VirtualUsbWorld(clock, ports=VIRTUAL_HUB_PORTS, meter_port=self.usb.meter_port)
        return SimulatedHome(TOPIC_PREFIX, self.slug, devices, usb, clock)


def demo_sell_policy(**rules: Any) -> SellPolicy:
    """Short windows and delays so a newcomer sees trades within a minute."""
    return SellPolicy(
        auto_sell=True,
        battery=rules.get("battery"),
        pv=None,
        fuel_cell=rules.get("fuel_cell"),
        pricing=FixedPrice(rules.get("price", 280)),
        min_offer_interval_ms=60_000,
        delivery_lead_ms=10_000,
        delivery_window_ms=90_000,
        offer_validity_ms=45_000,
    )


def consumer_policy(max_price: int = 350) -> MarketPolicy:
    """A consumer's owner: buys automatically up to `max_price`, counter-offering above."""
    return MarketPolicy(
        sell=SellPolicy(auto_sell=False, battery=None, pv=None, fuel_cell=None),
        buy=AcceptanceCriteria(
            auto_accept=True,
            max_price=max_price,
            counter_margin=50,
            energy=QuantityRange(50, 2_000),
            capacity=QuantityRange(100, 2_000),
        ),
    )


def plan_homes(count: int, now: int) -> list[HomePlan]:
    """The demo's homes: PV + battery, fuel cell, then consumers (and more batteries)."""
    utc_hour = (now // 3_600_000) % 24
    offset = float(12 - utc_hour)  # local noon, so the simulated sun shines
    homes: list[HomePlan] = []
    for i in range(count):
        kind = ("solar", "hydrogen", "consumer")[i] if i < 3 else ("consumer", "solar")[i % 2]
        slug = f"{kind}-{i + 1}"
        if kind == "solar":
            site = SimulatedSite(
                PvInverter(6_000, start_ms=now, utc_offset_hours=offset),
                BatteryModel(5_000, start_ms=now, soc_percent=80.1, max_discharge_w=3_000),
                HouseholdLoad(8_000, start_ms=now, utc_offset_hours=offset, seed=i),
                start_ms=now,
            )
            # Charging from the midday surplus: the battery crosses 80 % within a minute.
            site.battery.setpoint_w = 2_500
            taps, building = demo_building(slug, site, now, offset) if i == 0 else ([], None)
            profile = simple_generic_profile(
                f"{TOPIC_PREFIX}/{slug}/site",
                SITE_QUANTITIES,
                (Command.BATTERY_SETPOINT_W, Command.EXPORT_LIMIT_W),
            )
            homes.append(
                HomePlan(
                    name=f"Sunny House {i + 1}" if i else "Sunny House",
                    slug=slug,
                    hardware=[
                        (
                            "site",
                            site,
                            SITE_QUANTITIES,
                            (Command.BATTERY_SETPOINT_W, Command.EXPORT_LIMIT_W),
                        ),
                        *((name, hardware, q, c) for name, hardware, q, c, _ in taps),
                    ],
                    devices=[
                        DeviceConfig("battery", Role.BATTERY, profile, f"{slug}/battery", 15_000),
                        DeviceConfig("pv", Role.PV, profile, f"{slug}/pv", 15_000),
                        DeviceConfig("grid", Role.GRID_METER, profile, "", 15_000),
                        *(device for *_, device in taps),
                    ],
                    building=building,
                    resources=[
                        ResourcePlan(f"{slug}/battery", "battery", 3_000, 5_000, 3_970),
                        ResourcePlan(f"{slug}/pv", "pv", 6_000, 0, 0),
                    ],
                    policy=MarketPolicy(
                        sell=demo_sell_policy(
                            battery=BatterySellRule(
                                enable_soc_percent=80,
                                disable_soc_percent=75,
                                reserve_percent=40,
                                enable_delay_ms=3_000,
                                disable_delay_ms=10_000,
                                min_offer_wh=20,
                            ),
                            price=260,
                        ),
                        buy=AcceptanceCriteria(auto_accept=False),
                    ),
                )
            )
        elif kind == "hydrogen":
            cell = FuelCellModel(5_000, 1_500.0, start_ms=now, warmup_ms=5_000)
            cell.start()
            commands = (Command.SETPOINT_W, Command.START_STOP)
            profile = simple_generic_profile(
                f"{TOPIC_PREFIX}/{slug}/fuel-cell", FUEL_CELL_QUANTITIES, commands
            )
            homes.append(
                HomePlan(
                    name="Hydrogen House",
                    slug=slug,
                    hardware=[("fuel-cell", cell, FUEL_CELL_QUANTITIES, commands)],
                    devices=[
                        DeviceConfig(
                            "fuel-cell", Role.FUEL_CELL, profile, f"{slug}/fuel-cell", 15_000
                        )
                    ],
                    resources=[
                        ResourcePlan(f"{slug}/fuel-cell", "fuel_cell", 5_000, 25_000, 25_000)
                    ],
                    policy=MarketPolicy(
                        sell=demo_sell_policy(
                            fuel_cell=FuelCellSellRule(
                                enable_free_w=1_000,
                                disable_free_w=500,
                                reserve_wh=2_000,
                                enable_delay_ms=5_000,
                                disable_delay_ms=10_000,
                                min_offer_w=500,
                            ),
                            price=320,
                        ),
                        buy=AcceptanceCriteria(auto_accept=False),
                    ),
                )
            )
        else:
            # The flat's own meter (an EV charging at midday): its import is what the
            # flat's home compares with the seller's export for each trade.
            load = HouseholdLoad(110_000, start_ms=now, utc_offset_hours=offset, seed=i)
            profile = simple_generic_profile(f"{TOPIC_PREFIX}/{slug}/meter", METER_QUANTITIES)
            homes.append(
                HomePlan(
                    name=f"Flat {i + 1}",
                    slug=slug,
                    hardware=[("meter", load, METER_QUANTITIES, ())],
                    devices=[DeviceConfig("meter", Role.METER, profile, f"{slug}/meter", 15_000)],
                    resources=[
                        ResourcePlan(f"{slug}/meter", "meter", 0, 0, 0),
                        *(
                            [ResourcePlan(f"{slug}/usb-1", "usb_port", 60, 1_000, 1_000)]
                            if i == 2
                            else []
                        ),
                    ],
                    policy=consumer_policy(max_price=340 if i % 2 else 300),
                    usb=demo_usb(slug) if i == 2 else None,
                    phones=((1, DEMO_PHONE),) if i == 2 else (),
                )
            )
    return homes


TAP_QUANTITIES = (Quantity.IMPORT_ENERGY_WH, Quantity.EXPORT_ENERGY_WH)
RELAY_COMMANDS = (Command.START_STOP,)
TapPlan = tuple[str, SimulatedHardware, Sequence[Quantity], Sequence[Command], DeviceConfig]


def demo_building(
    slug: str, site: SimulatedSite, now: int, offset: float
) -> tuple[list[TapPlan], dict[str, Any]]:
    """Sunny House as a small building (docs/buildings.md): the landlord's house and PV
    roof, and two tenants' flats behind the same main meter; tenant B pays in advance and
    is cut off through the relay of its flat's meter when the balance is spent."""
    flats = {
        "flat-a": HouseholdLoad(7_000, start_ms=now, utc_offset_hours=offset, seed=31),
        "flat-b": HouseholdLoad(5_000, start_ms=now, utc_offset_hours=offset, seed=32),
    }
    building = SimulatedBuilding(site, flats, start_ms=now)
    taps: list[TapPlan] = []
    for name in (MAIN, ROOF, *flats):
        commands = RELAY_COMMANDS if name in flats else ()
        device = f"{name}-meter"
        profile = simple_generic_profile(
            f"{TOPIC_PREFIX}/{slug}/{device}", TAP_QUANTITIES, commands
        )
        config = DeviceConfig(device, Role.METER, profile, "", 15_000)
        taps.append((device, building.tap(name), TAP_QUANTITIES, commands, config))
    document: dict[str, Any] = {
        # A minute, so the demo's figures move while one watches (a quarter hour by default).
        "period_s": 60,
        "buy_price": 300,
        "sell_price": 80,
        "owners": [
            {"id": "landlord", "name": "Landlord", "landlord": True},
            {"id": "tenant-a", "name": "Tenant A"},
            {"id": "tenant-b", "name": "Tenant B", "prepaid": 2_000},
        ],
        "taps": [
            {"id": "main", "owner": "landlord", "device": "main-meter"},
            {
                "id": "roof-pv",
                "owner": "landlord",
                "device": "roof-meter",
                "parent": "main",
                "shared": True,
            },
            {"id": "flat-a", "owner": "tenant-a", "device": "flat-a-meter", "parent": "main"},
            {
                "id": "flat-b",
                "owner": "tenant-b",
                "device": "flat-b-meter",
                "parent": "main",
                "cut_off": {"device": "flat-b-meter"},
            },
        ],
        "sharing": {"key": "dynamic", "price": 150},
    }
    return taps, document


# The consumer's phone, as its plug message says: a 60 W USB-PD device at 20 V, so 1 Wh
# takes a minute.
DEMO_PHONE: dict[str, Any] = {
    "serial": "DEMO0001",
    "soc_percent": 20,
    "max_power_w": 60,
    "pd_voltage_mv": 20_000,
}


def demo_usb(slug: str) -> UsbConfig:
    """One charging port of the (virtual) hub, with the meter in front of it."""
    return UsbConfig(
        settings=UsbSettings(ports=(1,), price=USB_PRICE, watchdog_ms=5_000, resource_prefix=slug),
        meter_port=1,
    )
