"""Home Assistant entities as the edge controller's devices: relay their states, carry out
the service calls that come back.

The edge controller says which entities its `homeassistant` devices follow (`watched`);
their states go to it whenever one changes and every few seconds besides (its values go
stale when they stop: Home Assistant is away, and nothing is sold from them). Each answer
may carry service calls (a battery's discharge setpoint during a trade, the owner's value
after it); only the few services that set a value or pick an option, and only on the
entities the owner picked for the edge controller, are carried out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import probatio
from homeassistant.const import ATTR_UNIT_OF_MEASUREMENT
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.dispatcher import async_dispatcher_connect, async_dispatcher_send
from homeassistant.helpers.event import async_track_state_change_event

from .energy_p2p_client import JSON, ApiError, CannotConnect, EnergyP2PClient, InvalidAuth

_LOGGER = logging.getLogger(__name__)

# Well inside the edge controller's default 30 s staleness, even with a request lost.
RELAY_INTERVAL = 5.0
# How often the list of watched entities is asked for when it is empty.
IDLE_INTERVAL = 60.0
# The service calls a device command may be: set a value, pick an option, run a script.
ALLOWED_SERVICES = frozenset(
    {
        "number.set_value",
        "input_number.set_value",
        "select.select_option",
        "input_select.select_option",
        "script.turn_on",
    }
)
ALLOWED_FIELDS = frozenset({"entity_id", "value", "option", "variables"})


def _mapping_changed(entry_id: str) -> str:
    return f"energy_p2p_relay_mapping_{entry_id}"


@callback
def async_mapping_changed(hass: HomeAssistant, entry_id: str) -> None:
    """Tell the entry's relay that the owner picked other entities: read them now."""
    async_dispatcher_send(hass, _mapping_changed(entry_id))


def allowed(call: JSON, commanded: set[str]) -> str | None:
    """Why a service call from the edge controller is refused, or None when it may run."""
    service, data = call.get("service"), call.get("data")
    if not isinstance(service, str) or not isinstance(data, dict):
        return "malformed service call"
    entity_id = data.get("entity_id")
    if service not in ALLOWED_SERVICES and not (
        service.startswith("script.") and entity_id is None
    ):
        return f"{service} is not a service a device command may call"
    if set(data) - ALLOWED_FIELDS:
        return f"{service} with fields {sorted(set(data) - ALLOWED_FIELDS)} is not allowed"
    target = entity_id if entity_id is not None else service
    if target not in commanded:
        return f"{target} is not an entity picked for the edge controller"
    if entity_id is not None and entity_id.split(".", 1)[0] != service.split(".", 1)[0]:
        return f"{service} does not act on {entity_id}"
    return None


class EntityRelay:
    """Relays the watched entities of one edge controller and runs its device commands."""

    def __init__(self, hass: HomeAssistant, client: EnergyP2PClient, entry_id: str) -> None:
        self.hass = hass
        self.client = client
        self.entry_id = entry_id
        self.watched: list[str] = []
        self.commanded: set[str] = set()
        self._results: list[JSON] = []
        self._changed = asyncio.Event()
        self._untrack: Callable[[], None] | None = None

    async def async_run(self) -> None:
        """Relay until cancelled; an unreachable edge controller is tried again later."""
        stop_listening = async_dispatcher_connect(
            self.hass, _mapping_changed(self.entry_id), self._remapped
        )
        try:
            while True:
                interval = await self._step()
                if interval is None:
                    return
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), interval)
        finally:
            stop_listening()
            self._stop_tracking()

    async def _step(self) -> float | None:
        """One relay (or a look at the mapping); the seconds to the next, None to stop."""
        try:
            if not self.watched:
                self._follow(await self.client.get_ha_entities())
                if not self.watched:
                    return IDLE_INTERVAL
            answer = await self.client.relay_states(self.states(), self._take_results())
        except ApiError as exc:
            if exc.status == 404:
                _LOGGER.debug("the edge controller has no Home Assistant devices endpoint")
                return None
            _LOGGER.warning("relaying entities to the edge controller failed: %s", exc)
            return RELAY_INTERVAL
        except (CannotConnect, InvalidAuth) as exc:
            _LOGGER.debug("cannot relay entities now: %s", exc)
            return RELAY_INTERVAL
        watched = answer.get("watched")
        if isinstance(watched, list) and watched != self.watched:
            # The owner picked other entities: the next step reads the mapping again.
            self.watched = []
        for call in answer.get("commands") or []:
            if isinstance(call, dict):
                await self._carry_out(call)
        return RELAY_INTERVAL

    def _follow(self, mapping: JSON) -> None:
        devices = [d for d in mapping.get("devices") or [] if isinstance(d, dict)]
        self.watched = [str(e) for e in mapping.get("watched") or []]
        self.commanded = {
            str(target)
            for d in devices
            for c in (d.get("commands") or {}).values()
            if isinstance(c, dict)
            for target in (c.get("entity_id") or c.get("service"),)
            if target
        }
        self._stop_tracking()
        if self.watched:
            self._untrack = async_track_state_change_event(
                self.hass, self.watched, self._state_changed
            )

    @callback
    def _state_changed(self, event: Event[EventStateChangedData]) -> None:
        self._changed.set()

    @callback
    def _remapped(self) -> None:
        self.watched = []
        self._changed.set()

    def _stop_tracking(self) -> None:
        if self._untrack is not None:
            self._untrack()
            self._untrack = None

    def states(self) -> list[JSON]:
        """The watched entities' states with their units (missing ones as unavailable)."""
        relayed = []
        for entity_id in self.watched:
            state = self.hass.states.get(entity_id)
            relayed.append(
                {
                    "entity_id": entity_id,
                    "state": state.state if state is not None else "unavailable",
                    "unit": state.attributes.get(ATTR_UNIT_OF_MEASUREMENT) if state else None,
                }
            )
        return relayed

    def _take_results(self) -> list[JSON]:
        results, self._results = self._results[:64], []
        return results

    async def _carry_out(self, call: JSON) -> None:
        result: dict[str, Any] = {"device": call.get("device"), "command": call.get("command")}
        refused = allowed(call, self.commanded)
        if refused is not None:
            _LOGGER.warning("refused a device command from the edge controller: %s", refused)
            self._results.append({**result, "error": refused})
            return
        domain, service = str(call["service"]).split(".", 1)
        try:
            await self.hass.services.async_call(domain, service, call["data"], blocking=True)
        except (HomeAssistantError, ValueError, probatio.Invalid) as exc:
            _LOGGER.warning("device command %s failed: %s", call["service"], exc)
            result["error"] = str(exc) or type(exc).__name__
        self._results.append(result)
        # Its outcome goes back at once, with the entity's new state.
        self._changed.set()
