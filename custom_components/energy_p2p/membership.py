"""Membership requests for a registrar's home: each waiting request is a repair issue whose
fix flow approves (with an optional opening top-up) or denies it.

Only an edge controller that keeps its community's registrar key (`GET
community/membership` answers `registrar: true`) has requests; it is asked for them every
`POLL_INTERVAL`. An issue goes away once its request is decided, here or elsewhere (the
command line, another Home Assistant).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import probatio as vol
from homeassistant.components.repairs import RepairsFlow, RepairsFlowResult
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.event import async_track_time_interval

from .const import DOMAIN
from .energy_p2p_client import ApiError, CannotConnect, EnergyP2PClient, InvalidAuth
from .policy import to_milli

if TYPE_CHECKING:
    from . import EnergyP2PConfigEntry

_LOGGER = logging.getLogger(__name__)

ISSUE_MEMBERSHIP: Final = "membership_request"
POLL_INTERVAL: Final = timedelta(seconds=30)


def membership_issue_id(entry_id: str, request_id: str) -> str:
    """The issue id of one waiting request of one config entry."""
    return f"{ISSUE_MEMBERSHIP}_{entry_id}_{request_id}"


def is_membership_issue(issue_id: str) -> bool:
    """Whether an issue id is one of a membership request."""
    return issue_id.startswith(f"{ISSUE_MEMBERSHIP}_")


class MembershipRequests:
    """The repair issues of one registrar's home's waiting requests."""

    def __init__(self, hass: HomeAssistant, entry_id: str, client: EnergyP2PClient) -> None:
        self.hass = hass
        self.entry_id = entry_id
        self.client = client
        self.shown: set[str] = set()

    async def refresh(self, _now: datetime | None = None) -> None:
        """Read the waiting requests; raise an issue for each new one, delete the rest."""
        try:
            requests = await self.client.get_membership_requests()
        except (CannotConnect, InvalidAuth, ApiError) as exc:
            _LOGGER.debug("membership requests not read: %s", exc)
            return
        waiting = set()
        for request in requests:
            request_id = str(request.get("id"))
            waiting.add(request_id)
            resources = ", ".join(
                f"{r.get('resource')} ({r.get('kind')}, {r.get('power_w')} W)"
                for r in request.get("resources") or []
            )
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                membership_issue_id(self.entry_id, request_id),
                is_fixable=True,
                is_persistent=False,
                severity=ir.IssueSeverity.WARNING,
                translation_key=ISSUE_MEMBERSHIP,
                translation_placeholders={
                    "name": str(request.get("name")),
                    "login": str(request.get("login")),
                    "resources": resources or "-",
                },
                data={"entry_id": self.entry_id, "request_id": request_id},
            )
        for gone in self.shown - waiting:
            ir.async_delete_issue(self.hass, DOMAIN, membership_issue_id(self.entry_id, gone))
        self.shown = waiting

    @callback
    def delete_all(self) -> None:
        """Delete every issue this entry raised (it unloads)."""
        for request_id in self.shown:
            ir.async_delete_issue(self.hass, DOMAIN, membership_issue_id(self.entry_id, request_id))
        self.shown = set()


async def async_setup_membership(hass: HomeAssistant, entry: EnergyP2PConfigEntry) -> None:
    """For a registrar's home, follow its waiting membership requests as repair issues."""
    client = entry.runtime_data.client
    try:
        membership = await client.get_membership()
    except CannotConnect, InvalidAuth, ApiError:
        return  # an edge controller without the community endpoints, or one not answering
    if not membership.get("registrar"):
        return
    requests = MembershipRequests(hass, entry.entry_id, client)
    await requests.refresh()
    entry.async_on_unload(async_track_time_interval(hass, requests.refresh, POLL_INTERVAL))
    entry.async_on_unload(requests.delete_all)


class MembershipRequestFlow(RepairsFlow):
    """Approve (with an optional opening top-up) or deny one membership request."""

    def __init__(self, entry_id: str, request_id: str) -> None:
        self.entry_id = entry_id
        self.request_id = request_id

    def _client(self) -> EnergyP2PClient | None:
        entry = self.hass.config_entries.async_get_entry(self.entry_id)
        runtime = getattr(entry, "runtime_data", None) if entry is not None else None
        return runtime.client if runtime is not None else None

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> RepairsFlowResult:
        """Approve or deny."""
        return self.async_show_menu(step_id="init", menu_options=["approve", "deny"])

    async def async_step_approve(
        self, user_input: dict[str, Any] | None = None
    ) -> RepairsFlowResult:
        """Register the home, with an opening top-up in the community currency's units."""
        if user_input is None:
            return self.async_show_form(
                step_id="approve",
                data_schema=vol.Schema({vol.Optional("topup", default=0): vol.Coerce(float)}),
            )
        topup = to_milli(float(user_input.get("topup", 0)))
        return await self._decide(lambda c: c.approve_membership(self.request_id, max(0, topup)))

    async def async_step_deny(self, user_input: dict[str, Any] | None = None) -> RepairsFlowResult:
        """Refuse the request: nothing is registered."""
        if user_input is None:
            return self.async_show_form(
                step_id="deny",
                data_schema=vol.Schema({vol.Optional("reason", default=""): str}),
            )
        reason = str(user_input.get("reason", ""))[:200]
        return await self._decide(lambda c: c.deny_membership(self.request_id, reason))

    async def _decide(self, action: Any) -> RepairsFlowResult:
        client = self._client()
        if client is None:
            return self.async_abort(reason="not_loaded")
        try:
            await action(client)
        except ApiError as exc:
            _LOGGER.warning("membership request %s: %s", self.request_id, exc)
            return self.async_abort(
                reason="refused", description_placeholders={"message": str(exc)}
            )
        except CannotConnect, InvalidAuth:
            return self.async_abort(reason="cannot_connect")
        ir.async_delete_issue(
            self.hass, DOMAIN, membership_issue_id(self.entry_id, self.request_id)
        )
        return self.async_create_entry(data={})
