"""Following each port: a phone plugged in or out (and a pairing code for one not yet
bound to a wallet), the owner's switch, the free trickle, and keeping the port's power as
it should be."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping

from edge_controller.devices import Clock
from edge_controller.refusal import Refusal, Why
from edge_controller.usb.charging.bus import UsbBus
from edge_controller.usb.charging.port import EndSession, PortState, forget_device
from edge_controller.usb.charging.settings import UsbSettings
from edge_controller.usb.store import UsbStore
from edge_controller.usb.types import PortStatus, UsbIdentity

log = logging.getLogger(__name__)

# A free trickle may run ahead of its average power by this much before the port pauses.
TRICKLE_SLACK_MWH = 250


class PortFollower:
    """Who is plugged into each port, and whether the port should be on."""

    def __init__(
        self,
        *,
        settings: UsbSettings,
        ports: Mapping[int, PortState],
        bus: UsbBus,
        store: UsbStore,
        clock: Clock,
        end: EndSession,
    ) -> None:
        self._settings = settings
        self._ports = ports
        self._bus = bus
        self._store = store
        self._clock = clock
        self._end = end

    async def follow(self, port: PortState, status: PortStatus | None) -> None:
        """Take the hub's report of the port: a phone plugged in, out, or exchanged."""
        if status is None:
            error = self._bus.missing_port(port.port)
            if error is not None:
                port.error = error
            return
        if port.error is not None and port.error.code == "port_unavailable":
            port.error = None
        port.powered = status.powered
        device = status.device if status.connected else None
        if device is not None and port.device is not None and device.key == port.device.key:
            return
        if port.device is not None:
            await self._detached(port)
        if device is not None:
            self._attached(port, device)

    def _attached(self, port: PortState, device: UsbIdentity) -> None:
        port.device = device
        port.since = self._clock.now_ms()
        port.connected = True
        port.trickle_budget_mwh = 0.0
        port.trickle_paused = False
        binding = self._store.binding(device.key)
        port.wallet = binding.wallet if binding is not None else None
        if binding is None:
            port.pairing_code = self._new_pairing_code()
            log.info("port %d: unknown phone %s; pairing code issued", port.port, device.key)
        else:
            log.info("port %d: phone %s attached", port.port, device.key)

    async def _detached(self, port: PortState) -> None:
        log.info("port %d: %s unplugged", port.port, port.device.key if port.device else "?")
        if port.session is not None:
            await self._end(port, "unplugged")
        forget_device(port)

    def _new_pairing_code(self) -> str:
        taken = {p.pairing_code for p in self._ports.values()}
        while True:
            code = f"{secrets.randbelow(1_000_000):06d}"
            if code not in taken:
                return code

    def showing(self, code: str) -> PortState:
        """The port whose phone shows the pairing code; raises Refusal when none does."""
        port = next((p for p in self._ports.values() if p.pairing_code == code), None)
        if port is None or port.device is None:
            raise Refusal("unknown_code", "no phone shows that pairing code", Why.NOT_FOUND)
        return port

    async def set_enabled(self, port: PortState, enabled: bool) -> None:
        """The owner's switch; disabling ends the port's session ("stopped") and powers off."""
        self._store.set_port_enabled(port.port, enabled)
        port.enabled = enabled
        if not enabled:
            if port.session is not None:
                await self._end(port, "stopped")
            port.trickle = False
            await self._bus.set_power(port, False)

    def trickle(self, port: PortState) -> None:
        """Power an attached phone for free at an average of `free_trickle_mw`: the port
        pauses when the phone has drawn more than that average allows, and resumes once
        the allowance has caught up."""
        limit = self._settings.free_trickle_mw
        metered = self._bus.has_meter(port.port)
        if not limit or port.device is None or not port.enabled or not metered:
            port.trickle = False
            return
        sample = port.sample
        if port.meter_error is not None or sample is None:
            port.trickle = False
            return
        budget = port.trickle_budget_mwh
        if port.trickle and port.trickle_mark_mwh is not None:
            budget -= sample.energy_mwh - port.trickle_mark_mwh
        budget = min(budget + limit * self._settings.interval_ms / 3_600_000, TRICKLE_SLACK_MWH)
        port.trickle_budget_mwh = budget
        port.trickle_mark_mwh = sample.energy_mwh
        if port.trickle and budget < -TRICKLE_SLACK_MWH:
            port.trickle, port.trickle_paused = False, True
        elif not port.trickle and budget >= 0:
            port.trickle, port.trickle_paused = True, False

    async def keep_power(self, port: PortState) -> None:
        """The port is on only for a charging session or a running trickle: anything else
        (a port someone switched on, a hub that forgot) is switched off."""
        wanted = (port.session is not None and port.session.state == "charging") or port.trickle
        if port.powered != wanted:  # without a hub, set_power changes nothing
            await self._bus.set_power(port, wanted)
