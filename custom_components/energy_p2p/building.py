"""A building's owners (seed 003) and the community's market monitoring station (seed 000).

`GET building` and `GET monitor` are read by a coordinator of their own, beside the main
one: on each full read and on each `building` event the main one's WebSocket brings. Each
owner of the building is a device under the edge controller, with energy sensors the
Energy dashboard takes, their balance and a cut-off binary sensor (building_entities.py).
An edge controller without a building answers 404: no owner devices then.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeassistant.core import callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed

from .const import DOMAIN, RESYNC_INTERVAL
from .energy_p2p_client import JSON, ApiError, EnergyP2PClient, EnergyP2PError

if TYPE_CHECKING:
    from homeassistant.core import HomeAssistant

    from . import EnergyP2PConfigEntry
    from .coordinator import EnergyP2PCoordinator, EnergyP2PState

_LOGGER = logging.getLogger(__name__)
BUILDING_EVENTS = frozenset({"building", "building_cutoff", "building_restored"})


@dataclass(frozen=True, slots=True)
class BuildingState:
    """`GET building` (None: no building) and `GET monitor` (None: not offered)."""

    building: JSON | None = None
    monitor: JSON | None = None

    def owner(self, owner_id: str) -> JSON | None:
        """An owner's entry in `GET building`; None once gone."""
        owners = self.building.get("owners", []) if self.building else []
        return next((o for o in owners if o.get("id") == owner_id), None)

    def owner_ids(self) -> list[str]:
        """The building's owners now."""
        owners = self.building.get("owners", []) if self.building else []
        return [str(o["id"]) for o in owners if o.get("id")]


class BuildingCoordinator(DataUpdateCoordinator[BuildingState]):
    """Reads the building and the monitoring station; follows the main stream's events."""

    config_entry: EnergyP2PConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        entry: EnergyP2PConfigEntry,
        client: EnergyP2PClient,
        main: EnergyP2PCoordinator,
    ) -> None:
        super().__init__(
            hass,
            _LOGGER,
            config_entry=entry,
            name=f"{DOMAIN} building {client.host}:{client.port}",
            update_interval=RESYNC_INTERVAL,
        )
        self.client = client
        self.main = main
        entry.async_on_unload(main.async_add_event_listener(self._on_event))

    async def _async_update_data(self) -> BuildingState:
        try:
            building = await self._optional(self.client.get_building())
            monitor = await self._optional(self.client.get_monitor())
        except EnergyP2PError as exc:
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="cannot_connect",
                translation_placeholders={"error": str(exc)},
            ) from exc
        return BuildingState(building, monitor)

    @staticmethod
    async def _optional(call: Any) -> JSON | None:
        try:
            result: JSON = await call
        except ApiError as exc:
            if exc.status == 404:
                return None  # no building here, or an edge controller that predates it
            raise
        return result

    @callback
    def _on_event(self, event: str, data: JSON, before: EnergyP2PState) -> None:
        if event == "building":
            self.async_set_updated_data(BuildingState(data, self.data.monitor))
        elif event in BUILDING_EVENTS and self.data.building is not None:
            # A cut-off or a restore: that owner's entry as it is now.
            owners = [
                data if o.get("id") == data.get("id") else o
                for o in self.data.building.get("owners", [])
            ]
            building = {**self.data.building, "owners": owners}
            self.async_set_updated_data(BuildingState(building, self.data.monitor))
        elif event == "block" and self.data.monitor is not None:
            # Trades may have been made or settled: the station reads the ledger again.
            self.hass.async_create_task(self.async_request_refresh())

    def identifiers(self) -> frozenset[str]:
        """The device registry identifiers of the owners' devices now."""
        node_id = self.main.data.node_id
        return frozenset(f"{node_id}_owner_{o}" for o in (self.data or BuildingState()).owner_ids())


def owner_device_info(coordinator: BuildingCoordinator, owner_id: str) -> DeviceInfo:
    """An owner of the building: a device under the edge controller."""
    main = coordinator.main
    node_id = main.data.node_id
    owner = coordinator.data.owner(owner_id) or {}
    info = DeviceInfo(
        identifiers={(DOMAIN, f"{node_id}_owner_{owner_id}")},
        manufacturer="Energy P2P",
        model="Building owner",
        model_id=", ".join(owner.get("taps", [])) or None,
        serial_number=owner.get("account") or owner_id,
        translation_key="building_owner",
        translation_placeholders={
            "home": str(main.data.status.get("name") or "Edge controller"),
            "owner": str(owner.get("name") or owner_id),
        },
    )
    edge = dr.async_get(coordinator.hass).async_get_device_by_identifier(
        (DOMAIN, node_id), coordinator.config_entry.entry_id
    )
    if edge is not None:
        info["via_device_id"] = edge.id
    return info
