"""The entities of a building's owners and of the market monitoring station.

Each owner: energy in and out, shared energy received, grid import and export (Wh, total
increasing: the Energy dashboard takes them as a consumption's or a return's source), the
prepaid balance, and whether the owner is cut off. The station: the community's volume and
average price in the latest hour, and how many members traded in the last day, with the
periods and who traded with whom as attributes (for the card's chart).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeassistant.components.binary_sensor import BinarySensorEntity
from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import UnitOfEnergy
from homeassistant.core import callback
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .building import BuildingCoordinator, owner_device_info
from .energy_p2p_client import JSON
from .entity import edge_device_info
from .policy import as_int, to_units

if TYPE_CHECKING:
    from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

    from . import EnergyP2PConfigEntry


@dataclass(frozen=True, kw_only=True)
class OwnerSensorDescription(SensorEntityDescription):
    """An owner's sensor: its value from the owner's entry in `GET building`."""

    value_fn: Callable[[JSON], Any]
    exists_fn: Callable[[JSON], bool] = lambda owner: True


def _total(field: str) -> Callable[[JSON], Any]:
    return lambda owner: as_int((owner.get("totals") or {}).get(field))


def _energy(key: str, field: str) -> OwnerSensorDescription:
    return OwnerSensorDescription(
        key=key,
        translation_key=key,
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.WATT_HOUR,
        value_fn=_total(field),
    )


OWNER_SENSORS: tuple[OwnerSensorDescription, ...] = (
    _energy("owner_import", "import_wh"),
    _energy("owner_export", "export_wh"),
    _energy("owner_shared_in", "shared_in_wh"),
    _energy("owner_grid_import", "grid_import_wh"),
    _energy("owner_grid_export", "grid_export_wh"),
    OwnerSensorDescription(
        key="owner_balance",
        translation_key="owner_balance",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        value_fn=lambda owner: to_units(owner.get("balance")),
        exists_fn=lambda owner: bool(owner.get("prepaid")),
    ),
    OwnerSensorDescription(
        key="owner_month_money",
        translation_key="owner_month_money",
        device_class=SensorDeviceClass.MONETARY,
        state_class=SensorStateClass.TOTAL,
        suggested_display_precision=2,
        value_fn=lambda owner: to_units((owner.get("month_to_date") or {}).get("movement", 0)),
    ),
)


OWNER_CUT_OFF = EntityDescription(key="owner_cut_off", translation_key="owner_cut_off")


@dataclass(frozen=True, kw_only=True)
class MonitorSensorDescription(SensorEntityDescription):
    """A sensor of the monitoring station: its value from `GET monitor`."""

    value_fn: Callable[[JSON], Any]


def _latest(monitor: JSON) -> JSON:
    periods = monitor.get("periods") or [{}]
    return dict(periods[-1])


MONITOR_SENSORS: tuple[MonitorSensorDescription, ...] = (
    MonitorSensorDescription(
        key="monitor_volume",
        translation_key="monitor_volume",
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfEnergy.WATT_HOUR,
        value_fn=lambda monitor: as_int(_latest(monitor).get("volume_wh")),
    ),
    MonitorSensorDescription(
        key="monitor_price",
        translation_key="monitor_price",
        suggested_display_precision=3,
        value_fn=lambda monitor: to_units(_latest(monitor).get("average_price")),
    ),
    MonitorSensorDescription(
        key="monitor_traders",
        translation_key="monitor_traders",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda monitor: as_int((monitor.get("totals") or {}).get("traders")),
    ),
)


class OwnerEntity(CoordinatorEntity[BuildingCoordinator]):
    """An entity of one owner; unavailable once the building no longer lists them."""

    _attr_has_entity_name = True

    def __init__(
        self, coordinator: BuildingCoordinator, description: EntityDescription, owner_id: str
    ) -> None:
        super().__init__(coordinator)
        self.entity_description = description
        self.owner_id = owner_id
        node_id = coordinator.main.data.node_id
        self._attr_unique_id = f"{node_id}_owner_{owner_id}_{description.key}"
        self._attr_device_info = owner_device_info(coordinator, owner_id)

    @property
    def owner(self) -> JSON:
        """The owner's entry now; empty once gone."""
        return self.coordinator.data.owner(self.owner_id) or {}

    @property
    def available(self) -> bool:
        """Available while the building answers and lists the owner."""
        return super().available and self.coordinator.data.owner(self.owner_id) is not None


