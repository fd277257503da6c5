"""The options step that picks Home Assistant entities for the edge controller's devices.

An edge controller may name devices whose telemetry Home Assistant has (`profile:
homeassistant` in its edge.yaml). After the market policy, the options flow shows one
step per such device, with entity pickers filtered by device class (a battery's state of
charge among battery sensors, its power among power sensors, its discharge setting among
numbers), and writes the choice to the edge controller (`PUT homeassistant/entities`).
Nothing is typed by hand and nothing is kept in Home Assistant.
"""

from __future__ import annotations

from typing import Any

import probatio
from homeassistant.config_entries import ConfigFlowResult, OptionsFlow
from homeassistant.const import ATTR_UNIT_OF_MEASUREMENT, CONF_HOST, CONF_PORT, CONF_TOKEN
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    BooleanSelector,
    EntitySelector,
    EntitySelectorConfig,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
)

from .energy_p2p_client import JSON, ApiError, CannotConnect, EnergyP2PClient
from .relay import async_mapping_changed

# The entities a device of each role can follow: (field and quantity, domains, device class).
ROLE_ENTITIES: dict[str, tuple[tuple[str, list[str], str], ...]] = {
    "battery": (
        ("soc_percent", ["sensor"], "battery"),
        ("battery_power_w", ["sensor"], "power"),
    ),
    "pv": (
        ("power_w", ["sensor"], "power"),
        ("export_energy_wh", ["sensor"], "energy"),
    ),
    "grid_meter": (
        ("grid_power_w", ["sensor"], "power"),
        ("import_energy_wh", ["sensor"], "energy"),
        ("export_energy_wh", ["sensor"], "energy"),
    ),
    "fuel_cell": (
        ("power_w", ["sensor"], "power"),
        ("hydrogen_g", ["sensor"], "weight"),
    ),
    "meter": (
        ("power_w", ["sensor"], "power"),
        ("import_energy_wh", ["sensor"], "energy"),
        ("export_energy_wh", ["sensor"], "energy"),
    ),
}
UNITS = {
    "soc_percent": ("%",),
    "battery_power_w": ("W", "kW", "MW"),
    "power_w": ("W", "kW", "MW"),
    "grid_power_w": ("W", "kW", "MW"),
    "import_energy_wh": ("Wh", "kWh", "MWh"),
    "export_energy_wh": ("Wh", "kWh", "MWh"),
    "hydrogen_g": ("g", "kg"),
}
CONF_SETPOINT = "battery_setpoint"
CONF_DISCHARGE_POSITIVE = "discharge_positive"
CONF_CAPACITY = "capacity_wh"
SETPOINT_DOMAINS = ["number", "input_number"]


