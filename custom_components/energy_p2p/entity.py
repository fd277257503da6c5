"""The base entity: everything here belongs to one edge controller's device."""

from __future__ import annotations

from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import DOMAIN
from .coordinator import EnergyP2PCoordinator


class EnergyP2PEntity(CoordinatorEntity[EnergyP2PCoordinator]):
    """An entity of the edge controller, named by its translation key."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: EnergyP2PCoordinator, description: EntityDescription) -> None:
        super().__init__(coordinator)
        self.entity_description = description
        status = coordinator.data.status
        node_id = coordinator.data.node_id
        self._attr_unique_id = f"{node_id}_{description.key}"
        community = status.get("community", {})
        client = coordinator.client
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, node_id)},
            name=status.get("name") or "Edge controller",
            manufacturer="Energy P2P",
            model="Edge controller",
            model_id=f"{community.get('name')} ({community.get('consensus')})",
            serial_number=node_id,
            sw_version=status.get("version"),
            configuration_url=f"http://{client.host}:{client.port}/",
        )
