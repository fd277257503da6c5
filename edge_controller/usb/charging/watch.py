"""A charging session, second by second: the delivered energy on disk, the cut-offs (the
bought amount, the money paid in advance, the longest session), the watchdog, and a
signed reading at each settlement period."""

from __future__ import annotations

import asyncio
import logging

from edge_controller.devices import Clock
from edge_controller.usb.charging.port import EndSession, PortState
from edge_controller.usb.charging.readings import PortReadings
from edge_controller.usb.charging.settings import UsbSettings
from edge_controller.usb.store import UsbStore
from edge_controller.usb.types import MeterError

log = logging.getLogger(__name__)

# Stop when the energy of this many of the next intervals would reach the bought amount:
# a little early rather than late (undershoot of about one second's energy, a few mWh).
PREDICTION_INTERVALS = 1.5


class SessionWatch:
    """Checks a port's charging session once a cycle and ends it when it must end."""

    def __init__(
        self,
        *,
        settings: UsbSettings,
        store: UsbStore,
        readings: PortReadings,
        clock: Clock,
        end: EndSession,
    ) -> None:
        self._settings = settings
        self._store = store
        self._readings = readings
        self._clock = clock
        self._end = end

    async def check(self, port: PortState) -> None:
        """One cycle of the port's session, after its meter was read."""
        row = port.session
        assert row is not None
        now = self._clock.now_ms()
        if row.state != "charging":
            return
        if now - port.last_valid_ms >= self._settings.watchdog_ms:
            error = port.meter_error or MeterError("the meter gave no sample", "meter_missing")
            log.warning("port %d: watchdog: %s", port.port, error.message)
            await self._end(port, "meter_failed", error=error)
            return
        sample = port.sample
        if sample is not None and row.meter_start_mwh is not None:
            delivered = max(sample.energy_mwh - row.meter_start_mwh, 0)
            if delivered != row.delivered_mwh:
                row.delivered_mwh = delivered
                # Every second's energy is on disk before the tick ends (a kill settles all
                # of it), but the fsync runs in a worker thread, not on the event loop.
                await asyncio.to_thread(self._store.update_delivered, row.id, delivered)
            step = sample.power_mw * self._settings.interval_ms / 3_600_000
            if delivered + PREDICTION_INTERVALS * step >= row.bought_mwh:
                await self._end(port, "balance" if row.by_amount else "delivered")
                return
        if now >= row.started + self._settings.max_session_ms - 2 * self._settings.interval_ms:
            await self._end(port, "stopped")
            return
        boundary = self._readings.due(port.resource, now)
        if boundary is not None:
            await self._readings.sign(
                port, boundary, row.counter_start_wh + row.delivered_mwh // 1000
            )
