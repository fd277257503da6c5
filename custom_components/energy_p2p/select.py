"""Select: how the edge controller prices what it sells (its market policy)."""

from __future__ import annotations

from homeassistant.components.select import SelectEntity, SelectEntityDescription
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import EnergyP2PConfigEntry
from .entity import EnergyP2PEntity, async_change_policy
from .policy import PRICING_KINDS, pricing_of_kind, section

PARALLEL_UPDATES = 1

PRICING_STRATEGY = SelectEntityDescription(
    key="pricing_strategy",
    translation_key="pricing_strategy",
    entity_category=EntityCategory.CONFIG,
    options=list(PRICING_KINDS),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EnergyP2PConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the pricing strategy select."""
    async_add_entities([EnergyP2PPricingSelect(entry.runtime_data.coordinator, PRICING_STRATEGY)])


class EnergyP2PPricingSelect(EnergyP2PEntity, SelectEntity):
    """Fixed price, a time-of-day table, or a price that follows demand.

    Choosing another kind writes a starting document for it from the price asked now
    (see `policy.pricing_of_kind`); its details are then edited in the policy."""

    @property
    def current_option(self) -> str | None:
        """The pricing kind in force."""
        kind = section(self.coordinator.data.policy, "sell", "pricing", "kind")
        return kind if kind in PRICING_KINDS else None

    async def async_select_option(self, option: str) -> None:
        """Price by `option` from now on."""
        await async_change_policy(self.coordinator, lambda policy: pricing_of_kind(policy, option))
