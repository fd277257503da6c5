"""Binary sensors of the edge controller: ledger in sync, prepaid cut-off, broker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from homeassistant.components.binary_sensor import (
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.components.binary_sensor.const import BinarySensorDeviceClass
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import EnergyP2PConfigEntry
from .coordinator import EnergyP2PCoordinator, EnergyP2PState
from .entity import EnergyP2PEntity

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class EnergyP2PBinarySensorEntityDescription(BinarySensorEntityDescription):
    """A binary sensor read from the edge controller's state."""

    value_fn: Callable[[EnergyP2PState], bool | None]


def _flag(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


BINARY_SENSORS: tuple[EnergyP2PBinarySensorEntityDescription, ...] = (
    EnergyP2PBinarySensorEntityDescription(
        key="ledger_synced",
        translation_key="ledger_synced",
        value_fn=lambda state: _flag(state.status.get("ledger", {}).get("synced")),
    ),
    EnergyP2PBinarySensorEntityDescription(
        # On when the prepaid balance reached zero and the supply is cut off: a problem.
        key="prepaid_cut_off",
        translation_key="prepaid_cut_off",
        device_class=BinarySensorDeviceClass.PROBLEM,
        value_fn=lambda state: _flag(state.wallet.get("cut_off")),
    ),
    EnergyP2PBinarySensorEntityDescription(
        key="broker_connected",
        translation_key="broker_connected",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda state: _flag(state.status.get("broker", {}).get("connected")),
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EnergyP2PConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the edge controller's binary sensors."""
    coordinator = entry.runtime_data.coordinator
    async_add_entities(
        EnergyP2PBinarySensor(coordinator, description) for description in BINARY_SENSORS
    )


class EnergyP2PBinarySensor(EnergyP2PEntity, BinarySensorEntity):
    """A binary sensor whose state is its description's `value_fn`."""

    entity_description: EnergyP2PBinarySensorEntityDescription

    def __init__(
        self,
        coordinator: EnergyP2PCoordinator,
        description: EnergyP2PBinarySensorEntityDescription,
    ) -> None:
        """Describe the binary sensor by `description`."""
        super().__init__(coordinator, description)

    @property
    def is_on(self) -> bool | None:
        """Whether it is on now."""
        return self.entity_description.value_fn(self.coordinator.data)
