"""Repair issues: conditions of an edge controller that its owner must put right.

- `unsupported_api_version`: it speaks another API version (update one side).
- `clock_skew`: its clock is far from Home Assistant's; every record it signs carries its
  time, and the community refuses records from the future and judges expiry by it.
- `ledger_stalled`: its ledger stopped growing although peers are online.
- `usb_hub_not_switchable`: its USB charging hub cannot switch ports' power, so it can
  neither start nor cut off a paid charge (a different hub is needed).
- `storage_failing`: it cannot write its data (the disk is full or failing, or its ledger
  file is damaged): actions are refused with nothing done, blocks are not stored.

The coordinator reports each GET status (and each block) to `EdgeHealth`, which raises an
issue when a condition appears and deletes it when the condition goes away. The first two
have a repair flow that checks again (after the owner fixed the cause); a stalled ledger
clears itself with the next block, the hub issue with the first read that shows a hub
that switches.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import probatio as vol
from homeassistant.components.repairs import RepairsFlow, RepairsFlowResult
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir

from .const import DOMAIN
from .energy_p2p_client import API_VERSION
from .membership import MembershipRequestFlow, is_membership_issue
from .policy import to_ms

if TYPE_CHECKING:
    from . import EnergyP2PConfigEntry

ISSUE_API_VERSION: Final = "unsupported_api_version"
ISSUE_CLOCK_SKEW: Final = "clock_skew"
ISSUE_LEDGER_STALLED: Final = "ledger_stalled"
ISSUE_USB_HUB: Final = "usb_hub_not_switchable"
ISSUE_STORAGE: Final = "storage_failing"
ISSUES: Final = (
    ISSUE_API_VERSION,
    ISSUE_CLOCK_SKEW,
    ISSUE_LEDGER_STALLED,
    ISSUE_USB_HUB,
    ISSUE_STORAGE,
)
# Nothing in Home Assistant can fix these: they go away when their cause does.
NOT_FIXABLE: Final = frozenset({ISSUE_LEDGER_STALLED, ISSUE_USB_HUB, ISSUE_STORAGE})
# uhubctl's list of hubs known to switch each port's power (VBUS) on its own.
SWITCHING_HUBS_URL: Final = "https://github.com/mvp/uhubctl#compatible-usb-hubs"
# The edge controller's code for a hub with ganged (or no) port power switching.
NO_PORT_POWER: Final = "no_port_power"

# The community's default `max_future_ms`: peers refuse records and blocks stamped further
# ahead than this, so a larger offset makes the home's own records bounce.
CLOCK_SKEW_LIMIT: Final = timedelta(seconds=15)
# Blocks come every few seconds, and at least every six block intervals as an empty
# heartbeat; a quarter of an hour without one is well beyond either.
LEDGER_STALL_LIMIT: Final = timedelta(minutes=15)


def issue_id(kind: str, entry_id: str) -> str:
    """The issue id of `kind` for one config entry (one edge controller)."""
    return f"{kind}_{entry_id}"


@callback
def async_delete_issues(hass: HomeAssistant, entry_id: str) -> None:
    """Delete every issue of one config entry (it was removed)."""
    for kind in ISSUES:
        ir.async_delete_issue(hass, DOMAIN, issue_id(kind, entry_id))


def clock_offset_ms(edge_time: int, asked: datetime, answered: datetime) -> int:
    """How far the edge controller's clock is from ours, in ms (positive: it is ahead).

    Its `time` was read somewhere between asking and the answer: only the distance
    outside that interval is certain, so a slow answer never looks like a skewed clock."""
    low, high = to_ms(asked), to_ms(answered)
    if edge_time < low:
        return edge_time - low
    if edge_time > high:
        return edge_time - high
    return 0


class EdgeHealth:
    """Watches one edge controller's status and keeps its repair issues in step."""

    def __init__(self, hass: HomeAssistant, entry: EnergyP2PConfigEntry) -> None:
        self.hass = hass
        self.entry = entry
        self.clock_offset_ms = 0
        self._height: int | None = None
        self._height_since: datetime | None = None

    def _create(self, kind: str, severity: ir.IssueSeverity, **placeholders: str) -> None:
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            issue_id(kind, self.entry.entry_id),
            is_fixable=kind not in NOT_FIXABLE,
            learn_more_url=SWITCHING_HUBS_URL if kind == ISSUE_USB_HUB else None,
            severity=severity,
            translation_key=kind,
            translation_placeholders={"title": self.entry.title, **placeholders},
            data={"entry_id": self.entry.entry_id},
        )

    def _delete(self, kind: str) -> None:
        ir.async_delete_issue(self.hass, DOMAIN, issue_id(kind, self.entry.entry_id))

    @callback
    def api_version_refused(self, version: object) -> None:
        """GET status showed an API version other than ours."""
        self._create(
            ISSUE_API_VERSION,
            ir.IssueSeverity.ERROR,
            version=str(version),
            supported=str(API_VERSION),
        )

    @callback
    def status_read(self, status: dict[str, Any], asked: datetime, answered: datetime) -> None:
        """A GET status of our API version, asked and answered at these times (our clock)."""
        self._delete(ISSUE_API_VERSION)
        edge_time = status.get("time")
        if isinstance(edge_time, int):
            self.clock_offset_ms = clock_offset_ms(edge_time, asked, answered)
            if abs(self.clock_offset_ms) > CLOCK_SKEW_LIMIT.total_seconds() * 1000:
                self._create(
                    ISSUE_CLOCK_SKEW,
                    ir.IssueSeverity.ERROR,
                    offset=f"{self.clock_offset_ms / 1000:+.0f}",
                    limit=f"{CLOCK_SKEW_LIMIT.total_seconds():.0f}",
                )
            else:
                self._delete(ISSUE_CLOCK_SKEW)
        self.storage_seen(status)
        self.ledger_seen(status, answered)

    @callback
    def storage_seen(self, status: dict[str, Any]) -> None:
        """The storage part of a GET status: raise the issue while writes fail."""
        storage = status.get("storage")
        # An edge controller too old to report its storage raises nothing.
        if not isinstance(storage, dict) or storage.get("ok") is not False:
            self._delete(ISSUE_STORAGE)
            return
        error = storage.get("error") or {}
        free = storage.get("free_bytes")
        self._create(
            ISSUE_STORAGE,
            ir.IssueSeverity.CRITICAL
            if error.get("code") == "damaged_store"
            else ir.IssueSeverity.ERROR,
            code=str(error.get("code") or "storage_failed"),
            message=str(error.get("message") or "writes fail"),
            free=f"{free / 1_000_000:.1f}" if isinstance(free, int) else "?",
        )

    @callback
    def ledger_seen(self, status: dict[str, Any], now: datetime) -> None:
        """The ledger part of the status as it stands `now` (after a read or a block)."""
        ledger = status.get("ledger") or {}
        height = ledger.get("height")
        if height != self._height or self._height_since is None:
            self._height, self._height_since = height, now
            self._delete(ISSUE_LEDGER_STALLED)
            return
        peers = status.get("peers") or []
        head_time = ledger.get("head_time")
        # Both clocks must agree that it has been long: ours since we saw this height,
        # the edge controller's since its head block was sealed.
        unchanged_for = now - self._height_since
        head_age_ms = (
            to_ms(now) + self.clock_offset_ms - head_time if isinstance(head_time, int) else None
        )
        limit = LEDGER_STALL_LIMIT
        if (
            peers
            and unchanged_for > limit
            and (head_age_ms is None or head_age_ms > limit.total_seconds() * 1000)
        ):
            self._create(
                ISSUE_LEDGER_STALLED,
                ir.IssueSeverity.WARNING,
                height=str(height),
                minutes=f"{unchanged_for.total_seconds() / 60:.0f}",
                peers=str(len(peers)),
            )
        else:
            self._delete(ISSUE_LEDGER_STALLED)

    @callback
    def usb_read(self, usb: dict[str, Any] | None) -> None:
        """A GET usb (None: no USB charging): is there a hub that cannot switch its ports?"""
        hub = (usb or {}).get("hub") or {}
        error = hub.get("error") or {}
        # A hub that is missing (unplugged, or not found yet) is not switchable either,
        # but it tells with an error of its own: a different hub is no answer to that.
        ganged = error.get("code") == NO_PORT_POWER or (
            hub.get("switchable") is False and not error
        )
        if not ganged:
            self._delete(ISSUE_USB_HUB)
            return
        self._create(
            ISSUE_USB_HUB,
            ir.IssueSeverity.ERROR,
            hub=str(hub.get("description") or "?"),
            reason=str(error.get("message") or "no per-port power switching"),
        )


