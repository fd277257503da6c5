"""Adding an edge controller: found by zeroconf or entered by hand; reauth; reconfigure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import probatio
from homeassistant.config_entries import (
    ConfigEntry,
    ConfigEntryState,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlow,
)
from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN, PERCENTAGE, UnitOfPower
from homeassistant.core import callback
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    BooleanSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo

from .const import DEFAULT_PORT, DOMAIN
from .energy_p2p_client import (
    API_PATH,
    API_VERSION,
    JSON,
    ApiError,
    CannotConnect,
    EnergyP2PClient,
    InvalidAuth,
    UnsupportedApiVersion,
)
from .policy import (
    min_sell_price,
    section,
    to_milli,
    to_units,
    with_auto_buy,
    with_auto_sell,
    with_max_buy_price,
    with_min_sell_price,
    with_reserve,
    with_sell_soc,
    with_surplus,
)

_LOGGER = logging.getLogger(__name__)

PORT_SELECTOR = probatio.All(
    NumberSelector(NumberSelectorConfig(min=1, max=65535, mode=NumberSelectorMode.BOX)),
    probatio.Coerce(int),
)
TOKEN_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))


CONNECTION_SCHEMA = probatio.Schema(
    {
        probatio.Required(CONF_HOST): str,
        probatio.Required(CONF_PORT, default=DEFAULT_PORT): PORT_SELECTOR,
        probatio.Required(CONF_TOKEN): TOKEN_SELECTOR,
    }
)


TOKEN_SCHEMA = probatio.Schema({probatio.Required(CONF_TOKEN): TOKEN_SELECTOR})


class EnergyP2PConfigFlow(ConfigFlow, domain=DOMAIN):
    """The config flow of Energy P2P."""

    VERSION = 1

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> EnergyP2POptionsFlow:
        """Thresholds, prices and automatic selling/buying: the edge controller's policy."""
        return EnergyP2POptionsFlow()

    def __init__(self) -> None:
        """Start with nothing discovered."""
        self._host: str | None = None
        self._port: int = DEFAULT_PORT
        self._name: str | None = None

    async def _async_try(
        self, host: str, port: int, token: str, errors: dict[str, str]
    ) -> JSON | None:
        """`GET status` with these settings, or None with the reason in `errors`."""
        client = EnergyP2PClient(async_get_clientsession(self.hass), host, port, token)
        try:
            return await client.get_checked_status()
        except CannotConnect:
            errors["base"] = "cannot_connect"
        except InvalidAuth:
            errors["base"] = "invalid_auth"
        except UnsupportedApiVersion:
            errors["base"] = "unsupported_api_version"
        except ApiError:
            _LOGGER.exception("Unexpected answer from the edge controller at %s:%s", host, port)
            errors["base"] = "unknown"
        return None

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for host, port and token."""
        errors: dict[str, str] = {}
        if user_input is not None:
            status = await self._async_try(
                user_input[CONF_HOST], user_input[CONF_PORT], user_input[CONF_TOKEN], errors
            )
            if status is not None:
                await self.async_set_unique_id(str(status["node_id"]))
                self._abort_if_unique_id_configured()
                return self.async_create_entry(title=str(status["name"]), data=user_input)
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(CONNECTION_SCHEMA, user_input),
            errors=errors,
        )

    async def async_step_zeroconf(self, discovery_info: ZeroconfServiceInfo) -> ConfigFlowResult:
        """An edge controller announced itself: check it, then ask for its token."""
        properties = discovery_info.properties
        node_id = properties.get("node_id")
        if not node_id:
            return self.async_abort(reason="not_energy_p2p")
        if (
            properties.get("api_version") != str(API_VERSION)
            or properties.get("path", API_PATH) != API_PATH
        ):
            return self.async_abort(reason="unsupported_api_version")
        self._host = discovery_info.host
        self._port = discovery_info.port or DEFAULT_PORT
        self._name = properties.get("name") or discovery_info.hostname.removesuffix(".local.")
        await self.async_set_unique_id(node_id)
        # A known edge controller that moved: follow it to its new address.
        self._abort_if_unique_id_configured(updates={CONF_HOST: self._host, CONF_PORT: self._port})
        self.context["title_placeholders"] = {"name": self._name}
        return await self.async_step_zeroconf_confirm()

    async def async_step_zeroconf_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the token of the discovered edge controller."""
        assert self._host is not None
        errors: dict[str, str] = {}
        if user_input is not None:
            status = await self._async_try(self._host, self._port, user_input[CONF_TOKEN], errors)
            if status is not None:
                await self.async_set_unique_id(str(status["node_id"]))
                self._abort_if_unique_id_configured()
                return self.async_create_entry(
                    title=str(status["name"]),
                    data={
                        CONF_HOST: self._host,
                        CONF_PORT: self._port,
                        CONF_TOKEN: user_input[CONF_TOKEN],
                    },
                )
        return self.async_show_form(
            step_id="zeroconf_confirm",
            data_schema=TOKEN_SCHEMA,
            description_placeholders={
                "name": self._name or self._host,
                "host": self._host,
                "port": str(self._port),
            },
            errors=errors,
        )

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """The edge controller refused the token."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for a new token."""
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            status = await self._async_try(
                entry.data[CONF_HOST], entry.data[CONF_PORT], user_input[CONF_TOKEN], errors
            )
            if status is not None:
                await self.async_set_unique_id(str(status["node_id"]))
                self._abort_if_unique_id_mismatch(reason="wrong_node")
                return self.async_update_reload_and_abort(
                    entry, data_updates={CONF_TOKEN: user_input[CONF_TOKEN]}
                )
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=TOKEN_SCHEMA,
            description_placeholders={"name": entry.title},
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change host, port or token of a configured edge controller."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            status = await self._async_try(
                user_input[CONF_HOST], user_input[CONF_PORT], user_input[CONF_TOKEN], errors
            )
            if status is not None:
                await self.async_set_unique_id(str(status["node_id"]))
                self._abort_if_unique_id_mismatch(reason="wrong_node")
                return self.async_update_reload_and_abort(entry, data_updates=user_input)
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                CONNECTION_SCHEMA,
                user_input or {CONF_HOST: entry.data[CONF_HOST], CONF_PORT: entry.data[CONF_PORT]},
            ),
            description_placeholders={"name": entry.title},
            errors=errors,
        )


