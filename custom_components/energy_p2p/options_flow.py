"""The options flow: a menu of steps, each editing one part of what the edge controller
keeps. `market` edits the parts of the market policy that no entity controls (the
thresholds, prices and switches are entities under Controls, not options as well).

A step is added by naming it in `MENU` and writing its `async_step_<name>`; each step
writes back only the fields the user changed, into the policy as it is at that moment, so
a change made meanwhile (by an entity, an automation, the edge controller's own page) is
kept.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any, Final

import probatio
from homeassistant.config_entries import ConfigEntryState, ConfigFlowResult
from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN, PERCENTAGE, UnitOfTime
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    BooleanSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
)

from .energy_p2p_client import JSON, ApiError, CannotConnect, EnergyP2PClient, InvalidAuth
from .options_devices import HomeAssistantDevicesStep
from .policy import section

# The options menu, in order; each name is a step `async_step_<name>` of the flow
# (`devices` only for an edge controller with devices that read Home Assistant entities).
MENU: list[str] = ["market", "devices"]

CONF_OFFER_VALIDITY: Final = "offer_validity"
CONF_OFFER_INTERVAL: Final = "offer_interval"
CONF_ANSWER_REQUESTS: Final = "answer_requests"
CONF_MIN_COUNTER: Final = "min_counter"

MS_PER_MINUTE: Final = 60_000


def _minutes(low: float, high: float) -> NumberSelector:
    return NumberSelector(
        NumberSelectorConfig(
            min=low,
            max=high,
            step=0.5,
            unit_of_measurement=UnitOfTime.MINUTES,
            mode=NumberSelectorMode.BOX,
        )
    )


PERCENT = NumberSelector(
    NumberSelectorConfig(
        min=0, max=100, step=0.1, unit_of_measurement=PERCENTAGE, mode=NumberSelectorMode.BOX
    )
)


class Field:
    """One form field over one value of the policy's `sell` section, with its conversions."""

    def __init__(
        self,
        key: str,
        path: str,
        selector: Any,
        shown: Callable[[Any], Any] = lambda value: value,
        stored: Callable[[Any], Any] = lambda value: value,
    ) -> None:
        self.key = key
        self.path = path
        self.selector = selector
        self.shown = shown
        self.stored = stored


MARKET_FIELDS: Final = (
    Field(
        CONF_OFFER_VALIDITY,
        "offer_validity_ms",
        _minutes(0.5, 24 * 60),
        shown=lambda ms: ms / MS_PER_MINUTE,
        stored=lambda minutes: round(minutes * MS_PER_MINUTE),
    ),
    Field(
        CONF_OFFER_INTERVAL,
        "min_offer_interval_ms",
        _minutes(0, 24 * 60),
        shown=lambda ms: ms / MS_PER_MINUTE,
        stored=lambda minutes: round(minutes * MS_PER_MINUTE),
    ),
    Field(CONF_ANSWER_REQUESTS, "answer_requests", BooleanSelector(), stored=bool),
    Field(
        CONF_MIN_COUNTER,
        "min_counter_permille",
        PERCENT,
        shown=lambda permille: permille / 10,
        stored=lambda percent: round(percent * 10),
    ),
)


class EnergyP2POptionsFlow(HomeAssistantDevicesStep):
    """Edits what the edge controller keeps; Home Assistant keeps no copy of it."""

    def __init__(self) -> None:
        """Nothing shown yet."""
        self._shown: dict[str, Any] = {}

    def _client(self) -> EnergyP2PClient:
        data = self.config_entry.data
        return EnergyP2PClient(
            async_get_clientsession(self.hass), data[CONF_HOST], data[CONF_PORT], data[CONF_TOKEN]
        )

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """The menu of what can be changed (a single step opens at once)."""
        menu = [name for name in MENU if name != "devices" or await self._has_ha_devices()]
        if len(menu) == 1:
            step: Callable[[], Awaitable[ConfigFlowResult]] = getattr(self, f"async_step_{menu[0]}")
            return await step()
        return self.async_show_menu(step_id="init", menu_options=menu)

    async def _has_ha_devices(self) -> bool:
        """Whether the edge controller has devices that read Home Assistant entities."""
        try:
            mapping = await self._client().get_ha_entities()
        except CannotConnect, ApiError, InvalidAuth:
            return False  # an older edge controller, or none reachable: the step says why
        return bool(mapping.get("devices"))

    async def async_step_devices(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """The entities each Home Assistant device of the edge controller follows."""
        return await self.async_step_ha_devices_or_done()

    async def async_step_market(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """How offers are made and counter-offers answered: read from the edge controller,
        written back field by field."""
        errors: dict[str, str] = {}
        placeholders = {"error": ""}
        client = self._client()
        try:
            policy = await client.get_policy()
        except InvalidAuth:
            return self.async_abort(reason="invalid_auth")
        except CannotConnect, ApiError:
            if user_input is None:
                return self.async_abort(reason="cannot_connect")
            errors["base"] = "cannot_connect"
            policy = {}
        if user_input is not None and not errors:
            try:
                written = await client.set_policy(self._changed(policy, user_input))
            except CannotConnect:
                errors["base"] = "cannot_connect"
            except ApiError as exc:
                # The edge controller checks the whole document and says what is wrong.
                errors["base"] = "invalid_policy" if exc.code == "invalid_policy" else "refused"
                placeholders["error"] = exc.message
            else:
                entry = self.config_entry
                if entry.state is ConfigEntryState.LOADED:
                    entry.runtime_data.coordinator.async_apply("policy", written)
                return self.async_create_entry(data=dict(self.config_entry.options))
        if user_input is None:
            self._shown = self._values(policy)
        schema = probatio.Schema(
            {probatio.Required(f.key): f.selector for f in MARKET_FIELDS if f.key in self._shown}
        )
        return self.async_show_form(
            step_id="market",
            data_schema=self.add_suggested_values_to_schema(schema, user_input or self._shown),
            description_placeholders=placeholders,
            errors=errors,
        )

    @staticmethod
    def _values(policy: JSON) -> dict[str, Any]:
        """The form's values from the policy (a field the policy lacks is not shown)."""
        values = {}
        for field in MARKET_FIELDS:
            value = section(policy, "sell", field.path)
            if value is not None:
                values[field.key] = field.shown(value)
        return values

    def _changed(self, policy: JSON, user_input: dict[str, Any]) -> JSON:
        """`policy` (as it is now) with the fields the user changed from what was shown."""
        document = copy.deepcopy(policy)
        sell = document.setdefault("sell", {})
        for field in MARKET_FIELDS:
            if field.key in user_input and user_input[field.key] != self._shown.get(field.key):
                sell[field.path] = field.stored(user_input[field.key])
        return document
