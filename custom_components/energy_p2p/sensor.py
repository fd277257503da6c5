"""Sensors: the wallet, energy traded, market, ledger and network of the edge controller;
the readings of its inverter, battery and fuel cell; each USB port's power and session."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import (
    PERCENTAGE,
    EntityCategory,
    UnitOfElectricCurrent,
    UnitOfElectricPotential,
    UnitOfEnergy,
    UnitOfMass,
    UnitOfPower,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util

from . import EnergyP2PConfigEntry
from .building_entities import async_add_building_sensors
from .coordinator import EnergyP2PState
from .energy_p2p_client import JSON
from .entity import (
    OTHER_ROLE,
    USB_PORT,
    EnergyP2PEntity,
    EnergyP2PSubDeviceEntity,
    SubDevice,
    async_add_sub_device_entities,
    reading,
)
from .policy import section, to_units

# Coordinator-driven: no polling of our own, so no limit on parallel updates.
PARALLEL_UPDATES = 0

type StateValue = int | float | str | datetime | None

FUEL_CELL_STATES = ["off", "starting", "running", "stopping", "fault"]
# A port with no session is idle; the others are the session's state (usb contract).
USB_SESSION_STATES = ["idle", "starting", "charging", "stopping", "ended", "failed"]


@dataclass(frozen=True, kw_only=True)
class EnergyP2PSensorEntityDescription(SensorEntityDescription):
    """A sensor of the edge controller, read from its state."""

    value_fn: Callable[[EnergyP2PState], StateValue]
    # The unit when it depends on the community (its currency), else the static one.
    unit_fn: Callable[[EnergyP2PState], str] | None = None
    # Whether this home has what the sensor shows (e.g. a grid meter).
    exists_fn: Callable[[EnergyP2PState], bool] = lambda state: True


@dataclass(frozen=True, kw_only=True)
class EnergyP2PDeviceSensorEntityDescription(SensorEntityDescription):
    """A sensor of a device under the edge controller (of `kinds`), read from its data."""

    kinds: tuple[str, ...]
    value_fn: Callable[[JSON], StateValue]
    exists_fn: Callable[[JSON], bool] = lambda data: True
    # For a value that also depends on the owner's policy: (device data, policy) -> value.
    policy_value_fn: Callable[[JSON, JSON], StateValue] | None = None


def _trades_today(state: EnergyP2PState) -> int:
    midnight_ms = dt_util.start_of_local_day().timestamp() * 1000
    return sum(1 for trade in state.trades if trade.get("time", 0) >= midnight_ms)


def _last_block(state: EnergyP2PState) -> datetime | None:
    head_time = state.status.get("ledger", {}).get("head_time")
    return dt_util.utc_from_timestamp(head_time / 1000) if isinstance(head_time, int) else None


def _grid_meter(state: EnergyP2PState) -> tuple[JSON, str] | None:
    """The meter of the home's grid connection and what it reports the power as: a grid
    meter, else the home's own meter; None when the home has neither."""
    for role, quantity in (("grid_meter", "grid_power_w"), ("meter", "power_w")):
        for device in state.devices:
            if device.get("role") == role and quantity in device:
                return device, quantity
    return None


def _grid_power(state: EnergyP2PState) -> int | None:
    """Power from (+) or to (-) the grid."""
    meter = _grid_meter(state)
    if meter is None:
        return None
    value = reading(*meter)
    return value if isinstance(value, int) else None


def _price_unit(state: EnergyP2PState) -> str:
    return f"{state.currency}/kWh"


