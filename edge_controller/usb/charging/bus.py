"""The hub and the meters as they come and go: port status and power, meter samples,
and hot-plug. A hub or meter missing at start-up or unplugged later is opened again every
`reopen_ms`. While the hub is gone nothing is powered; when it returns every port is
switched off first, as at start-up. Blocking USB calls run in worker threads.

What a loss means for a port's phone and session is not decided here: `hub_gone` and
`meter_gone` are told, port by port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import TypeVar

from edge_controller.devices import Clock
from edge_controller.usb.charging.hardware import HardwareOpener, UsbHardware
from edge_controller.usb.charging.port import PortLost, PortState, check_sample
from edge_controller.usb.charging.settings import UsbSettings
from edge_controller.usb.types import (
    HubMissing,
    MeterError,
    NoPortPowerControl,
    PortPower,
    PortStatus,
    UsbError,
    UsbMeter,
)

log = logging.getLogger(__name__)

Opened = TypeVar("Opened")


class UsbBus:
    """The hub and meters of one home; only this class opens, drops or talks to them."""

    def __init__(
        self,
        *,
        hardware: UsbHardware,
        settings: UsbSettings,
        ports: Mapping[int, PortState],
        clock: Clock,
        hub_gone: PortLost,
        meter_gone: PortLost,
    ) -> None:
        self._hub = hardware.hub
        self._hub_error = hardware.hub_error
        self._hub_description = hardware.hub_description
        self._meters = dict(hardware.meters)
        self._meter_error = hardware.meter_error
        first_meter = next(iter(self._meters.values()), None)
        self._meter_description = first_meter.description if first_meter is not None else ""
        self._opener: HardwareOpener | None = hardware.opener
        self._next_reopen_ms = 0
        self._settings = settings
        self._ports = ports
        self._clock = clock
        self._hub_gone = hub_gone
        self._meter_gone = meter_gone

    # --- what the other parts may read ---------------------------------------------------

    @property
    def hub_description(self) -> str:
        """The hub for people (the configured one while it is missing)."""
        return self._hub_description

    @property
    def hub_error(self) -> UsbError | None:
        """Why the hub cannot be used (or cannot switch ports one by one), or None."""
        return self._hub_error

    @property
    def switchable(self) -> bool:
        """Whether a port can be powered on for a charge now."""
        return self._hub is not None and not isinstance(self._hub_error, NoPortPowerControl)

    def switch_error(self) -> UsbError:
        """Why no port can be powered on (when `switchable` is False)."""
        return self._hub_error or NoPortPowerControl("no hub with per-port power switching")

    @property
    def meter_error(self) -> UsbError | None:
        """Why the configured meter could not be opened or was lost, or None."""
        return self._meter_error

    @property
    def meter_open(self) -> bool:
        """Whether any meter is open."""
        return bool(self._meters)

    @property
    def meter_description(self) -> str:
        """The meter for people (the last one seen while none is open)."""
        meter = next(iter(self._meters.values()), None)
        return meter.description if meter is not None else self._meter_description

    def has_meter(self, port_number: int) -> bool:
        """Whether a meter stands in front of the port now."""
        return port_number in self._meters

    def port_meter_error(self, port: PortState) -> UsbError | None:
        """The meter's error on the port it stands in front of (also while it is missing)."""
        if port.port in self._meters:
            return port.meter_error
        if self._opener is not None and port.port == self._opener.meter_port:
            return self._meter_error
        return None

    def missing_port(self, port_number: int) -> UsbError | None:
        """Why a port the hub did not report is unavailable (None: the hub is the problem)."""
        if self._hub is None or self._hub_error is not None:
            return None
        return UsbError(
            f"the hub has no port {port_number} (it has {self._hub.port_count})",
            "port_unavailable",
        )

    def warn_missing(self) -> None:
        """Log what could not be opened at start-up."""
        for what, error in (("hub", self._hub_error), ("meter", self._meter_error)):
            if error is not None:
                log.warning("USB %s: %s (%s)%s", what, error.message, error.code, self._retrying)

    # --- port status and power -----------------------------------------------------------

    async def statuses(self) -> dict[int, PortStatus]:
        """Every port as the hub reports it (none while the hub is missing or failing)."""
        if self._hub is None:
            return {}
        try:
            statuses = await asyncio.to_thread(self._hub.ports)
        except HubMissing as exc:
            await self._hub_lost(exc)
            return {}
        except UsbError as exc:
            self._hub_error = exc
            return {}
        if self._hub_error is not None and not isinstance(self._hub_error, NoPortPowerControl):
            self._hub_error = None
        return {s.port: s for s in statuses}

    async def set_power(self, port: PortState, on: bool) -> bool:
        """Switch the port's VBUS; False when it could not be (the error is on the port)."""
        if self._hub is None:
            return False
        try:
            await asyncio.to_thread(self._hub.set_power, port.port, on)
        except HubMissing as exc:
            await self._hub_lost(exc)
            return False
        except UsbError as exc:
            port.error = exc
            log.warning("port %d: cannot switch %s: %s", port.port, "on" if on else "off", exc)
            return False
        port.powered = on
        if port.error is not None and port.error.code != "port_unavailable":
            port.error = None
        return True

    async def all_off(self) -> None:
        """Every port off (start-up, stop, a hub back)."""
        for port in self._ports.values():
            await self.set_power(port, False)

    # --- meters --------------------------------------------------------------------------

    async def read_meter(self, port: PortState) -> UsbError | None:
        """Read the port's meter: a plausible sample becomes `port.sample`; otherwise the
        error (kept in `port.meter_error` too) is returned, and a meter gone is let go."""
        meter = self._meters.get(port.port)
        if meter is None:
            return None
        try:
            sample = await asyncio.to_thread(meter.read)
        except UsbError as exc:
            port.meter_error = exc
            if exc.code == "meter_missing":
                await self._meter_lost(port, exc)
            return exc
        why = check_sample(sample, port.sample)
        if why is not None:
            port.meter_error = MeterError(f"the meter's data is absurd: {why}", "meter_absurd")
            return port.meter_error
        port.sample = sample
        port.last_valid_ms = self._clock.now_ms()
        port.meter_error = None
        return None

    async def read_last(self, port: PortState) -> bool:
        """One more sample at a session's end; True when it is plausible (now `port.sample`)."""
        meter = self._meters.get(port.port)
        if meter is None:
            return False
        try:
            sample = await asyncio.to_thread(meter.read)
        except UsbError as exc:
            port.meter_error = exc
            return False
        if check_sample(sample, port.sample) is not None:
            return False
        port.sample = sample
        return True

    # --- hot-plug ------------------------------------------------------------------------

    @property
    def _retrying(self) -> str:
        if self._opener is None:
            return ""
        return f"; looking for it again every {self._settings.reopen_ms // 1000} s"

    async def reopen(self) -> None:
        """Every `reopen_ms`, try to open the hub or the meter where one is missing."""
        opener = self._opener
        now = self._clock.now_ms()
        if opener is None or now < self._next_reopen_ms:
            return
        hub_missing = self._hub is None
        meter_missing = opener.meter_port not in self._meters
        if not (hub_missing or meter_missing):
            return
        self._next_reopen_ms = now + self._settings.reopen_ms
        if hub_missing:
            hub = await self._open_again("hub", opener.open_hub, self._hub_error)
            if isinstance(hub, UsbError):
                self._hub_error = hub
            else:
                await self._hub_back(hub)
        if meter_missing:
            meter = await self._open_again("meter", opener.open_meter, self._meter_error)
            if isinstance(meter, UsbError):
                self._meter_error = meter
            else:
                self._meter_back(opener.meter_port, meter)

    async def _open_again(
        self, what: str, open_: Callable[[], Opened], error: UsbError | None
    ) -> Opened | UsbError:
        """The hub or meter opened, or why not (logged when the reason changed)."""
        try:
            return await asyncio.to_thread(open_)
        except UsbError as exc:
            if error is None or exc.code != error.code:
                log.warning("USB %s: %s (%s)%s", what, exc.message, exc.code, self._retrying)
            return exc

    async def _hub_lost(self, error: UsbError) -> None:
        """The hub left the bus: nothing is powered, each port is told."""
        if self._hub is None:
            return
        log.warning("USB %s is gone: %s%s", self._hub_description, error.message, self._retrying)
        self._hub, self._hub_error = None, error
        self._next_reopen_ms = self._clock.now_ms() + self._settings.reopen_ms
        for port in self._ports.values():
            port.powered = False
            await self._hub_gone(port, error)

    async def _hub_back(self, hub: PortPower) -> None:
        """The hub is there (again): every port off first, as at start-up."""
        self._hub, self._hub_error, self._hub_description = hub, None, hub.description
        log.info("USB %s is there; every port off", hub.description)
        for port in self._ports.values():
            port.error = None
        await self.all_off()

    async def _meter_lost(self, port: PortState, error: UsbError) -> None:
        """The meter left the bus: let it go, tell its port, look for it again."""
        meter = self._meters.pop(port.port, None)
        if meter is None:
            return
        log.warning("USB meter %s is gone: %s%s", meter.description, error.message, self._retrying)
        close = getattr(meter, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):  # a gone device may refuse to be released
                await asyncio.to_thread(close)
        self._meter_error = error
        port.sample = None
        self._next_reopen_ms = self._clock.now_ms() + self._settings.reopen_ms
        await self._meter_gone(port, error)

    def _meter_back(self, port_number: int, meter: UsbMeter) -> None:
        """A meter is there (again); its energy counter starts afresh."""
        self._meters[port_number] = meter
        self._meter_error, self._meter_description = None, meter.description
        log.info("USB meter %s is there", meter.description)
        port = self._ports.get(port_number)
        if port is not None:
            port.sample, port.meter_error, port.last_valid_ms = None, None, 0
