"""Sensors of the edge controller: wallet, energy traded, market, ledger and network."""

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
from homeassistant.const import EntityCategory, UnitOfEnergy
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util

from . import EnergyP2PConfigEntry
from .coordinator import EnergyP2PCoordinator, EnergyP2PState
from .entity import EnergyP2PEntity

# Coordinator-driven: no polling of our own, so no limit on parallel updates.
PARALLEL_UPDATES = 0

type StateValue = int | float | str | datetime | None


@dataclass(frozen=True, kw_only=True)
class EnergyP2PSensorEntityDescription(SensorEntityDescription):
    """A sensor read from the edge controller's state."""

    value_fn: Callable[[EnergyP2PState], StateValue]
    # The unit when it depends on the community (its currency), else the static one.
    unit_fn: Callable[[EnergyP2PState], str] | None = None


def _money(milli: object) -> float | None:
    """The API's integer milli-units of the currency as units."""
    return milli / 1000 if isinstance(milli, int) else None


def _price_unit(state: EnergyP2PState) -> str:
    return f"{state.currency}/kWh"


def _trades_today(state: EnergyP2PState) -> int:
    midnight_ms = dt_util.start_of_local_day().timestamp() * 1000
    return sum(1 for trade in state.trades if trade.get("time", 0) >= midnight_ms)


def _last_block(state: EnergyP2PState) -> datetime | None:
    head_time = state.status.get("ledger", {}).get("head_time")
    return dt_util.utc_from_timestamp(head_time / 1000) if isinstance(head_time, int) else None


SENSORS: tuple[EnergyP2PSensorEntityDescription, ...] = (
    EnergyP2PSensorEntityDescription(
        key="balance",
        translation_key="balance",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        unit_fn=lambda state: state.currency,
        value_fn=lambda state: _money(state.wallet.get("balance")),
    ),
    EnergyP2PSensorEntityDescription(
        key="escrow",
        translation_key="escrow",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        unit_fn=lambda state: state.currency,
        value_fn=lambda state: _money(state.wallet.get("escrow")),
    ),
    EnergyP2PSensorEntityDescription(
        key="energy_bought",
        translation_key="energy_bought",
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.WATT_HOUR,
        suggested_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        value_fn=lambda state: state.wallet.get("energy_bought_wh"),
    ),
    EnergyP2PSensorEntityDescription(
        key="energy_sold",
        translation_key="energy_sold",
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.WATT_HOUR,
        suggested_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        value_fn=lambda state: state.wallet.get("energy_sold_wh"),
    ),
    EnergyP2PSensorEntityDescription(
        key="market_average_price",
        translation_key="market_average_price",
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=3,
        unit_fn=_price_unit,
        value_fn=lambda state: _money(state.market.get("average_price")),
    ),
    EnergyP2PSensorEntityDescription(
        key="market_last_price",
        translation_key="market_last_price",
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=3,
        unit_fn=_price_unit,
        value_fn=lambda state: _money(state.market.get("last_price")),
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
        value_fn=lambda state: state.status.get("ledger", {}).get("height"),
    ),
    EnergyP2PSensorEntityDescription(
        key="peers",
        translation_key="peers",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda state: len(state.status.get("peers") or ()),
    ),
    EnergyP2PSensorEntityDescription(
        # A timestamp, not an age in seconds: the frontend shows "2 minutes ago" and the
        # state does not change every second (Home Assistant's guidance for ages).
        key="last_block",
        translation_key="last_block",
        device_class=SensorDeviceClass.TIMESTAMP,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=_last_block,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EnergyP2PConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the edge controller's sensors."""
    coordinator = entry.runtime_data.coordinator
    async_add_entities(EnergyP2PSensor(coordinator, description) for description in SENSORS)


class EnergyP2PSensor(EnergyP2PEntity, SensorEntity):
    """A sensor whose state is its description's `value_fn` of the edge controller's state."""

    entity_description: EnergyP2PSensorEntityDescription

    def __init__(
        self, coordinator: EnergyP2PCoordinator, description: EnergyP2PSensorEntityDescription
    ) -> None:
        """Describe the sensor by `description`."""
        super().__init__(coordinator, description)

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