class RecheckRepairFlow(RepairsFlow):
    """Asks the owner to fix the cause, then reads the edge controller again.

    The issue is resolved only if the condition is gone; otherwise the form says so."""

    def __init__(self, entry_id: str) -> None:
        self.entry_id = entry_id

    async def async_step_init(self, user_input: dict[str, str] | None = None) -> RepairsFlowResult:
        """The first step: what to do, then check."""
        return await self.async_step_confirm()

    async def async_step_confirm(
        self, user_input: dict[str, str] | None = None
    ) -> RepairsFlowResult:
        """On submit, read the edge controller again and see whether the issue remains."""
        errors: dict[str, str] = {}
        if user_input is not None:
            if await self._condition_gone():
                return self.async_create_entry(data={})
            errors["base"] = "still_there"
        issue = ir.async_get(self.hass).async_get_issue(DOMAIN, self.issue_id)
        placeholders = dict(issue.translation_placeholders or {}) if issue else {}
        return self.async_show_form(
            step_id="confirm",
            data_schema=vol.Schema({}),
            errors=errors,
            description_placeholders=placeholders,
        )

    async def _condition_gone(self) -> bool:
        entry = self.hass.config_entries.async_get_entry(self.entry_id)
        if entry is None:
            return True
        if entry.state is ConfigEntryState.LOADED:
            await entry.runtime_data.coordinator.async_refresh()
        else:
            # An edge controller refused for its API version never loaded: set it up again.
            await self.hass.config_entries.async_reload(self.entry_id)
        return ir.async_get(self.hass).async_get_issue(DOMAIN, self.issue_id) is None


async def async_create_fix_flow(
    hass: HomeAssistant, issue_id: str, data: dict[str, str | int | float | None] | None
) -> RepairsFlow:
    """The repair flow of one of our fixable issues."""
    if is_membership_issue(issue_id):
        return MembershipRequestFlow(
            str((data or {}).get("entry_id")), str((data or {}).get("request_id"))
        )
    return RecheckRepairFlow(str((data or {}).get("entry_id")))
