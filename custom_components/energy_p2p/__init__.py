"""The Energy P2P integration: a home's edge controller in Home Assistant."""

from __future__ import annotations

from dataclasses import dataclass

from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.device_registry import DeviceEntry
from homeassistant.helpers.typing import ConfigType

from .building import BuildingCoordinator
from .const import DOMAIN
from .coordinator import EnergyP2PCoordinator
from .counter_offers import async_setup_counter_offer_services
from .energy_p2p_client import EnergyP2PClient
from .entity import StaleDevices, async_register_edge_device, current_identifiers
from .frontend import async_register_card
from .membership import async_setup_membership
from .relay import EntityRelay
from .repairs import async_delete_issues
from .services import async_setup_services

PLATFORMS: list[Platform] = [
    Platform.BINARY_SENSOR,
    Platform.BUTTON,
    Platform.EVENT,
    Platform.NUMBER,
    Platform.SELECT,
    Platform.SENSOR,
    Platform.SWITCH,
]

# Set up from the UI only; nothing in configuration.yaml.
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


@dataclass(slots=True)
class EnergyP2PData:
    """What a loaded config entry holds (`entry.runtime_data`)."""

    client: EnergyP2PClient
    coordinator: EnergyP2PCoordinator
    building: BuildingCoordinator | None = None


type EnergyP2PConfigEntry = ConfigEntry[EnergyP2PData]


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register what the integration offers before and beyond any one entry."""
    # The actions exist even while no entry is loaded, so automations using them validate.
    async_setup_services(hass)
    async_setup_counter_offer_services(hass)
    # The dashboard card: served, loaded on every page, fed by its WebSocket command.
    await async_register_card(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: EnergyP2PConfigEntry) -> bool:
    """Connect to the edge controller, load its state, then follow its events."""
    client = EnergyP2PClient(
        async_get_clientsession(hass),
        entry.data[CONF_HOST],
        entry.data[CONF_PORT],
        entry.data[CONF_TOKEN],
    )
    coordinator = EnergyP2PCoordinator(hass, entry, client)
    await coordinator.async_config_entry_first_refresh()
    building = BuildingCoordinator(hass, entry, client, coordinator)
    await building.async_config_entry_first_refresh()
    entry.runtime_data = EnergyP2PData(client, coordinator, building)
    # The devices under it refer to it by its registry id.
    async_register_edge_device(hass, entry)
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    # A registrar's home: its waiting membership requests as repair issues.
    await async_setup_membership(hass, entry)
    # Devices the edge controller stops reporting leave the device registry.
    stale_devices = StaleDevices(hass, entry)
    stale_devices()
    entry.async_on_unload(coordinator.async_add_listener(stale_devices))
    # Cancelled by Home Assistant when the entry unloads.
    entry.async_create_background_task(
        hass, coordinator.async_follow_events(), f"energy_p2p events {client.base_url}"
    )
    # The entities the edge controller's Home Assistant devices follow, relayed to it.
    entry.async_create_background_task(
        hass,
        EntityRelay(hass, client, entry.entry_id).async_run(),
        f"energy_p2p relay {client.base_url}",
    )
    return True


async def async_unload_entry(hass: HomeAssistant, entry: EnergyP2PConfigEntry) -> bool:
    """Unload the platforms; the event stream ends with the entry."""
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def async_remove_entry(hass: HomeAssistant, entry: EnergyP2PConfigEntry) -> None:
    """A removed edge controller leaves no repair issues behind."""
    async_delete_issues(hass, entry.entry_id)


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: EnergyP2PConfigEntry, device: DeviceEntry
) -> bool:
    """Let the user delete a device the edge controller no longer reports."""
    if entry.state is not ConfigEntryState.LOADED:
        return True  # what it reports is unknown; setting it up adds its devices again
    current = current_identifiers(entry.runtime_data.coordinator.data)
    if entry.runtime_data.building is not None:
        current |= entry.runtime_data.building.identifiers()
    return not any(domain == DOMAIN and ident in current for domain, ident in device.identifiers)
