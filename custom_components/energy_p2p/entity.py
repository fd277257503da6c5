"""Devices and the base entities: the edge controller, and under it each inverter, battery,
fuel cell and USB port it reports; calls to the edge controller with translated errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import Entity, EntityDescription
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import DOMAIN
from .coordinator import EnergyP2PCoordinator, EnergyP2PState
from .energy_p2p_client import JSON, ApiError, CannotConnect, InvalidAuth

if TYPE_CHECKING:
    from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

    from . import EnergyP2PConfigEntry

# Roles with a translated device name of their own; the edge controller says which of its
# devices stand alone (`standalone` in GET devices), and a role not named here is called
# by its role. An edge controller older than `standalone` marks these three.
NAMED_ROLES: Final = ("pv", "battery", "fuel_cell")
OTHER_ROLE: Final = "device"  # the translation key of a role not named above
USB_PORT: Final = "usb_port"


@dataclass(frozen=True, slots=True)
class SubDevice:
    """A device under the edge controller: a reported device (by id) or a USB port."""

    kind: str  # the device's role (GET devices), or USB_PORT
    ref: str  # the device id, or the port number

    @property
    def role(self) -> str:
        """The role whose entities it gets: its own when the integration names it, else
        the role of every other kind of device."""
        return self.kind if self.kind in NAMED_ROLES or self.kind == USB_PORT else OTHER_ROLE

    @property
    def key(self) -> str:
        """Unique within the edge controller (ids and port numbers cannot collide)."""
        return f"usb_{self.ref}" if self.kind == USB_PORT else f"device_{self.ref}"

    def data(self, state: EnergyP2PState) -> JSON | None:
        """The device's entry in GET devices, or the port's in GET usb; None once gone."""
        if self.kind == USB_PORT:
            ports = state.usb.get("ports", []) if state.usb else []
            return next((p for p in ports if str(p.get("port")) == self.ref), None)
        return next((d for d in state.devices if d.get("id") == self.ref), None)


def sub_devices(state: EnergyP2PState) -> list[SubDevice]:
    """Every device under the edge controller now."""
    found = [
        SubDevice(str(d["role"]), str(d["id"]))
        for d in state.devices
        if d.get("standalone", d.get("role") in NAMED_ROLES) and d.get("id")
    ]
    if state.usb:
        found += [
            SubDevice(USB_PORT, str(p["port"]))
            for p in state.usb.get("ports", [])
            if isinstance(p.get("port"), int)
        ]
    return found


def edge_device_info(coordinator: EnergyP2PCoordinator) -> DeviceInfo:
    """The edge controller itself."""
    status = coordinator.data.status
    community = status.get("community", {})
    client = coordinator.client
    return DeviceInfo(
        identifiers={(DOMAIN, coordinator.data.node_id)},
        name=status.get("name") or "Edge controller",
        manufacturer="Energy P2P",
        model="Edge controller",
        model_id=f"{community.get('name')} ({community.get('consensus')})",
        serial_number=coordinator.data.node_id,
        sw_version=status.get("version"),
        configuration_url=f"http://{client.host}:{client.port}/",
    )


@callback
def async_register_edge_device(hass: HomeAssistant, entry: EnergyP2PConfigEntry) -> str:
    """Register the edge controller's device (before the devices under it); its id."""
    registry = dr.async_get(hass)
    info = edge_device_info(entry.runtime_data.coordinator)
    return registry.async_get_or_create(config_entry_id=entry.entry_id, **info).id


def sub_device_info(coordinator: EnergyP2PCoordinator, device: SubDevice) -> DeviceInfo:
    """A device under the edge controller, named after the home and what it is."""
    state = coordinator.data
    node_id = state.node_id
    home = str(state.status.get("name") or "Edge controller")
    edge = dr.async_get(coordinator.hass).async_get_device_by_identifier(
        (DOMAIN, node_id), coordinator.config_entry.entry_id
    )
    data = device.data(state) or {}
    if device.kind == USB_PORT:
        hub = (state.usb or {}).get("hub") or {}
        translation_key = USB_PORT
        placeholders = {"home": home, "port": device.ref}
        model: str | None = "USB-PD charging port"
        model_id = str(hub.get("description") or "") or None
        serial_number = None
    else:
        same_role = sum(1 for d in sub_devices(state) if d.kind == device.kind)
        # With two of a kind, their ids tell them apart.
        translation_key = device.role if same_role == 1 else f"{device.role}_named"
        placeholders = {"home": home, "id": device.ref, "role": device.kind.replace("_", " ")}
        model = str(data.get("profile") or "") or None
        model_id = None
        serial_number = str((data.get("resource") or {}).get("id") or "") or None
    info = DeviceInfo(
        identifiers={(DOMAIN, f"{node_id}_{device.key}")},
        manufacturer="Energy P2P",
        model=model,
        model_id=model_id,
        serial_number=serial_number,
        translation_key=translation_key,
        translation_placeholders=placeholders,
    )
    if edge is not None:
        info["via_device_id"] = edge.id
    return info