class HomeAssistantDevicesStep(OptionsFlow):
    """`ha_device`: one form per Home Assistant device of the edge controller."""

    _ha_devices: list[JSON] | None = None
    _ha_chosen: JSON | None = None

    def _devices_client(self) -> EnergyP2PClient:
        data = self.config_entry.data
        return EnergyP2PClient(
            async_get_clientsession(self.hass), data[CONF_HOST], data[CONF_PORT], data[CONF_TOKEN]
        )

    async def async_step_ha_devices_or_done(self) -> ConfigFlowResult:
        """The device steps, when the edge controller has Home Assistant devices."""
        try:
            mapping = await self._devices_client().get_ha_entities()
        except CannotConnect, ApiError:
            return self.async_abort(reason="cannot_connect")
        self._ha_devices = [d for d in mapping.get("devices") or [] if isinstance(d, dict)]
        self._ha_chosen = {}
        if not self._ha_devices:
            return self.async_abort(reason="no_ha_devices")
        return await self.async_step_ha_device()

    async def async_step_ha_device(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Pick the entities of the next device; write them all after the last."""
        assert self._ha_devices is not None and self._ha_chosen is not None
        device = self._ha_devices[len(self._ha_chosen)]
        errors: dict[str, str] = {}
        placeholders = {
            "device": str(device.get("id")),
            "role": str(device.get("role")),
            "error": "",
        }
        if user_input is not None:
            errors = self._unit_errors(device, user_input)
            if not errors:
                self._ha_chosen[str(device["id"])] = self._settings(device, user_input)
                if len(self._ha_chosen) < len(self._ha_devices):
                    return await self.async_step_ha_device()
                try:
                    await self._devices_client().set_ha_entities(self._ha_chosen)
                except CannotConnect:
                    errors["base"] = "cannot_connect"
                except ApiError as exc:
                    errors["base"] = "refused"
                    placeholders["error"] = exc.message
                else:
                    async_mapping_changed(self.hass, self.config_entry.entry_id)
                    return self.async_create_entry(data=dict(self.config_entry.options))
                self._ha_chosen.pop(str(device["id"]))
        return self.async_show_form(
            step_id="ha_device",
            data_schema=self.add_suggested_values_to_schema(
                self._device_schema(device), user_input or _current(device)
            ),
            description_placeholders=placeholders,
            errors=errors,
        )

    def _device_schema(self, device: JSON) -> probatio.Schema:
        fields: dict[Any, Any] = {}
        for name, domains, device_class in ROLE_ENTITIES.get(str(device.get("role")), ()):
            fields[probatio.Optional(name)] = EntitySelector(
                EntitySelectorConfig(domain=domains, device_class=device_class)
            )
        if device.get("role") == "battery":
            fields[probatio.Optional(CONF_SETPOINT)] = EntitySelector(
                EntitySelectorConfig(domain=SETPOINT_DOMAINS)
            )
            fields[probatio.Required(CONF_DISCHARGE_POSITIVE, default=True)] = BooleanSelector()
            fields[probatio.Optional(CONF_CAPACITY)] = probatio.All(
                NumberSelector(
                    NumberSelectorConfig(
                        min=1, max=1_000_000, mode=NumberSelectorMode.BOX, unit_of_measurement="Wh"
                    )
                ),
                probatio.Coerce(int),
            )
        return probatio.Schema(fields)

    def _unit_errors(self, device: JSON, user_input: dict[str, Any]) -> dict[str, str]:
        """A picked entity in a unit the edge controller cannot read is named on its field."""
        errors: dict[str, str] = {}
        for name, units in (*UNITS.items(), (CONF_SETPOINT, ("W",))):
            entity_id = user_input.get(name)
            state = self.hass.states.get(entity_id) if entity_id else None
            if state is not None and state.attributes.get(ATTR_UNIT_OF_MEASUREMENT) not in units:
                errors[name] = "setpoint_unit" if name == CONF_SETPOINT else "wrong_unit"
        return errors

    def _settings(self, device: JSON, user_input: dict[str, Any]) -> JSON:
        """The device's entities, services and constants as the edge controller takes them."""
        discharge_positive = bool(user_input.get(CONF_DISCHARGE_POSITIVE, True))
        entities: JSON = {}
        for name, _, _ in ROLE_ENTITIES.get(str(device.get("role")), ()):
            if user_input.get(name):
                entities[name] = user_input[name]
        if "battery_power_w" in entities and discharge_positive:
            entities["battery_power_w"] = {"entity_id": entities["battery_power_w"], "scale": -1}
        settings: JSON = {"entities": entities}
        setpoint = user_input.get(CONF_SETPOINT)
        if setpoint:
            settings["commands"] = {
                "battery_setpoint_w": {
                    "service": f"{setpoint.split('.', 1)[0]}.set_value",
                    "entity_id": setpoint,
                    # The edge controller's setpoint is negative while discharging.
                    "scale": -1 if discharge_positive else 1,
                }
            }
        if user_input.get(CONF_CAPACITY):
            settings["constants"] = {"capacity_wh": int(user_input[CONF_CAPACITY])}
        return settings


def _current(device: JSON) -> dict[str, Any]:
    """The form's values from what the edge controller follows now."""
    values: dict[str, Any] = dict(device.get("entities") or {})
    setpoint = (device.get("commands") or {}).get("battery_setpoint_w")
    if isinstance(setpoint, dict) and setpoint.get("entity_id"):
        values[CONF_SETPOINT] = setpoint["entity_id"]
    return values
