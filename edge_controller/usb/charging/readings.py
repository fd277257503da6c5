"""The meter readings of the ports: signed through `Delivery`'s per-resource cursor (as for
every other metered resource of the home), and that cursor kept on disk so a restart goes
on counting where it stopped."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from edge_controller.ledger import Ledger, State
from edge_controller.usb.charging.port import PortState
from edge_controller.usb.store import PortCursor, UsbStore


class SignedCursor(Protocol):
    """Where a resource's signed readings stand."""

    boundary_ms: int
    export_wh: int


class MeterRecorder(Protocol):
    """How meter readings get signed: `Delivery`'s per-resource cursor, shared with the
    home's other metered resources."""

    period_ms: int

    async def record_meter(
        self, state: State, resource_id: str, end: int, export_wh: int, import_wh: int
    ) -> bool: ...

    def meter_cursor(self, resource_id: str) -> SignedCursor | None: ...

    def resume_meter(
        self, resource_id: str, boundary_ms: int, export_wh: int, import_wh: int
    ) -> None: ...


class PortReadings:
    """Signs a port's counter (Wh exported) up to an instant, and remembers where it stands."""

    def __init__(self, *, recorder: MeterRecorder, ledger: Ledger, store: UsbStore) -> None:
        self._recorder = recorder
        self._ledger = ledger
        self._store = store

    def resume(self, ports: Iterable[PortState]) -> None:
        """Go on from the cursors stored before a restart."""
        for port in ports:
            cursor = self._store.cursor(port.port)
            if cursor is not None:
                self._recorder.resume_meter(port.resource, cursor.cursor_ms, cursor.counter_wh, 0)

    def cursor(self, resource: str) -> SignedCursor | None:
        """Where the resource's signed readings stand (None: not read since start-up)."""
        return self._recorder.meter_cursor(resource)

    def due(self, resource: str, now: int) -> int | None:
        """The settlement period boundary a reading is due for, or None."""
        period = self._recorder.period_ms
        boundary = now - now % period
        cursor = self._recorder.meter_cursor(resource)
        if cursor is not None and boundary > cursor.boundary_ms:
            return boundary
        return None

    async def sign(self, port: PortState, end: int, counter_wh: int) -> None:
        """Sign the port's counter up to `end` (a reading refused stays unsigned)."""
        await self._recorder.record_meter(self._ledger.state, port.resource, end, counter_wh, 0)
        cursor = self._recorder.meter_cursor(port.resource)
        if cursor is not None:
            self._store.set_cursor(port.port, PortCursor(cursor.export_wh, cursor.boundary_ms))