class OwnerSensor(OwnerEntity, SensorEntity):
    """An owner's energy, balance or month's money."""

    entity_description: OwnerSensorDescription

    @property
    def native_value(self) -> Any:
        """The description's value of the owner's entry."""
        return self.entity_description.value_fn(self.owner)

    @property
    def native_unit_of_measurement(self) -> str | None:
        """Wh, or the community currency for money."""
        if self.entity_description.device_class is SensorDeviceClass.MONETARY:
            return self.coordinator.main.data.currency
        return self.entity_description.native_unit_of_measurement


class OwnerCutOff(OwnerEntity, BinarySensorEntity):
    """On while the owner's prepaid balance is spent and their taps are switched off."""

    @property
    def is_on(self) -> bool:
        """Whether the owner is cut off."""
        return bool(self.owner.get("cut_off"))


class MonitorSensor(CoordinatorEntity[BuildingCoordinator], SensorEntity):
    """A figure of the community's market monitoring station, on the edge controller."""

    _attr_has_entity_name = True
    entity_description: MonitorSensorDescription

    def __init__(
        self, coordinator: BuildingCoordinator, description: MonitorSensorDescription
    ) -> None:
        super().__init__(coordinator)
        self.entity_description = description
        self._attr_unique_id = f"{coordinator.main.data.node_id}_{description.key}"
        self._attr_device_info = edge_device_info(coordinator.main)

    @property
    def available(self) -> bool:
        """Available while the station answers."""
        return super().available and self.coordinator.data.monitor is not None

    @property
    def native_value(self) -> Any:
        """The description's value of the station's figures."""
        return self.entity_description.value_fn(self.coordinator.data.monitor or {})

    @property
    def native_unit_of_measurement(self) -> str | None:
        """A price is in the community currency per kWh."""
        if self.entity_description.key == "monitor_price":
            return f"{self.coordinator.main.data.currency}/kWh"
        return self.entity_description.native_unit_of_measurement

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """The periods and the busiest pairs, on the volume sensor only (for the chart)."""
        if self.entity_description.key != "monitor_volume":
            return None
        monitor = self.coordinator.data.monitor or {}
        return {
            "periods": [
                {
                    "start": p.get("start"),
                    "volume_wh": p.get("volume_wh"),
                    "trades": p.get("trades"),
                }
                for p in monitor.get("periods", [])
            ],
            "pairs": monitor.get("pairs", [])[:10],
            "trend": monitor.get("trend"),
        }


@callback
def async_add_building_sensors(
    entry: EnergyP2PConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """The station's sensors, and each owner's, now and for owners who appear later."""
    coordinator = entry.runtime_data.building
    if coordinator is None:
        return
    if coordinator.data.monitor is not None:
        async_add_entities(MonitorSensor(coordinator, d) for d in MONITOR_SENSORS)

    def make(owner_id: str) -> list[Any]:
        owner = coordinator.data.owner(owner_id) or {}
        return [OwnerSensor(coordinator, d, owner_id) for d in OWNER_SENSORS if d.exists_fn(owner)]

    _follow_owners(entry, coordinator, async_add_entities, make)


@callback
def async_add_building_binary_sensors(
    entry: EnergyP2PConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """Each owner's cut-off binary sensor."""
    coordinator = entry.runtime_data.building
    if coordinator is None:
        return
    _follow_owners(
        entry,
        coordinator,
        async_add_entities,
        lambda owner_id: [OwnerCutOff(coordinator, OWNER_CUT_OFF, owner_id)],
    )


def _follow_owners(
    entry: EnergyP2PConfigEntry,
    coordinator: BuildingCoordinator,
    async_add_entities: AddConfigEntryEntitiesCallback,
    make: Callable[[str], list[Any]],
) -> None:
    known: set[str] = set()

    @callback
    def add_new() -> None:
        if not coordinator.last_update_success:
            return
        current = set(coordinator.data.owner_ids())
        known.intersection_update(current)
        new = sorted(current - known)
        known.update(new)
        entities = [entity for owner_id in new for entity in make(owner_id)]
        if entities:
            async_add_entities(entities)

    add_new()
    entry.async_on_unload(coordinator.async_add_listener(add_new))
