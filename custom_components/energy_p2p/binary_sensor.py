"""Binary sensors: node online, ledger in sync, prepaid cut-off, community broker; and for
each USB port whether a phone is attached."""

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
from .building_entities import async_add_building_binary_sensors
from .coordinator import EnergyP2PCoordinator, EnergyP2PState
from .energy_p2p_client import JSON
from .entity import (
    USB_PORT,
    EnergyP2PEntity,
    EnergyP2PSubDeviceEntity,
    SubDevice,
    async_add_sub_device_entities,
)

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class EnergyP2PBinarySensorEntityDescription(BinarySensorEntityDescription):
    """A binary sensor read from the edge controller's state."""

    value_fn: Callable[[EnergyP2PState], bool | None]


@dataclass(frozen=True, kw_only=True)
class EnergyP2PPortBinarySensorEntityDescription(BinarySensorEntityDescription):
    """A binary sensor of a USB port, read from the port (GET usb)."""

    value_fn: Callable[[JSON], bool | None]


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

NODE_ONLINE = BinarySensorEntityDescription(
    key="node_online",
    translation_key="node_online",
    device_class=BinarySensorDeviceClass.CONNECTIVITY,
)

PORT_BINARY_SENSORS: tuple[EnergyP2PPortBinarySensorEntityDescription, ...] = (
    EnergyP2PPortBinarySensorEntityDescription(
        key="phone_attached",
        translation_key="phone_attached",
        device_class=BinarySensorDeviceClass.PLUG,
        value_fn=lambda port: port.get("attached") is not None,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EnergyP2PConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the edge controller's binary sensors, and those of each USB port."""
    coordinator = entry.runtime_data.coordinator
    async_add_entities(
        [
            *(EnergyP2PBinarySensor(coordinator, description) for description in BINARY_SENSORS),
            EnergyP2PNodeOnline(coordinator, NODE_ONLINE),
        ]
    )

    def port_sensors(device: SubDevice) -> list[EnergyP2PPortBinarySensor]:
        if device.kind != USB_PORT:
            return []
        return [
            EnergyP2PPortBinarySensor(coordinator, description, device)
            for description in PORT_BINARY_SENSORS
        ]

    async_add_sub_device_entities(entry, async_add_entities, port_sensors)
    async_add_building_binary_sensors(entry, async_add_entities)


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


class EnergyP2PNodeOnline(EnergyP2PEntity, BinarySensorEntity):
    """On while the edge controller answers and its event stream is connected.

    Never unavailable itself: it is what tells that the edge controller is gone."""

    @property
    def available(self) -> bool:
        """Always: off, not unavailable, when the edge controller is gone."""
        return True

    @property
    def is_on(self) -> bool:
        """Whether the edge controller is online now."""
        return self.coordinator.last_update_success and self.coordinator.stream_connected


class EnergyP2PPortBinarySensor(EnergyP2PSubDeviceEntity, BinarySensorEntity):
    """A binary sensor of a USB port."""

    entity_description: EnergyP2PPortBinarySensorEntityDescription

    @property
    def is_on(self) -> bool | None:
        """Whether it is on now."""
        return self.entity_description.value_fn(self.data)