SENSORS: tuple[EnergyP2PSensorEntityDescription, ...] = (
    EnergyP2PSensorEntityDescription(
        key="balance",
        translation_key="balance",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        unit_fn=lambda state: state.currency,
        value_fn=lambda state: to_units(state.wallet.get("balance")),
    ),
    EnergyP2PSensorEntityDescription(
        key="escrow",
        translation_key="escrow",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        unit_fn=lambda state: state.currency,
        value_fn=lambda state: to_units(state.wallet.get("escrow")),
    ),
    EnergyP2PSensorEntityDescription(
        # Total increasing, in Wh: the Energy dashboard takes it as grid consumption.
        key="energy_bought",
        translation_key="energy_bought",
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.WATT_HOUR,
        suggested_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        value_fn=lambda state: state.wallet.get("energy_bought_wh"),
    ),
    EnergyP2PSensorEntityDescription(
        # ... and this one as return to the grid.
        key="energy_sold",
        translation_key="energy_sold",
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.WATT_HOUR,
        suggested_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        value_fn=lambda state: state.wallet.get("energy_sold_wh"),
    ),
    EnergyP2PSensorEntityDescription(
        key="grid_power",
        translation_key="grid_power",
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.WATT,
        value_fn=_grid_power,
        exists_fn=lambda state: _grid_meter(state) is not None,
    ),
    EnergyP2PSensorEntityDescription(
        key="market_average_price",
        translation_key="market_average_price",
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=3,
        unit_fn=_price_unit,
        value_fn=lambda state: to_units(state.market.get("average_price")),
    ),
    EnergyP2PSensorEntityDescription(
        key="market_last_price",
        translation_key="market_last_price",
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=3,
        unit_fn=_price_unit,
        value_fn=lambda state: to_units(state.market.get("last_price")),
    ),
    EnergyP2PSensorEntityDescription(
        # Over the last 24 hours: a rolling figure, neither a measurement nor a total.
        key="market_volume",
        translation_key="market_volume",
        device_class=SensorDeviceClass.ENERGY,
        native_unit_of_measurement=UnitOfEnergy.WATT_HOUR,
        value_fn=lambda state: state.market.get("volume_wh"),
    ),
    EnergyP2PSensorEntityDescription(
        key="open_offers",
        translation_key="open_offers",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda state: sum(1 for o in state.offers if o.get("status") == "open"),
    ),
    EnergyP2PSensorEntityDescription(
        key="trades_today",
        translation_key="trades_today",
        state_class=SensorStateClass.TOTAL_INCREASING,
        value_fn=_trades_today,
    ),
    EnergyP2PSensorEntityDescription(
        key="ledger_height",
        translation_key="ledger_height",
        state_class=SensorStateClass.MEASUREMENT,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda state: state.status.get("ledger", {}).get("height"),
    ),
    EnergyP2PSensorEntityDescription(
        key="peers",
        translation_key="peers",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda state: len(state.status.get("peers") or ()),
    ),
    EnergyP2PSensorEntityDescription(
        # A timestamp, not an age in seconds: the frontend shows "2 minutes ago" (the
        # block's age) and the state does not change every second (HA's guidance for ages).
        key="last_block",
        translation_key="last_block",
        device_class=SensorDeviceClass.TIMESTAMP,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=_last_block,
    ),
    EnergyP2PSensorEntityDescription(
        # Records waiting for a block: diagnostic, of interest only when it grows.
        key="ledger_pool",
        translation_key="ledger_pool",
        state_class=SensorStateClass.MEASUREMENT,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda state: state.status.get("ledger", {}).get("pool"),
    ),
)


def _has(quantity: str) -> Callable[[JSON], bool]:
    return lambda data: quantity in data


def _reading(quantity: str) -> Callable[[JSON], StateValue]:
    def value(data: JSON) -> StateValue:
        found = reading(data, quantity)
        return found if isinstance(found, int | float | str) else None

    return value


def _resource(field: str) -> Callable[[JSON], StateValue]:
    def value(data: JSON) -> StateValue:
        found = (data.get("resource") or {}).get(field)
        return found if isinstance(found, int) else None

    return value


def available_to_sell(data: JSON, policy: JSON) -> int | None:
    """Energy the ledger holds as stored and not yet sold, less a battery's reserve (the
    policy's `reserve_percent` of its registered capacity, which is never sold)."""
    resource = data.get("resource") or {}
    available, committed = resource.get("available_wh"), resource.get("committed_wh", 0)
    if not isinstance(available, int) or not isinstance(committed, int):
        return None
    kept = 0
    if data.get("role") == "battery":
        reserve = section(policy, "sell", "battery", "reserve_percent")
        capacity = resource.get("capacity_wh")
        if isinstance(reserve, int | float) and isinstance(capacity, int):
            kept = round(capacity * reserve / 100)
    return max(0, available - committed - kept)


