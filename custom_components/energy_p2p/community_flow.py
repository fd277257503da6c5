"""The config flow's "join a community" step: an edge controller that belongs to no
community yet (its `GET status` says `joined: false`) is given an invitation through its
API, joins, starts as a home, and is added as usual."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

import probatio
from homeassistant.config_entries import ConfigFlow, ConfigFlowResult
from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import TextSelector, TextSelectorConfig

from .energy_p2p_client import ApiError, CannotConnect, EnergyP2PClient, InvalidAuth

CONF_INVITATION: Final = "invitation"
CONF_NAME: Final = "name"
# The edge controller restarts as a home after joining: how long to wait for it.
JOIN_START_TIMEOUT_S: Final = 60.0
_INVITATION_ERRORS: Final = frozenset(
    {"malformed_invitation", "forged_invitation", "expired_invitation", "already_exists"}
)

JOIN_SCHEMA = probatio.Schema(
    {
        probatio.Required(CONF_INVITATION): TextSelector(TextSelectorConfig(multiline=True)),
        probatio.Optional(CONF_NAME): str,
    }
)


def is_unjoined(status: dict[str, Any]) -> bool:
    """Whether `GET status` comes from an edge controller of no community yet."""
    return status.get("joined") is False


class JoinCommunityStep(ConfigFlow):
    """The `join` step, mixed into the integration's config flow."""

    _join_connection: dict[str, Any]

    async def async_step_join(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the invitation (its text) and, optionally, the home's display name."""
        errors: dict[str, str] = {}
        if user_input is not None:
            connection = self._join_connection
            client = EnergyP2PClient(
                async_get_clientsession(self.hass),
                connection[CONF_HOST],
                connection[CONF_PORT],
                connection[CONF_TOKEN],
            )
            try:
                await client.join_community(
                    user_input[CONF_INVITATION].strip(), user_input.get(CONF_NAME) or None
                )
                status = await _started(client)
            except ApiError as exc:
                errors["base"] = exc.code if exc.code in _INVITATION_ERRORS else "join_refused"
            except CannotConnect, InvalidAuth, TimeoutError:
                errors["base"] = "cannot_connect"
            else:
                await self.async_set_unique_id(str(status["node_id"]))
                self._abort_if_unique_id_configured()
                return self.async_create_entry(title=str(status["name"]), data=connection)
        return self.async_show_form(
            step_id="join",
            data_schema=self.add_suggested_values_to_schema(JOIN_SCHEMA, user_input),
            errors=errors,
        )


async def _started(client: EnergyP2PClient) -> dict[str, Any]:
    """`GET status` once the joined edge controller runs as a home (it restarts its API)."""
    deadline = time.monotonic() + JOIN_START_TIMEOUT_S
    while True:
        try:
            status = await client.get_checked_status()
            if status.get("node_id"):
                return status
        except CannotConnect:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the edge controller did not start after joining")
        await asyncio.sleep(0.5)
