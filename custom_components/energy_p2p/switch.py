"""Switches: automatic selling and buying (the edge controller's policy), and each USB port
open for charging or not."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.components.switch import SwitchEntity, SwitchEntityDescription
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import EnergyP2PConfigEntry
from .energy_p2p_client import JSON
from .entity import (
    USB_PORT,
    EnergyP2PEntity,
    EnergyP2PSubDeviceEntity,
    SubDevice,
    async_add_sub_device_entities,
    async_call_edge,
    async_change_policy,
)
from .policy import section, with_auto_buy, with_auto_sell

# Each switch writes to the edge controller: one write at a time per platform.
PARALLEL_UPDATES = 1


@dataclass(frozen=True, kw_only=True)
class EnergyP2PPolicySwitchEntityDescription(SwitchEntityDescription):
    """A switch of the market policy: where it reads, and the policy with it on or off."""

    path: tuple[str, ...]
    change_fn: Callable[[JSON, bool], JSON]


POLICY_SWITCHES: tuple[EnergyP2PPolicySwitchEntityDescription, ...] = (
    EnergyP2PPolicySwitchEntityDescription(
        key="auto_sell",
        translation_key="auto_sell",
        path=("sell", "auto_sell"),
        change_fn=with_auto_sell,
        entity_category=EntityCategory.CONFIG,
    ),
    EnergyP2PPolicySwitchEntityDescription(
        key="auto_buy",
        translation_key="auto_buy",
        path=("buy", "auto_accept"),
        change_fn=with_auto_buy,
        entity_category=EntityCategory.CONFIG,
    ),
)

PORT_ENABLED = SwitchEntityDescription(key="usb_port_enabled", translation_key="usb_port_enabled")


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EnergyP2PConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the policy switches, and one per USB port."""
    coordinator = entry.runtime_data.coordinator
    async_add_entities(
        EnergyP2PPolicySwitch(coordinator, description) for description in POLICY_SWITCHES
    )

    def port_switches(device: SubDevice) -> list[EnergyP2PPortSwitch]:
        if device.kind != USB_PORT:
            return []
        return [EnergyP2PPortSwitch(coordinator, PORT_ENABLED, device)]

    async_add_sub_device_entities(entry, async_add_entities, port_switches)


class EnergyP2PPolicySwitch(EnergyP2PEntity, SwitchEntity):
    """A switch that is a yes/no field of the edge controller's market policy."""

    entity_description: EnergyP2PPolicySwitchEntityDescription

    @property
    def is_on(self) -> bool | None:
        """Whether the policy has it on."""
        value = section(self.coordinator.data.policy, *self.entity_description.path)
        return value if isinstance(value, bool) else None

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Turn it on in the edge controller's policy."""
        await self._async_set(True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Turn it off in the edge controller's policy."""
        await self._async_set(False)

    async def _async_set(self, on: bool) -> None:
        change = self.entity_description.change_fn
        await async_change_policy(self.coordinator, lambda policy: change(policy, on))


class EnergyP2PPortSwitch(EnergyP2PSubDeviceEntity, SwitchEntity):
    """A USB port open for charging (phones can buy energy there) or closed."""

    @property
    def is_on(self) -> bool | None:
        """Whether the port is open for charging."""
        enabled = self.data.get("enabled")
        return enabled if isinstance(enabled, bool) else None

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Open the port for charging."""
        await self._async_set(True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Close the port: no new sessions."""
        await self._async_set(False)

    async def _async_set(self, enabled: bool) -> None:
        port = await async_call_edge(
            self.coordinator.config_entry,
            self.coordinator.client.set_usb_port(int(self.device.ref), enabled),
        )
        self.coordinator.async_apply("usb", port)