def _fuel_cell_state(data: JSON) -> str | None:
    found = reading(data, "state")
    return found if found in FUEL_CELL_STATES else None


def _milli(field: str) -> Callable[[JSON], StateValue]:
    return lambda data: to_units(data.get(field))


def _session_energy(data: JSON) -> float | None:
    """Energy the port delivered in its current (or last) session, Wh; 0 before any."""
    session = data.get("session")
    if not isinstance(session, dict):
        return 0.0
    return to_units(session.get("delivered_mwh"))


def _session_state(data: JSON) -> str | None:
    session = data.get("session")
    if not isinstance(session, dict):
        return "idle"
    state = session.get("state")
    return state if state in USB_SESSION_STATES else None


def _pairing_code(data: JSON) -> str | None:
    """The code an unpaired phone on the port shows; None when paired or nothing is there."""
    attached = data.get("attached")
    code = attached.get("pairing_code") if isinstance(attached, dict) else None
    return code if isinstance(code, str) and code else None


DEVICE_SENSORS: tuple[EnergyP2PDeviceSensorEntityDescription, ...] = (
    # A kind of device the integration has no sensors of its own for still shows its power.
    EnergyP2PDeviceSensorEntityDescription(
        key="device_power",
        translation_key="device_power",
        kinds=(OTHER_ROLE,),
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.WATT,
        value_fn=_reading("power_w"),
        exists_fn=_has("power_w"),
    ),
    EnergyP2PDeviceSensorEntityDescription(
        key="pv_power",
        translation_key="pv_power",
        kinds=("pv",),
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.WATT,
        value_fn=_reading("power_w"),
        exists_fn=_has("power_w"),
    ),
    EnergyP2PDeviceSensorEntityDescription(
        key="battery_soc",
        translation_key="battery_soc",
        kinds=("battery",),
        device_class=SensorDeviceClass.BATTERY,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=PERCENTAGE,
        value_fn=_reading("soc_percent"),
        exists_fn=_has("soc_percent"),
    ),
    EnergyP2PDeviceSensorEntityDescription(
        # Positive while charging, negative while discharging.
        key="battery_power",
        translation_key="battery_power",
        kinds=("battery",),
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.WATT,
        value_fn=_reading("battery_power_w"),
        exists_fn=_has("battery_power_w"),
    ),
    EnergyP2PDeviceSensorEntityDescription(
        key="battery_capacity",
        translation_key="battery_capacity",
        kinds=("battery",),
        device_class=SensorDeviceClass.ENERGY_STORAGE,
        native_unit_of_measurement=UnitOfEnergy.WATT_HOUR,
        suggested_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=_reading("capacity_wh"),
        exists_fn=_has("capacity_wh"),
    ),
    EnergyP2PDeviceSensorEntityDescription(
        key="fuel_cell_power",
        translation_key="fuel_cell_power",
        kinds=("fuel_cell",),
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.WATT,
        value_fn=_reading("power_w"),
        exists_fn=_has("power_w"),
    ),
    EnergyP2PDeviceSensorEntityDescription(
        key="hydrogen",
        translation_key="hydrogen",
        kinds=("fuel_cell",),
        device_class=SensorDeviceClass.WEIGHT,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfMass.GRAMS,
        value_fn=_reading("hydrogen_g"),
        exists_fn=_has("hydrogen_g"),
    ),
    EnergyP2PDeviceSensorEntityDescription(
        key="fuel_cell_state",
        translation_key="fuel_cell_state",
        kinds=("fuel_cell",),
        device_class=SensorDeviceClass.ENUM,
        options=FUEL_CELL_STATES,
        value_fn=_fuel_cell_state,
        exists_fn=_has("state"),
    ),
    EnergyP2PDeviceSensorEntityDescription(
        # What is still to sell: the battery's energy above its reserve, the hydrogen's
        # electrical energy; less what trades have already committed.
        key="available_energy",
        translation_key="available_energy",
        kinds=("battery", "fuel_cell"),
        device_class=SensorDeviceClass.ENERGY_STORAGE,
        native_unit_of_measurement=UnitOfEnergy.WATT_HOUR,
        suggested_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        # Unknown until the ledger holds the device's resource (registered by the registrar).
        value_fn=_resource("available_wh"),
        policy_value_fn=available_to_sell,
    ),
    EnergyP2PDeviceSensorEntityDescription(
        key="usb_power",
        translation_key="usb_power",
        kinds=(USB_PORT,),
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.WATT,
        suggested_display_precision=1,
        value_fn=_milli("power_mw"),
    ),
    EnergyP2PDeviceSensorEntityDescription(
        # Starts again from 0 with each session: total_increasing takes that as a reset.
        key="usb_energy",
        translation_key="usb_energy",
        kinds=(USB_PORT,),
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.WATT_HOUR,
        suggested_display_precision=1,
        value_fn=_session_energy,
    ),
    EnergyP2PDeviceSensorEntityDescription(
        key="usb_session_state",
        translation_key="usb_session_state",
        kinds=(USB_PORT,),
        device_class=SensorDeviceClass.ENUM,
        options=USB_SESSION_STATES,
        value_fn=_session_state,
    ),
    EnergyP2PDeviceSensorEntityDescription(
        # A phone seen for the first time shows this code until the owner pairs it
        # (the pair phone action): only then can it buy charge from its own wallet.
        key="usb_pairing_code",
        translation_key="usb_pairing_code",
        kinds=(USB_PORT,),
        value_fn=_pairing_code,
    ),
    EnergyP2PDeviceSensorEntityDescription(
        key="usb_voltage",
        translation_key="usb_voltage",
        kinds=(USB_PORT,),
        device_class=SensorDeviceClass.VOLTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        suggested_display_precision=2,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=_milli("voltage_mv"),
    ),
    EnergyP2PDeviceSensorEntityDescription(
        key="usb_current",
        translation_key="usb_current",
        kinds=(USB_PORT,),
        device_class=SensorDeviceClass.CURRENT,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfElectricCurrent.AMPERE,
        suggested_display_precision=2,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=_milli("current_ma"),
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EnergyP2PConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the edge controller's sensors, and those of each device under it."""
    coordinator = entry.runtime_data.coordinator
    async_add_entities(
        EnergyP2PSensor(coordinator, description)
        for description in SENSORS
        if description.exists_fn(coordinator.data)
    )

    def device_sensors(device: SubDevice) -> list[EnergyP2PDeviceSensor]:
        data = device.data(coordinator.data) or {}
        return [
            EnergyP2PDeviceSensor(coordinator, description, device)
            for description in DEVICE_SENSORS
            if device.role in description.kinds and description.exists_fn(data)
        ]

    async_add_sub_device_entities(entry, async_add_entities, device_sensors)
    async_add_building_sensors(entry, async_add_entities)


class EnergyP2PSensor(EnergyP2PEntity, SensorEntity):
    """A sensor whose state is its description's `value_fn` of the edge controller's state."""

    entity_description: EnergyP2PSensorEntityDescription

    @property
    def native_value(self) -> StateValue:
        """The value now."""
        return self.entity_description.value_fn(self.coordinator.data)

    @property
    def native_unit_of_measurement(self) -> str | None:
        """The description's unit, or the one that depends on the community."""
        if self.entity_description.unit_fn is not None:
            return self.entity_description.unit_fn(self.coordinator.data)
        return self.entity_description.native_unit_of_measurement


class EnergyP2PDeviceSensor(EnergyP2PSubDeviceEntity, SensorEntity):
    """A sensor of a device under the edge controller."""

    entity_description: EnergyP2PDeviceSensorEntityDescription

    @property
    def native_value(self) -> StateValue:
        """The value now."""
        description = self.entity_description
        if description.policy_value_fn is not None:
            return description.policy_value_fn(self.data, self.coordinator.data.policy)
        return description.value_fn(self.data)