# --- options: the edge controller's market policy ----------------------------------------

CONF_AUTO_SELL = "auto_sell"
CONF_AUTO_BUY = "auto_buy"
CONF_SELL_THRESHOLD_SOC = "sell_threshold_soc"
CONF_BATTERY_RESERVE = "battery_reserve"
CONF_SURPLUS_THRESHOLD = "surplus_threshold"
CONF_MIN_SELL_PRICE = "min_sell_price"
CONF_MAX_BUY_PRICE = "max_buy_price"

PERCENT_SELECTOR = probatio.All(
    NumberSelector(
        NumberSelectorConfig(
            min=0, max=100, step=1, unit_of_measurement=PERCENTAGE, mode=NumberSelectorMode.SLIDER
        )
    ),
    probatio.Coerce(int),
)
WATT_SELECTOR = probatio.All(
    NumberSelector(
        NumberSelectorConfig(
            min=0,
            max=100_000,
            step=50,
            unit_of_measurement=UnitOfPower.WATT,
            mode=NumberSelectorMode.BOX,
        )
    ),
    probatio.Coerce(int),
)


def _price_selector(currency: str) -> NumberSelector:
    return NumberSelector(
        NumberSelectorConfig(
            min=0,
            max=1000,
            step=0.001,
            unit_of_measurement=f"{currency}/kWh",
            mode=NumberSelectorMode.BOX,
        )
    )