class EnergyP2PEntity(CoordinatorEntity[EnergyP2PCoordinator]):
    """An entity of the edge controller, named by its translation key."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: EnergyP2PCoordinator, description: EntityDescription) -> None:
        super().__init__(coordinator)
        self.entity_description = description
        self._attr_unique_id = f"{coordinator.data.node_id}_{description.key}"
        self._attr_device_info = edge_device_info(coordinator)


class EnergyP2PSubDeviceEntity(CoordinatorEntity[EnergyP2PCoordinator]):
    """An entity of a device under the edge controller; unavailable once it is gone."""

    _attr_has_entity_name = True

    def __init__(
        self,
        coordinator: EnergyP2PCoordinator,
        description: EntityDescription,
        device: SubDevice,
    ) -> None:
        super().__init__(coordinator)
        self.entity_description = description
        self.device = device
        self._attr_unique_id = f"{coordinator.data.node_id}_{device.key}_{description.key}"
        self._attr_device_info = sub_device_info(coordinator, device)

    @property
    def data(self) -> JSON:
        """The device's (or port's) data now; empty once it is gone."""
        return self.device.data(self.coordinator.data) or {}

    @property
    def available(self) -> bool:
        """Available while the edge controller answers and still reports the device."""
        return super().available and self.device.data(self.coordinator.data) is not None


@callback
def async_add_sub_device_entities(
    entry: EnergyP2PConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
    make: Callable[[SubDevice], Iterable[Entity]],
) -> None:
    """Add `make(device)`'s entities for each device now and for each that appears later."""
    coordinator = entry.runtime_data.coordinator
    known: set[SubDevice] = set()

    @callback
    def add_new() -> None:
        if not coordinator.last_update_success:
            return
        current = sub_devices(coordinator.data)
        # A device that went away is removed with its entities (StaleDevices); if it
        # comes back, its entities must be added again.
        known.intersection_update(current)
        new = [d for d in current if d not in known]
        known.update(new)
        entities = [entity for device in new for entity in make(device)]
        if entities:
            async_add_entities(entities)

    add_new()
    entry.async_on_unload(coordinator.async_add_listener(add_new))


class StaleDevices:
    """Removes from the device registry the devices the edge controller no longer reports
    (their entities go with them); called after each coordinator update."""

    def __init__(self, hass: HomeAssistant, entry: EnergyP2PConfigEntry) -> None:
        self.hass = hass
        self.entry = entry
        self._seen: frozenset[str] | None = None

    @callback
    def __call__(self) -> None:
        coordinator = self.entry.runtime_data.coordinator
        if not coordinator.last_update_success:
            return  # an edge controller that is gone reports nothing; keep its devices
        current = current_identifiers(coordinator.data)
        if (building := self.entry.runtime_data.building) is not None:
            current |= building.identifiers()  # the building's owners
        if current == self._seen:
            return
        self._seen = current
        registry = dr.async_get(self.hass)
        for device in dr.async_entries_for_config_entry(registry, self.entry.entry_id):
            if not any(i[0] == DOMAIN and i[1] in current for i in device.identifiers):
                registry.async_remove_device(device.id)


def current_identifiers(state: EnergyP2PState) -> frozenset[str]:
    """The device registry identifiers (of this domain) of every device reported now."""
    node_id = state.node_id
    return frozenset({node_id, *(f"{node_id}_{d.key}" for d in sub_devices(state))})


async def async_call_edge[T](entry: EnergyP2PConfigEntry, call: Awaitable[T]) -> T:
    """Await a call to the edge controller; its failures as translated errors (a refused
    token also asks the user for a new one)."""
    try:
        return await call
    except InvalidAuth as exc:
        entry.async_start_reauth(entry.runtime_data.coordinator.hass)
        raise HomeAssistantError(translation_domain=DOMAIN, translation_key="invalid_auth") from exc
    except CannotConnect as exc:
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="cannot_connect",
            translation_placeholders={"error": str(exc)},
        ) from exc
    except ApiError as exc:
        placeholders = {"code": exc.code, "message": exc.message}
        if exc.code == "invalid_policy" or (exc.status is not None and 400 <= exc.status < 500):
            # The edge controller (its ledger) refused what was asked: the user's to fix.
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="invalid_policy" if exc.code == "invalid_policy" else "refused",
                translation_placeholders=placeholders,
            ) from exc
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="edge_error",
            translation_placeholders=placeholders,
        ) from exc


async def async_change_policy(
    coordinator: EnergyP2PCoordinator, change: Callable[[JSON], JSON | None]
) -> None:
    """Write `change(policy)` to the edge controller (read-modify-write of the whole
    document the coordinator holds), then hold the policy it answers with."""
    document = change(coordinator.data.policy)
    if document is None:
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="no_single_price")
    policy = await async_call_edge(
        coordinator.config_entry, coordinator.client.set_policy(document)
    )
    coordinator.async_apply("policy", policy)


def reading(data: JSON, quantity: str) -> Any:
    """A device's latest reading of `quantity` (GET devices), None when missing or stale."""
    value = data.get(quantity)
    if not isinstance(value, dict) or value.get("fresh") is False:
        return None
    return value.get("value")
