"""The Energy P2P integration: a home's edge controller in Home Assistant."""

from __future__ import annotations

from dataclasses import dataclass

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.aiohttp_client import async_get_clientsession

from .api import EnergyP2PClient
from .coordinator import EnergyP2PCoordinator

PLATFORMS: list[Platform] = [Platform.BINARY_SENSOR, Platform.SENSOR]


@dataclass(slots=True)
class EnergyP2PData:
    """What a loaded config entry holds (`entry.runtime_data`)."""

    client: EnergyP2PClient
    coordinator: EnergyP2PCoordinator


type EnergyP2PConfigEntry = ConfigEntry[EnergyP2PData]


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
    entry.runtime_data = EnergyP2PData(client, coordinator)
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    # Cancelled by Home Assistant when the entry unloads.
    entry.async_create_background_task(
        hass, coordinator.async_follow_events(), f"energy_p2p events {client.base_url}"
    )
    return True


async def async_unload_entry(hass: HomeAssistant, entry: EnergyP2PConfigEntry) -> bool:
    """Unload the platforms; the event stream ends with the entry."""
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
