"""How a session ends: the port off, a last reading covering the end, the trade's
termination and settlement (the wallet pays for what was delivered and gets the rest
back); the receipt once a block holds the settlement; and, at start-up, the sessions a
crash left open, ended with reason "restart" and their delivered part settled."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from edge_controller.devices import Clock
from edge_controller.ledger import Ledger, cost_of
from edge_controller.refusal import Refusal
from edge_controller.usb.charging.bus import UsbBus
from edge_controller.usb.charging.port import PortState, Publish, delivered_wh
from edge_controller.usb.charging.readings import PortReadings
from edge_controller.usb.charging.signing import Signer
from edge_controller.usb.charging.views import ledger_names, session_view
from edge_controller.usb.store import SessionRow, UsbStore
from edge_controller.usb.types import UsbError

log = logging.getLogger(__name__)


class _PooledTrade:
    """A trade whose acceptance is still in the pool: active until a block says more."""

    status = "active"


class Settlement:
    """Ends sessions and follows their settlement until a block holds it."""

    def __init__(
        self,
        *,
        store: UsbStore,
        ledger: Ledger,
        bus: UsbBus,
        readings: PortReadings,
        signer: Signer,
        publish: Publish,
        clock: Clock,
        receipt_seen: Callable[[int], None],
    ) -> None:
        self._store = store
        self._ledger = ledger
        self._bus = bus
        self._readings = readings
        self._signer = signer
        self._publish = publish
        self._clock = clock
        self._receipt_seen = receipt_seen
        self._unsettled: dict[str, SessionRow] = {}

    async def recover(self, ports: Mapping[int, PortState]) -> None:
        """End and settle the sessions a crash or restart left open (their ports are
        already off); then follow every settlement not yet seen in a block."""
        for row in self._store.open_sessions():
            await self._recover(row, ports.get(row.port))
        self._unsettled = {r.id: r for r in self._store.unsettled_sessions()}

    def settling(self, port_number: int) -> bool:
        """Whether the port's last session may still overlap a new trade on it."""
        waiting = [r for r in self._unsettled.values() if r.port == port_number]
        return any(not self._closed_in_chain(r) for r in waiting)

    async def end(self, port: PortState, reason: str, error: UsbError | None = None) -> SessionRow:
        """Port off, the last reading, termination and settlement; the session's receipt."""
        row = port.session
        assert row is not None
        port.session = None
        await self._bus.set_power(port, False)
        if error is None and row.meter_start_mwh is not None and await self._bus.read_last(port):
            assert port.sample is not None
            row.delivered_mwh = max(port.sample.energy_mwh - row.meter_start_mwh, 0)
        row.state = "failed" if error is not None or reason == "error" else "ended"
        row.ended, row.reason = self._clock.now_ms(), reason
        if error is not None:
            row.error_code, row.error_message = error.code, error.message
        self._store.save_session(row)
        await self._settle(port, row)
        log.info(
            "port %d: session %s %s (%s): %d of %d mWh, paid %s",
            port.port,
            row.id,
            row.state,
            reason,
            row.delivered_mwh,
            row.bought_mwh,
            row.paid,
        )
        self._ended(row)
        return row

    def confirm(self) -> None:
        """A settlement in a block is the receipt: the figures come from the ledger."""
        for row in list(self._unsettled.values()):
            trade = self._ledger.state.trades.get(row.trade or "")
            if trade is None or trade.status != "settled":
                continue
            row.settled, row.paid, row.refunded = True, trade.paid, trade.refunded
            self._store.save_session(row)
            del self._unsettled[row.id]
            self._receipt_seen(row.port)

    def _ended(self, row: SessionRow) -> None:
        now = self._clock.now_ms()
        view = session_view(row, ledger_names(self._ledger))
        self._publish("usb_session", {"phase": "ended", "session": view}, now)

    async def _settle(self, port: PortState | None, row: SessionRow) -> None:
        """The last reading covering the session's end, then termination and settlement."""
        if row.trade is None:
            return
        wh = delivered_wh(row.delivered_mwh)
        if port is not None:
            cursor = self._readings.cursor(row.resource)
            now = self._clock.now_ms()
            if cursor is None or cursor.boundary_ms < now:
                await self._readings.sign(port, now, row.counter_start_wh + wh)
            cursor = self._readings.cursor(row.resource)
            if cursor is not None:
                # Claim no more than the readings hold (a reading refused, or none possible
                # within the same millisecond): Delivery settles any rest from the chain.
                wh = min(wh, max(cursor.export_wh - row.counter_start_wh, 0))
        trade = self._trade(row.trade)
        if trade is not None and trade.status == "active":
            try:
                await self._signer.sign("termination", trade=row.trade)
            except Refusal as refusal:
                _note_error(row, refusal)
        try:
            await self._signer.sign("settlement", trade=row.trade, delivered_wh=wh)
        except Refusal as refusal:
            # Delivery settles it later from the readings in the chain.
            _note_error(row, refusal)
        else:
            row.paid = min(cost_of(min(wh, row.bought_mwh // 1000), row.price), row.cost)
            row.refunded = row.cost - row.paid
        self._store.save_session(row)
        self._unsettled[row.id] = row

    def _trade(self, trade_id: str) -> Any:
        trade = self._ledger.state.trades.get(trade_id)
        if trade is not None or trade_id in self._ledger.pool:
            return trade if trade is not None else _PooledTrade()
        return None

    def _closed_in_chain(self, row: SessionRow) -> bool:
        """Whether a block fixed the end of the session's trade (its termination's block
        time): a new trade on the port must not overlap it, or the readings of the new
        session would count for the old one."""
        trade = self._ledger.state.trades.get(row.trade or "")
        return trade is not None and trade.status != "active" and trade.end < self._clock.now_ms()

    async def _recover(self, row: SessionRow, port: PortState | None) -> None:
        """A session a crash or restart left open: the port is already off; sign what was
        delivered up to the last stored second and settle it."""
        if row.trade is None and row.offer is not None:
            row.trade = self._trade_of_offer(row.offer)
        row.state, row.ended, row.reason = "ended", self._clock.now_ms(), "restart"
        self._store.save_session(row)
        await self._settle(port, row)
        log.info(
            "port %d: session %s ended by a restart, %d mWh", row.port, row.id, row.delivered_mwh
        )
        self._ended(row)

    def _trade_of_offer(self, offer_id: str) -> str | None:
        for trade in self._ledger.state.trades.values_all():
            if trade.offer == offer_id:
                return trade.id
        for record in self._ledger.pool.values():
            if record.kind == "acceptance" and record.body.get("offer") == offer_id:
                return record.id
        return None


def _note_error(row: SessionRow, refusal: Refusal) -> None:
    """Keep the first refusal a session met, for its receipt."""
    if row.error_code is None:
        row.error_code, row.error_message = refusal.code, refusal.message
