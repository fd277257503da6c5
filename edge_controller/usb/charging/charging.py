"""Phones buy charge over USB-PD: the parts of USB charging, wired, and what the home
and the API call.

Each configured hub port is a ledger resource (kind `usb_port`, metered by the home's
meter key). A phone plugged in is identified by vendor, product and serial; a phone bound
to a wallet (a key this edge controller keeps for it) buys a charge: the home signs an
offer private to the wallet for the port's energy, the wallet's key signs the acceptance,
and only once the local ledger holds both does the port power on. Every second the meter
is read; at each settlement period a meter reading is signed (through `Delivery`, as for
every other resource); the port powers off at the bought amount (the next second's energy
is predicted, so the overshoot stays well under max(0.5 Wh, 1 %)), when the money paid in
advance is spent, on unplug, on stop, or when the watchdog sees no valid meter sample for
`watchdog_ms`. Then a last reading covers the session's end, the home terminates the trade
and settles it: the wallet pays for what was delivered and gets the rest back.

Every port is off at start-up; sessions a crash left open are ended then with reason
"restart" and their delivered part settled. A hub gone ends its sessions (reason "error")
and forgets its phones; a meter gone ends its port's session at once ("meter_failed"): a
new meter counts from zero, so the session could not go on with it.

The parts: `UsbBus` (hub, meters, hot-plug), `PortFollower` (phones in and out, trickle,
power), `Purchases`, `SessionWatch`, `Settlement`, `Wallets`, `UsbViews`. Each is called
under this class's lock, one cycle or one action at a time.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from edge_controller.aio import cancel_and_wait
from edge_controller.devices import Clock
from edge_controller.ledger import Ledger
from edge_controller.refusal import Refusal, Why
from edge_controller.usb.charging.attach import PortFollower
from edge_controller.usb.charging.bus import UsbBus
from edge_controller.usb.charging.hardware import UsbHardware
from edge_controller.usb.charging.port import PortState, Publish, forget_device
from edge_controller.usb.charging.purchase import Purchases
from edge_controller.usb.charging.readings import MeterRecorder, PortReadings
from edge_controller.usb.charging.settings import UsbSettings
from edge_controller.usb.charging.settlement import Settlement
from edge_controller.usb.charging.signing import Issue, Signer
from edge_controller.usb.charging.views import UsbViews, ledger_names, session_view
from edge_controller.usb.charging.wallets import Wallets
from edge_controller.usb.charging.watch import SessionWatch
from edge_controller.usb.store import UsbStore
from edge_controller.usb.types import UsbError

log = logging.getLogger(__name__)


class UsbCharging:
    """USB-PD charging of one home: ports, phones, wallets and sessions."""

    def __init__(
        self,
        *,
        settings: UsbSettings,
        hardware: UsbHardware,
        store: UsbStore,
        wallet_dir: Path,
        ledger: Ledger,
        issue: Issue,
        meters_signer: MeterRecorder,
        publish: Publish,
        clock: Clock,
        meter_public: str,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.publish = publish
        self.ports = {
            p: PortState(p, settings.resource(p), enabled=store.port_enabled(p))
            for p in settings.ports
        }
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        signer = Signer(issue)
        self.bus = UsbBus(
            hardware=hardware,
            settings=settings,
            ports=self.ports,
            clock=clock,
            hub_gone=self._hub_gone,
            meter_gone=self._meter_gone,
        )
        self.views = UsbViews(
            settings=settings,
            ports=self.ports,
            bus=self.bus,
            store=store,
            publish=publish,
            clock=clock,
            names=ledger_names(ledger),
        )
        self.readings = PortReadings(recorder=meters_signer, ledger=ledger, store=store)
        self.settlement = Settlement(
            store=store,
            ledger=ledger,
            bus=self.bus,
            readings=self.readings,
            signer=signer,
            publish=publish,
            clock=clock,
            receipt_seen=self.views.resend,
        )
        end = self.settlement.end
        self.follower = PortFollower(
            settings=settings, ports=self.ports, bus=self.bus, store=store, clock=clock, end=end
        )
        self.watch = SessionWatch(
            settings=settings, store=store, readings=self.readings, clock=clock, end=end
        )
        self.wallets = Wallets(folder=wallet_dir, store=store, signer=signer, clock=clock)
        self.purchases = Purchases(
            settings=settings,
            bus=self.bus,
            store=store,
            ledger=ledger,
            wallets=self.wallets,
            signer=signer,
            readings=self.readings,
            clock=clock,
            meter_public=meter_public,
            settling=self.settlement.settling,
            end=end,
        )

    # --- life cycle ----------------------------------------------------------------------

    async def start(self, run: bool = True) -> None:
        """Every port off, open sessions ended ("restart") and settled; then the loop."""
        self.wallets.load()
        self.bus.warn_missing()
        async with self._lock:
            await self.bus.all_off()
            self.readings.resume(self.ports.values())
            await self.settlement.recover(self.ports)
        if run:
            self._task = asyncio.ensure_future(self._run())
            self._task.set_name("usb-charging")

    async def stop(self) -> None:
        """Stop the loop and switch every port off; open sessions end at the next start."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        async with self._lock:
            await self.bus.all_off()

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("USB charging cycle failed; continuing")
            await asyncio.sleep(self.settings.interval_ms / 1000)

    async def tick(self) -> None:
        """One cycle: port status, attach/detach, meters, cut-offs, readings, receipts."""
        async with self._lock:
            await self.bus.reopen()
            statuses = await self.bus.statuses()
            for port in self.ports.values():
                await self.follower.follow(port, statuses.get(port.port))
            for port in self.ports.values():
                await self.bus.read_meter(port)
                if port.session is not None:
                    await self.watch.check(port)
                else:
                    self.follower.trickle(port)
                await self.follower.keep_power(port)
            self.settlement.confirm()
            for port in self.ports.values():
                self.views.publish(port)
        for port in list(self.ports.values()):
            if port.device is not None and port.session is None:
                await self._auto_purchase(port)

    async def _hub_gone(self, port: PortState, error: UsbError) -> None:
        """The hub left the bus: the port's session ends, its phone is gone with it."""
        if port.session is not None:
            await self.settlement.end(port, "error", error=error)
        forget_device(port)

    async def _meter_gone(self, port: PortState, error: UsbError) -> None:
        """The port's meter left the bus: a new one counts from zero, so the session ends."""
        if port.session is not None and port.session.state == "charging":
            await self.settlement.end(port, "meter_failed", error=error)

    async def _auto_purchase(self, port: PortState) -> None:
        wh = self.settings.auto_purchase_wh
        if not wh or port.device is None or port.pairing_code is not None or not port.enabled:
            return
        if port.auto_tried == (port.device.key, port.since):
            return
        port.auto_tried = (port.device.key, port.since)
        try:
            await self.purchase(port.port, energy_wh=wh)
        except Refusal as exc:
            log.info("port %d: automatic purchase refused: %s", port.port, exc.message)

    # --- what the API does ---------------------------------------------------------------

    async def purchase(
        self,
        port_number: int,
        energy_wh: int | None = None,
        amount: int | None = None,
        wallet: str | None = None,
    ) -> dict[str, Any]:
        """Buy a charge on a port for its phone's wallet (or `wallet`, one kept here):
        by energy (Wh) or by money (milli-units); powers the port on. Raises Refusal."""
        async with self._lock:
            port = self._port(port_number)
            row = await self.purchases.buy(port, energy_wh, amount, wallet)
            self.views.publish(port)
        now = self.clock.now_ms()
        view = session_view(row, self.views.names)
        self.publish("usb_session", {"phase": "started", "session": view}, now)
        return view

    async def stop_session(self, port_number: int) -> dict[str, Any]:
        """End the port's session now (reason "stopped") and settle it."""
        async with self._lock:
            port = self._port(port_number)
            if port.session is None:
                raise Refusal("no_session", f"port {port.port} has no session running")
            row = await self.settlement.end(port, "stopped")
            self.views.publish(port)
        return session_view(row, self.views.names)

    async def pair(self, code: str, fund: int | None = None) -> dict[str, Any]:
        """Bind the phone showing `code` to a new wallet kept here, funded with `fund`
        milli-units from the home's account."""
        async with self._lock:
            port = self.follower.showing(code)
            assert port.device is not None
            device = port.device
            key = await self.wallets.pair(device, fund)
            port.pairing_code, port.wallet = None, key.account
            self.views.publish(port)
        log.info("phone %s paired with wallet %s", device.key, key.account)
        return {"phone": device.key, "wallet": key.account}

    async def set_enabled(self, port_number: int, enabled: bool) -> dict[str, Any]:
        """Enable or disable a port; disabling ends its session ("stopped")."""
        async with self._lock:
            port = self._port(port_number)
            await self.follower.set_enabled(port, enabled)
            self.views.publish(port)
            return self.views.port(port)

    def view(self) -> dict[str, Any]:
        """`GET usb`: hub, meter, ports and recent sessions."""
        return self.views.view()

    def _port(self, number: int) -> PortState:
        port = self.ports.get(number)
        if port is None:
            raise Refusal(
                "unknown_port", f"port {number} is not one of {sorted(self.ports)}", Why.NOT_FOUND
            )
        return port
