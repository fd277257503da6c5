"""Adding an edge controller: found by zeroconf or entered by hand; reauth; reconfigure."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import probatio
from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
)
from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN
from homeassistant.core import callback
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo

from .community_flow import JoinCommunityStep, is_unjoined
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
from .options_flow import EnergyP2POptionsFlow

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


class EnergyP2PConfigFlow(JoinCommunityStep, ConfigFlow, domain=DOMAIN):
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
            if status is not None and is_unjoined(status):
                # An edge controller of no community yet: it joins with an invitation.
                self._join_connection = dict(user_input)
                return await self.async_step_join()
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
