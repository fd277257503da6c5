"""Numbers: the thresholds and prices of the edge controller's market policy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from homeassistant.components.number import (
    NumberDeviceClass,
    NumberEntity,
    NumberEntityDescription,
    NumberMode,
)
from homeassistant.const import PERCENTAGE, EntityCategory, UnitOfPower
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import EnergyP2PConfigEntry
from .coordinator import EnergyP2PState
from .energy_p2p_client import JSON
from .entity import EnergyP2PEntity, async_change_policy
from .policy import (
    as_int,
    min_sell_price,
    section,
    to_milli,
    to_units,
    with_limit,
    with_max_buy_price,
    with_min_sell_price,
    with_reserve,
    with_sell_soc,
    with_surplus,
)

PARALLEL_UPDATES = 1


@dataclass(frozen=True, kw_only=True)
class EnergyP2PNumberEntityDescription(NumberEntityDescription):
    """A number of the market policy: its value there, and the policy with a new value."""

    value_fn: Callable[[JSON], float | None]
    # None: the policy cannot take this value as it stands (e.g. time-of-day pricing).
    change_fn: Callable[[JSON, float], JSON | None]
    exists_fn: Callable[[EnergyP2PState], bool] = lambda state: True
    # A price: per kWh in the community's currency.
    priced: bool = False
    # An amount of money, in the community's currency.
    money: bool = False


def _has(role: str, rule: str) -> Callable[[EnergyP2PState], bool]:
    """Whether the home has a device of `role` or the policy a rule for it already."""
    return lambda state: bool(
        any(d.get("role") == role for d in state.devices) or section(state.policy, "sell", rule)
    )


NUMBERS: tuple[EnergyP2PNumberEntityDescription, ...] = (
    EnergyP2PNumberEntityDescription(
        # Selling stops the same gap below it as before (hysteresis).
        key="sell_threshold_soc",
        translation_key="sell_threshold_soc",
        entity_category=EntityCategory.CONFIG,
        device_class=NumberDeviceClass.BATTERY,
        native_unit_of_measurement=PERCENTAGE,
        native_min_value=0,
        native_max_value=100,
        native_step=1,
        mode=NumberMode.SLIDER,
        value_fn=lambda policy: as_int(section(policy, "sell", "battery", "enable_soc_percent")),
        change_fn=lambda policy, value: with_sell_soc(policy, round(value)),
        exists_fn=_has("battery", "battery"),
    ),
    EnergyP2PNumberEntityDescription(
        key="battery_reserve",
        translation_key="battery_reserve",
        entity_category=EntityCategory.CONFIG,
        device_class=NumberDeviceClass.BATTERY,
        native_unit_of_measurement=PERCENTAGE,
        native_min_value=0,
        native_max_value=100,
        native_step=1,
        mode=NumberMode.SLIDER,
        value_fn=lambda policy: as_int(section(policy, "sell", "battery", "reserve_percent")),
        change_fn=lambda policy, value: with_reserve(policy, round(value)),
        exists_fn=_has("battery", "battery"),
    ),
    EnergyP2PNumberEntityDescription(
        key="surplus_threshold",
        translation_key="surplus_threshold",
        entity_category=EntityCategory.CONFIG,
        device_class=NumberDeviceClass.POWER,
        native_unit_of_measurement=UnitOfPower.WATT,
        native_min_value=0,
        native_max_value=100_000,
        native_step=50,
        mode=NumberMode.BOX,
        value_fn=lambda policy: as_int(section(policy, "sell", "pv", "enable_surplus_w")),
        change_fn=lambda policy, value: with_surplus(policy, round(value)),
        exists_fn=_has("pv", "pv"),
    ),
    EnergyP2PNumberEntityDescription(
        key="min_sell_price",
        translation_key="min_sell_price",
        entity_category=EntityCategory.CONFIG,
        native_min_value=0,
        native_max_value=1000,
        native_step=0.001,
        mode=NumberMode.BOX,
        priced=True,
        value_fn=lambda policy: to_units(min_sell_price(policy)),
        change_fn=lambda policy, value: with_min_sell_price(policy, to_milli(value)),
    ),
    EnergyP2PNumberEntityDescription(
        key="max_buy_price",
        translation_key="max_buy_price",
        entity_category=EntityCategory.CONFIG,
        native_min_value=0,
        native_max_value=1000,
        native_step=0.001,
        mode=NumberMode.BOX,
        priced=True,
        value_fn=lambda policy: to_units(section(policy, "buy", "max_price")),
        change_fn=lambda policy, value: with_max_buy_price(policy, to_milli(value)),
    ),
    # The spending limits every purchase keeps to, by hand or automatic.
    EnergyP2PNumberEntityDescription(
        key="price_ceiling",
        translation_key="price_ceiling",
        entity_category=EntityCategory.CONFIG,
        native_min_value=0,
        native_max_value=1000,
        native_step=0.001,
        mode=NumberMode.BOX,
        priced=True,
        value_fn=lambda policy: to_units(section(policy, "limits", "price_ceiling")),
        change_fn=lambda policy, value: with_limit(policy, "price_ceiling", to_milli(value)),
    ),
    EnergyP2PNumberEntityDescription(
        key="max_trade_cost",
        translation_key="max_trade_cost",
        entity_category=EntityCategory.CONFIG,
        native_min_value=0,
        native_max_value=1_000_000,
        native_step=0.001,
        mode=NumberMode.BOX,
        money=True,
        value_fn=lambda policy: to_units(section(policy, "limits", "max_trade_cost")),
        change_fn=lambda policy, value: with_limit(policy, "max_trade_cost", to_milli(value)),
    ),
    EnergyP2PNumberEntityDescription(
        key="max_daily_cost",
        translation_key="max_daily_cost",
        entity_category=EntityCategory.CONFIG,
        native_min_value=0,
        native_max_value=1_000_000,
        native_step=0.001,
        mode=NumberMode.BOX,
        money=True,
        value_fn=lambda policy: to_units(section(policy, "limits", "max_daily_cost")),
        change_fn=lambda policy, value: with_limit(policy, "max_daily_cost", to_milli(value)),
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EnergyP2PConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the policy's numbers this home has a use for."""
    coordinator = entry.runtime_data.coordinator
    async_add_entities(
        EnergyP2PNumber(coordinator, description)
        for description in NUMBERS
        if description.exists_fn(coordinator.data)
    )


class EnergyP2PNumber(EnergyP2PEntity, NumberEntity):
    """A threshold or price of the edge controller's market policy."""

    entity_description: EnergyP2PNumberEntityDescription

    @property
    def native_value(self) -> float | None:
        """The value in the policy now."""
        return self.entity_description.value_fn(self.coordinator.data.policy)

    @property
    def native_unit_of_measurement(self) -> str | None:
        """Percent or watts; a price per kWh, or an amount, in the community's currency."""
        if self.entity_description.priced:
            return f"{self.coordinator.data.currency}/kWh"
        if self.entity_description.money:
            return self.coordinator.data.currency
        return self.entity_description.native_unit_of_measurement

    async def async_set_native_value(self, value: float) -> None:
        """Write the new value to the edge controller's policy."""
        change = self.entity_description.change_fn
        await async_change_policy(self.coordinator, lambda policy: change(policy, value))