class EnergyP2POptionsFlow(OptionsFlow):
    """Edits the edge controller's market policy; Home Assistant keeps no copy of it."""

    def __init__(self) -> None:
        """Nothing read yet."""
        self._policy: JSON = {}
        self._currency = ""
        self._has_battery = False
        self._has_pv = False

    def _client(self) -> EnergyP2PClient:
        data = self.config_entry.data
        return EnergyP2PClient(
            async_get_clientsession(self.hass), data[CONF_HOST], data[CONF_PORT], data[CONF_TOKEN]
        )

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Read the policy in force, then show and write its thresholds and prices."""
        client = self._client()
        if not self._policy:
            try:
                policy, status, devices = await asyncio.gather(
                    client.get_policy(), client.get_status(), client.get_devices()
                )
            except InvalidAuth:
                return self.async_abort(reason="invalid_auth")
            except CannotConnect, ApiError:
                return self.async_abort(reason="cannot_connect")
            self._policy = policy
            self._currency = str(status.get("community", {}).get("currency", ""))
            roles = {d.get("role") for d in devices}
            self._has_battery = "battery" in roles or bool(section(policy, "sell", "battery"))
            self._has_pv = "pv" in roles or bool(section(policy, "sell", "pv"))
        errors: dict[str, str] = {}
        placeholders = {"currency": self._currency, "error": ""}
        if user_input is not None:
            try:
                policy = await client.set_policy(self._changed(user_input))
            except CannotConnect:
                errors["base"] = "cannot_connect"
            except ApiError as exc:
                # The edge controller checks the whole document and says what is wrong.
                errors["base"] = "invalid_policy" if exc.code == "invalid_policy" else "refused"
                placeholders["error"] = exc.message
            else:
                entry = self.config_entry
                if entry.state is ConfigEntryState.LOADED:
                    entry.runtime_data.coordinator.async_apply("policy", policy)
                return self.async_create_entry(data={})
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(
                self._schema(), user_input or self._current()
            ),
            description_placeholders=placeholders,
            errors=errors,
        )

    def _schema(self) -> probatio.Schema:
        fields: dict[Any, Any] = {
            probatio.Required(CONF_AUTO_SELL): BooleanSelector(),
            probatio.Required(CONF_AUTO_BUY): BooleanSelector(),
        }
        # A device without a selling rule yet: filling the field in creates the rule.
        battery = (
            probatio.Required if section(self._policy, "sell", "battery") else probatio.Optional
        )
        pv = probatio.Required if section(self._policy, "sell", "pv") else probatio.Optional
        if self._has_battery:
            fields[battery(CONF_SELL_THRESHOLD_SOC)] = PERCENT_SELECTOR
            fields[battery(CONF_BATTERY_RESERVE)] = PERCENT_SELECTOR
        if self._has_pv:
            fields[pv(CONF_SURPLUS_THRESHOLD)] = WATT_SELECTOR
        if min_sell_price(self._policy) is not None:
            fields[probatio.Required(CONF_MIN_SELL_PRICE)] = _price_selector(self._currency)
        fields[probatio.Required(CONF_MAX_BUY_PRICE)] = _price_selector(self._currency)
        return probatio.Schema(fields)

    def _current(self) -> dict[str, Any]:
        """The form's values from the policy in force (fields it lacks are left empty)."""
        policy = self._policy
        values = {
            CONF_AUTO_SELL: section(policy, "sell", "auto_sell"),
            CONF_AUTO_BUY: section(policy, "buy", "auto_accept"),
            CONF_SELL_THRESHOLD_SOC: section(policy, "sell", "battery", "enable_soc_percent"),
            CONF_BATTERY_RESERVE: section(policy, "sell", "battery", "reserve_percent"),
            CONF_SURPLUS_THRESHOLD: section(policy, "sell", "pv", "enable_surplus_w"),
            CONF_MIN_SELL_PRICE: to_units(min_sell_price(policy)),
            CONF_MAX_BUY_PRICE: to_units(section(policy, "buy", "max_price")),
        }
        return {key: value for key, value in values.items() if value is not None}

    def _changed(self, user_input: dict[str, Any]) -> JSON:
        """The policy in force with the form's values (the rest as it is)."""
        policy = with_auto_sell(self._policy, bool(user_input[CONF_AUTO_SELL]))
        policy = with_auto_buy(policy, bool(user_input[CONF_AUTO_BUY]))
        if CONF_SELL_THRESHOLD_SOC in user_input:
            policy = with_sell_soc(policy, int(user_input[CONF_SELL_THRESHOLD_SOC]))
        if CONF_BATTERY_RESERVE in user_input:
            policy = with_reserve(policy, int(user_input[CONF_BATTERY_RESERVE]))
        if CONF_SURPLUS_THRESHOLD in user_input:
            policy = with_surplus(policy, int(user_input[CONF_SURPLUS_THRESHOLD]))
        if CONF_MIN_SELL_PRICE in user_input:
            priced = with_min_sell_price(policy, to_milli(float(user_input[CONF_MIN_SELL_PRICE])))
            # Only a form for a fixed or demand price has this field.
            assert priced is not None
            policy = priced
        return with_max_buy_price(policy, to_milli(float(user_input[CONF_MAX_BUY_PRICE])))
