"""Button: settle now every sale whose delivery window is over (`POST settle`)."""

from __future__ import annotations

from homeassistant.components.button import ButtonEntity, ButtonEntityDescription
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import EnergyP2PConfigEntry
from .entity import EnergyP2PEntity, async_call_edge

PARALLEL_UPDATES = 1

SETTLE_NOW = ButtonEntityDescription(key="settle_now", translation_key="settle_now")


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EnergyP2PConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the settle-now button."""
    async_add_entities([EnergyP2PSettleButton(entry.runtime_data.coordinator, SETTLE_NOW)])


class EnergyP2PSettleButton(EnergyP2PEntity, ButtonEntity):
    """Settles due sales now rather than at the edge controller's next control cycle, and
    retries at once a settlement the ledger refused before; the settled trades then arrive
    as `trade` events (and fire the delivery-settled event)."""

    async def async_press(self) -> None:
        """Ask the edge controller to settle what is due."""
        await async_call_edge(self.coordinator.config_entry, self.coordinator.client.settle())
