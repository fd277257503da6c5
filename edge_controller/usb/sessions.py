"""Phones buy charge over USB-PD: the per-port session state machine.

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
"restart" and their delivered part settled. Blocking USB calls run in worker threads.

Hot-plug: a hub or meter missing at start-up or unplugged later is opened again every
`reopen_ms`. While the hub is gone its sessions end (reason "error") and nothing is
powered; when it returns every port is switched off first, as at start-up. A meter gone
from the bus ends its port's session at once (reason "meter_failed"): a new meter counts
from zero, so the session could not go on with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from edge_controller.aio import cancel_and_wait
from edge_controller.devices import Clock
from edge_controller.ledger import KeyPair, Ledger, Record, State, cost_of
from edge_controller.refusal import Refusal, Why
from edge_controller.usb.hub import SysfsPortPower, hub_wanted, open_hub
from edge_controller.usb.meters import open_meter
from edge_controller.usb.store import Binding, PortCursor, SessionRow, UsbStore
from edge_controller.usb.types import (
    MAX_CURRENT_MA,
    MAX_POWER_MW,
    MAX_VOLTAGE_MV,
    HubMissing,
    MeterError,
    MeterSample,
    NoPortPowerControl,
    PortPower,
    PortStatus,
    UsbError,
    UsbIdentity,
    UsbMeter,
)

log = logging.getLogger(__name__)

OFFER_VALIDITY_MS = 60_000
# Stop when the energy of this many of the next intervals would reach the bought amount:
# a little early rather than late (undershoot of about one second's energy, a few mWh).
PREDICTION_INTERVALS = 1.5
# A free trickle may run ahead of its average power by this much before the port pauses.
TRICKLE_SLACK_MWH = 250
RECENT_SESSIONS = 20

Opened = TypeVar("Opened")
Issue = Callable[..., Awaitable[Record]]
Publish = Callable[[str, dict[str, Any], int], None]


class SignedCursor(Protocol):
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


@dataclass(frozen=True)
class UsbSettings:
    """How the owner runs the USB ports (the `usb:` section of edge.yaml)."""

    ports: tuple[int, ...] = (1,)
    price: int = 2_000  # milli-units per kWh
    free_trickle_mw: int | None = None  # None: unknown phones stay unpowered
    max_session_ms: int = 4 * 3_600_000
    watchdog_ms: int = 5_000
    auto_purchase_wh: int = 0  # bought on attach for a bound phone (0: only through the API)
    resource_prefix: str = "usb"
    interval_ms: int = 1_000
    reopen_ms: int = 10_000  # how often a missing hub or meter is looked for again

    def resource(self, port: int) -> str:
        """The ledger resource id of a port."""
        return f"{self.resource_prefix}/usb-{port}"


@dataclass
class PortState:
    """What is known about one port right now."""

    port: int
    resource: str
    enabled: bool = True
    powered: bool = False
    connected: bool = False
    device: UsbIdentity | None = None
    wallet: str | None = None  # the attached phone's bound wallet, looked up once on attach
    since: int | None = None
    pairing_code: str | None = None
    sample: MeterSample | None = None
    last_valid_ms: int = 0
    meter_error: UsbError | None = None
    error: UsbError | None = None
    session: SessionRow | None = None
    trickle: bool = False
    trickle_budget_mwh: float = 0.0
    trickle_paused: bool = False
    trickle_mark_mwh: int | None = None
    auto_tried: tuple[str, int | None] | None = None
    published: dict[str, Any] | None = field(default=None, repr=False)


def error_view(error: UsbError | None) -> dict[str, str] | None:
    return None if error is None else {"code": error.code, "message": error.message}


def identity_view(identity: UsbIdentity) -> dict[str, Any]:
    return {
        "vendor_id": identity.vendor_id,
        "product_id": identity.product_id,
        "serial": identity.serial,
        "manufacturer": identity.manufacturer,
        "product": identity.product,
        "key": identity.key,
    }


def session_view(row: SessionRow) -> dict[str, Any]:
    """A session as the API shows it."""
    return {
        "id": row.id,
        "port": row.port,
        "resource": row.resource,
        "phone": row.phone,
        "wallet": row.wallet,
        "offer": row.offer,
        "trade": row.trade,
        "state": row.state,
        "bought_mwh": row.bought_mwh,
        "delivered_mwh": row.delivered_mwh,
        "price": row.price,
        "cost": row.cost,
        "paid": row.paid,
        "refunded": row.refunded,
        "settled": row.settled,
        "started": row.started,
        "ended": row.ended,
        "reason": row.reason,
        "error": None
        if row.error_code is None
        else {"code": row.error_code, "message": row.error_message or ""},
    }


def delivered_wh(delivered_mwh: int) -> int:
    """The Wh a session's delivery counts for in the ledger (which keeps whole Wh)."""
    return (delivered_mwh + 500) // 1000


def check_sample(sample: MeterSample, previous: MeterSample | None) -> str | None:
    """Why a meter sample cannot be right, or None when it is plausible."""
    if min(sample.voltage_mv, sample.current_ma, sample.power_mw, sample.energy_mwh) < 0:
        return "negative values"
    if (
        sample.voltage_mv > MAX_VOLTAGE_MV
        or sample.current_ma > MAX_CURRENT_MA
        or sample.power_mw > MAX_POWER_MW
    ):
        return (
            f"{sample.voltage_mv} mV, {sample.current_ma} mA, {sample.power_mw} mW"
            " is beyond what USB-PD can carry"
        )
    if previous is not None:
        if sample.energy_mwh < previous.energy_mwh:
            went = f"{previous.energy_mwh} to {sample.energy_mwh} mWh"
            return f"its energy counter went back from {went}"
        elapsed = max(sample.time_ms - previous.time_ms, 1_000)
        # What 240 W could deliver in the time between the samples, plus a margin.
        if sample.energy_mwh - previous.energy_mwh > MAX_POWER_MW * elapsed // 3_600_000 + 100:
            return f"its energy counter jumped by {sample.energy_mwh - previous.energy_mwh} mWh"
    return None


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
        seller: str,
        meter_public: str,
    ) -> None:
        self.settings = settings
        self.hub = hardware.hub
        self.hub_error = hardware.hub_error
        self.hub_description = hardware.hub_description
        self.meters = dict(hardware.meters)
        self.meter_error = hardware.meter_error
        first_meter = next(iter(self.meters.values()), None)
        self.meter_description = first_meter.description if first_meter is not None else ""
        self.opener = hardware.opener
        self._next_reopen_ms = 0
        self.store = store
        self.wallet_dir = wallet_dir
        self.ledger = ledger
        self.issue = issue
        self.signer = meters_signer
        self.publish = publish
        self.clock = clock
        self.seller = seller
        self.meter_public = meter_public
        self.ports = {
            p: PortState(p, settings.resource(p), enabled=store.port_enabled(p))
            for p in settings.ports
        }
        self.wallets: dict[str, KeyPair] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._unsettled: dict[str, SessionRow] = {}
        self._last_refusal = Refusal("error", "")

    @property
    def now(self) -> int:
        return self.clock.now_ms()

    # --- life cycle ----------------------------------------------------------------------

    async def start(self, run: bool = True) -> None:
        """Every port off, open sessions ended ("restart") and settled; then the loop."""
        self._load_wallets()
        for what, error in (("hub", self.hub_error), ("meter", self.meter_error)):
            if error is not None:
                log.warning("USB %s: %s (%s)%s", what, error.message, error.code, self._retrying)
        async with self._lock:
            for port in self.ports.values():
                await self._set_power(port, False)
            for port in self.ports.values():
                cursor = self.store.cursor(port.port)
                if cursor is not None:
                    self.signer.resume_meter(port.resource, cursor.cursor_ms, cursor.counter_wh, 0)
            for row in self.store.open_sessions():
                await self._recover(row, self.ports.get(row.port))
            self._unsettled = {r.id: r for r in self.store.unsettled_sessions()}
        if run:
            self._task = asyncio.ensure_future(self._run())
            self._task.set_name("usb-charging")

    async def stop(self) -> None:
        """Stop the loop and switch every port off; open sessions end at the next start."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        async with self._lock:
            for port in self.ports.values():
                await self._set_power(port, False)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("USB charging cycle failed; continuing")
            await asyncio.sleep(self.settings.interval_ms / 1000)

    def _load_wallets(self) -> None:
        self.wallet_dir.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.wallet_dir.glob("*.key")):
            key = KeyPair.load(path)
            self.wallets[key.account] = key

    # --- the cycle -------------------------------------------------------------------------

    async def tick(self) -> None:
        """One cycle: port status, attach/detach, meters, cut-offs, readings, receipts."""
        async with self._lock:
            await self._reopen()
            statuses = await self._statuses()
            for port in self.ports.values():
                await self._follow_port(port, statuses.get(port.port))
            for port in self.ports.values():
                await self._read_meter(port)
                if port.session is not None:
                    await self._watch_session(port)
                else:
                    await self._trickle(port)
                await self._keep_power(port)
            self._confirm_settlements()
            for port in self.ports.values():
                self._publish_port(port)
        for port in list(self.ports.values()):
            if port.device is not None and port.session is None:
                await self._auto_purchase(port)

    async def _statuses(self) -> dict[int, PortStatus]:
        if self.hub is None:
            return {}
        try:
            statuses = await asyncio.to_thread(self.hub.ports)
        except HubMissing as exc:
            await self._hub_lost(exc)
            return {}
        except UsbError as exc:
            self.hub_error = exc
            return {}
        if self.hub_error is not None and not isinstance(self.hub_error, NoPortPowerControl):
            self.hub_error = None
        return {s.port: s for s in statuses}

    async def _follow_port(self, port: PortState, status: PortStatus | None) -> None:
        if status is None:
            if self.hub is not None and self.hub_error is None:
                port.error = UsbError(
                    f"the hub has no port {port.port} (it has {self.hub.port_count})",
                    "port_unavailable",
                )
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
        port.since = self.now
        port.connected = True
        port.trickle_budget_mwh = 0.0
        port.trickle_paused = False
        binding = self.store.binding(device.key)
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
        self._forget_device(port)

    @staticmethod
    def _forget_device(port: PortState) -> None:
        """Nothing is plugged in (any more): the phone and what came with it are gone."""
        port.device, port.wallet, port.since, port.connected = None, None, None, False
        port.pairing_code, port.trickle = None, False

    def _new_pairing_code(self) -> str:
        taken = {p.pairing_code for p in self.ports.values()}
        while True:
            code = f"{secrets.randbelow(1_000_000):06d}"
            if code not in taken:
                return code

    async def _read_meter(self, port: PortState) -> UsbError | None:
        """Read the port's meter: a plausible sample becomes `port.sample`; otherwise the
        error (kept in `port.meter_error` too) is returned, and a meter gone is let go."""
        meter = self.meters.get(port.port)
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
        port.last_valid_ms = self.now
        port.meter_error = None
        return None

    async def _keep_power(self, port: PortState) -> None:
        """The port is on only for a charging session or a running trickle: anything else
        (a port someone switched on, a hub that forgot) is switched off."""
        wanted = (port.session is not None and port.session.state == "charging") or port.trickle
        if self.hub is not None and port.powered != wanted:
            await self._set_power(port, wanted)

    async def _set_power(self, port: PortState, on: bool) -> bool:
        if self.hub is None:
            return False
        try:
            await asyncio.to_thread(self.hub.set_power, port.port, on)
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

    # --- hot-plug --------------------------------------------------------------------------

    @property
    def _retrying(self) -> str:
        if self.opener is None:
            return ""
        return f"; looking for it again every {self.settings.reopen_ms // 1000} s"

    async def _reopen(self) -> None:
        """Every `reopen_ms`, try to open the hub or the meter where one is missing."""
        opener = self.opener
        if opener is None or self.now < self._next_reopen_ms:
            return
        hub_missing = self.hub is None
        meter_missing = opener.meter_port not in self.meters
        if not (hub_missing or meter_missing):
            return
        self._next_reopen_ms = self.now + self.settings.reopen_ms
        if hub_missing:
            hub = await self._open_again("hub", opener.open_hub, self.hub_error)
            if isinstance(hub, UsbError):
                self.hub_error = hub
            else:
                await self._hub_back(hub)
        if meter_missing:
            meter = await self._open_again("meter", opener.open_meter, self.meter_error)
            if isinstance(meter, UsbError):
                self.meter_error = meter
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
        """The hub left the bus: its sessions end, its phones are gone with it."""
        if self.hub is None:
            return
        log.warning("USB %s is gone: %s%s", self.hub_description, error.message, self._retrying)
        self.hub, self.hub_error = None, error
        self._next_reopen_ms = self.now + self.settings.reopen_ms
        for port in self.ports.values():
            port.powered = False
            if port.session is not None:
                await self._end(port, "error", error=error)
            self._forget_device(port)

    async def _hub_back(self, hub: PortPower) -> None:
        """The hub is there (again): every port off first, as at start-up."""
        self.hub, self.hub_error, self.hub_description = hub, None, hub.description
        log.info("USB %s is there; every port off", hub.description)
        for port in self.ports.values():
            port.error = None
            await self._set_power(port, False)

    async def _meter_lost(self, port: PortState, error: UsbError) -> None:
        """The meter left the bus: let it go, end the port's session, look for it again."""
        meter = self.meters.pop(port.port, None)
        if meter is None:
            return
        log.warning("USB meter %s is gone: %s%s", meter.description, error.message, self._retrying)
        close = getattr(meter, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):  # a gone device may refuse to be released
                await asyncio.to_thread(close)
        self.meter_error = error
        port.sample = None
        self._next_reopen_ms = self.now + self.settings.reopen_ms
        if port.session is not None and port.session.state == "charging":
            await self._end(port, "meter_failed", error=error)

    def _meter_back(self, port_number: int, meter: UsbMeter) -> None:
        """A meter is there (again); its energy counter starts afresh."""
        self.meters[port_number] = meter
        self.meter_error, self.meter_description = None, meter.description
        log.info("USB meter %s is there", meter.description)
        port = self.ports.get(port_number)
        if port is not None:
            port.sample, port.meter_error, port.last_valid_ms = None, None, 0

    # --- sessions --------------------------------------------------------------------------

    async def _watch_session(self, port: PortState) -> None:
        row = port.session
        assert row is not None
        now = self.now
        if row.state != "charging":
            return
        if now - port.last_valid_ms >= self.settings.watchdog_ms:
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
                await asyncio.to_thread(self.store.update_delivered, row.id, delivered)
            step = sample.power_mw * self.settings.interval_ms / 3_600_000
            if delivered + PREDICTION_INTERVALS * step >= row.bought_mwh:
                await self._end(port, "balance" if row.by_amount else "delivered")
                return
        if now >= row.started + self.settings.max_session_ms - 2 * self.settings.interval_ms:
            await self._end(port, "stopped")
            return
        period = self.signer.period_ms
        boundary = now - now % period
        cursor = self.signer.meter_cursor(port.resource)
        if cursor is not None and boundary > cursor.boundary_ms:
            counter = row.counter_start_wh + row.delivered_mwh // 1000
            await self._sign_reading(port, boundary, counter)

    async def _sign_reading(self, port: PortState, end: int, counter_wh: int) -> None:
        await self.signer.record_meter(self.ledger.state, port.resource, end, counter_wh, 0)
        cursor = self.signer.meter_cursor(port.resource)
        if cursor is not None:
            self.store.set_cursor(port.port, PortCursor(cursor.export_wh, cursor.boundary_ms))

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
            row = await self._purchase(port, energy_wh, amount, wallet)
            self._publish_port(port)
        self.publish("usb_session", {"phase": "started", "session": session_view(row)}, self.now)
        return session_view(row)

    def _port(self, number: int) -> PortState:
        port = self.ports.get(number)
        if port is None:
            raise Refusal(
                "unknown_port", f"port {number} is not one of {sorted(self.ports)}", Why.NOT_FOUND
            )
        return port

    async def _purchase(
        self, port: PortState, energy_wh: int | None, amount: int | None, wallet: str | None
    ) -> SessionRow:
        price = self.settings.price
        if (energy_wh is None) == (amount is None):
            raise Refusal("invalid_field", "give either energy_wh or amount", Why.INVALID)
        if energy_wh is not None and energy_wh < 1:
            raise Refusal("invalid_field", "energy_wh must be at least 1", Why.INVALID)
        if amount is not None:
            if amount < 1:
                raise Refusal("invalid_field", "amount must be at least 1", Why.INVALID)
            energy_wh = amount * 1000 // price if price else 0
            if energy_wh < 1:
                raise Refusal(
                    "invalid_field", f"{amount} buys less than 1 Wh at {price} per kWh", Why.INVALID
                )
        assert energy_wh is not None
        if self.hub is None or isinstance(self.hub_error, NoPortPowerControl):
            error = self.hub_error or NoPortPowerControl("no hub with per-port power switching")
            raise Refusal(error.code, error.message)
        if port.error is not None:
            raise Refusal(port.error.code, port.error.message)
        if not port.enabled:
            raise Refusal("port_disabled", f"port {port.port} is disabled by the owner")
        if port.device is None:
            raise Refusal("no_device", f"nothing is plugged into port {port.port}")
        if port.session is not None:
            raise Refusal("session_running", f"port {port.port} is already charging")
        waiting = [r for r in self._unsettled.values() if r.port == port.port]
        if any(not self._closed_in_chain(r) for r in waiting):
            raise Refusal(
                "session_running",
                f"port {port.port}'s last session is being settled; try again in a few seconds",
            )
        buyer = self._wallet_for(port.device, wallet, port.pairing_code)
        if port.port not in self.meters:
            if self.meter_error is not None:
                raise Refusal(self.meter_error.code, self.meter_error.message)
            raise Refusal("meter_missing", f"no meter stands in front of port {port.port}")
        meter_error = await self._read_meter(port)
        if meter_error is not None:
            raise Refusal(meter_error.code, meter_error.message)
        start_sample = port.sample
        assert start_sample is not None
        await self._make_room(port, energy_wh)

        now = self.now
        cursor = self.store.cursor(port.port)
        row = SessionRow(
            id=secrets.token_hex(8),
            port=port.port,
            resource=port.resource,
            phone=port.device.key,
            wallet=buyer.account,
            state="starting",
            bought_mwh=energy_wh * 1000,
            price=price,
            cost=cost_of(energy_wh, price),
            by_amount=amount is not None,
            started=now,
            counter_start_wh=cursor.counter_wh if cursor else 0,
        )
        self.store.save_session(row)
        offer = await self._sign(
            "offer",
            resource=port.resource,
            mode="energy",
            quantity=energy_wh,
            price=price,
            start=now,
            end=now + self.settings.max_session_ms,
            expires=now + OFFER_VALIDITY_MS,
            to=[buyer.account],
        )
        if offer is None:
            raise self._abandon(row, self._last_refusal)
        row.offer = offer.id
        self.store.save_session(row)
        acceptance = await self._sign("acceptance", key=buyer, offer=offer.id, quantity=energy_wh)
        if acceptance is None:
            refusal = self._last_refusal
            await self._sign("cancel", offer=offer.id)
            raise self._abandon(row, refusal)
        row.trade = acceptance.id
        self.store.save_session(row)
        # The ledger holds offer and acceptance: the trade exists, the port may power on.
        port.trickle = False
        row.meter_start_mwh = start_sample.energy_mwh
        if not port.powered and not await self._set_power(port, True):
            port.session = row
            error = (
                port.error
                or self.hub_error
                or UsbError("the port did not switch on", "port_unavailable")
            )
            await self._end(port, "error", error=error)
            raise Refusal(error.code, error.message)
        row.state = "charging"
        self.store.save_session(row)
        port.session = row
        # The cursor moves to the power-on instant, so the session's readings start there.
        await self._sign_reading(port, max(self.now, row.started + 1), row.counter_start_wh)
        log.info(
            "port %d: %s buys %d Wh for %d (trade %s)",
            port.port,
            row.phone,
            energy_wh,
            row.cost,
            row.trade[:10],
        )
        return row

    def _abandon(self, row: SessionRow, refusal: Refusal) -> Refusal:
        # Nothing was bought (an offer signed meanwhile is cancelled): no session to show.
        self.store.delete_session(row.id)
        return refusal

    async def _make_room(self, port: PortState, energy_wh: int) -> None:
        """A port draws from the grid: before selling, refill the energy its registration
        says it holds, which every settlement lowers by what was delivered."""
        resource = self.ledger.state.resources.get(port.resource)
        if resource is None:
            return  # the ledger's own refusal (unknown_resource) names it
        if resource.meter != self.meter_public:
            raise Refusal(
                "port_not_metered",
                f"{port.resource} is registered with another meter key than this home's",
            )
        free = resource.available_wh - resource.committed_wh
        if free < energy_wh and resource.available_wh < resource.capacity_wh:
            await self._sign(
                "resource_update", resource=resource.id, available_wh=resource.capacity_wh
            )

    async def _sign(self, kind: str, key: KeyPair | None = None, **fields: Any) -> Record | None:
        """Sign and submit a record; on refusal keep why in `_last_refusal`, return None."""
        try:
            return await self.issue(kind, key=key, **fields)
        except Exception as exc:
            code = str(getattr(exc, "code", "error"))
            why = exc.why if isinstance(exc, Refusal) else Why.CONFLICT
            message = str(getattr(exc, "message", exc))
            if code == "unknown_resource":
                code, message = (
                    "port_not_registered",
                    f"{message}: ask the registrar to register it",
                )
                why = Why.CONFLICT
            self._last_refusal = Refusal(
                code, message, Why.NOT_FOUND if why is Why.NOT_FOUND else Why.CONFLICT
            )
            log.warning("%s for USB charging refused: %s", kind, message)
            return None

    def _wallet_for(
        self, device: UsbIdentity, wallet: str | None, pairing_code: str | None
    ) -> KeyPair:
        if wallet is not None:
            key = self.wallets.get(wallet)
            if key is None:
                raise Refusal("invalid_field", f"wallet {wallet} is not kept here", Why.INVALID)
            return key
        binding = self.store.binding(device.key)
        if binding is None:
            raise Refusal(
                "not_paired",
                f"phone {device.key} is not paired; pair it with code {pairing_code}",
                details={"pairing_code": pairing_code},
            )
        key = self.wallets.get(binding.wallet)
        if key is None:
            raise Refusal("wallet_missing", f"the key of wallet {binding.wallet} is missing")
        return key

    async def stop_session(self, port_number: int) -> dict[str, Any]:
        """End the port's session now (reason "stopped") and settle it."""
        async with self._lock:
            port = self._port(port_number)
            if port.session is None:
                raise Refusal("no_session", f"port {port.port} has no session running")
            row = await self._end(port, "stopped")
            self._publish_port(port)
        return session_view(row)

    async def _end(self, port: PortState, reason: str, error: UsbError | None = None) -> SessionRow:
        """Port off, the last reading, termination and settlement; the session's receipt."""
        row = port.session
        assert row is not None
        port.session = None
        await self._set_power(port, False)
        meter = self.meters.get(port.port)
        if meter is not None and error is None and row.meter_start_mwh is not None:
            try:
                sample = await asyncio.to_thread(meter.read)
                if check_sample(sample, port.sample) is None:
                    port.sample = sample
                    row.delivered_mwh = max(sample.energy_mwh - row.meter_start_mwh, 0)
            except UsbError as exc:
                port.meter_error = exc
        row.state = "failed" if error is not None or reason == "error" else "ended"
        row.ended, row.reason = self.now, reason
        if error is not None:
            row.error_code, row.error_message = error.code, error.message
        self.store.save_session(row)
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
        self.publish("usb_session", {"phase": "ended", "session": session_view(row)}, self.now)
        return row

    async def _settle(self, port: PortState | None, row: SessionRow) -> None:
        """The last reading covering the session's end, then termination and settlement."""
        if row.trade is None:
            return
        wh = delivered_wh(row.delivered_mwh)
        if port is not None:
            cursor = self.signer.meter_cursor(row.resource)
            now = self.now
            if cursor is None or cursor.boundary_ms < now:
                await self._sign_reading(port, now, row.counter_start_wh + wh)
            cursor = self.signer.meter_cursor(row.resource)
            if cursor is not None:
                # Claim no more than the readings hold (a reading refused, or none possible
                # within the same millisecond): Delivery settles any rest from the chain.
                wh = min(wh, max(cursor.export_wh - row.counter_start_wh, 0))
        trade = self._trade(row.trade)
        active = trade is not None and trade.status == "active"
        if active and await self._sign("termination", trade=row.trade) is None:
            self._note_error(row, self._last_refusal)
        settlement = await self._sign("settlement", trade=row.trade, delivered_wh=wh)
        if settlement is None:
            # Delivery settles it later from the readings in the chain.
            self._note_error(row, self._last_refusal)
        else:
            row.paid = min(cost_of(min(wh, row.bought_mwh // 1000), row.price), row.cost)
            row.refunded = row.cost - row.paid
        self.store.save_session(row)
        self._unsettled[row.id] = row

    def _note_error(self, row: SessionRow, refusal: Refusal) -> None:
        if row.error_code is None:
            row.error_code, row.error_message = refusal.code, refusal.message

    def _trade(self, trade_id: str) -> Any:
        trade = self.ledger.state.trades.get(trade_id)
        if trade is not None or trade_id in self.ledger.pool:
            return trade if trade is not None else _PooledTrade()
        return None

    def _closed_in_chain(self, row: SessionRow) -> bool:
        """Whether a block fixed the end of the session's trade (its termination's block
        time): a new trade on the port must not overlap it, or the readings of the new
        session would count for the old one."""
        trade = self.ledger.state.trades.get(row.trade or "")
        return trade is not None and trade.status != "active" and trade.end < self.now

    def _confirm_settlements(self) -> None:
        """A settlement in a block is the receipt: the figures come from the ledger."""
        for row in list(self._unsettled.values()):
            trade = self.ledger.state.trades.get(row.trade or "")
            if trade is None or trade.status != "settled":
                continue
            row.settled, row.paid, row.refunded = True, trade.paid, trade.refunded
            self.store.save_session(row)
            del self._unsettled[row.id]
            port = self.ports.get(row.port)
            if port is not None:
                port.published = None  # the session list changed: tell the dashboard

    async def _recover(self, row: SessionRow, port: PortState | None) -> None:
        """A session a crash or restart left open: the port is already off; sign what was
        delivered up to the last stored second and settle it."""
        if row.trade is None and row.offer is not None:
            row.trade = self._trade_of_offer(row.offer)
        row.state, row.ended, row.reason = "ended", self.now, "restart"
        self.store.save_session(row)
        await self._settle(port, row)
        log.info(
            "port %d: session %s ended by a restart, %d mWh", row.port, row.id, row.delivered_mwh
        )
        self.publish("usb_session", {"phase": "ended", "session": session_view(row)}, self.now)

    def _trade_of_offer(self, offer_id: str) -> str | None:
        for trade in self.ledger.state.trades.rows.values():
            if trade.offer == offer_id:
                return trade.id
        for record in self.ledger.pool.values():
            if record.kind == "acceptance" and record.body.get("offer") == offer_id:
                return record.id
        return None

    # --- free trickle ----------------------------------------------------------------------

    async def _trickle(self, port: PortState) -> None:
        """Power an attached phone for free at an average of `free_trickle_mw`: the port
        pauses when the phone has drawn more than that average allows, and resumes once
        the allowance has caught up."""
        limit = self.settings.free_trickle_mw
        if not limit or port.device is None or not port.enabled or port.port not in self.meters:
            port.trickle = False
            return
        sample = port.sample
        if port.meter_error is not None or sample is None:
            port.trickle = False
            return
        budget = port.trickle_budget_mwh
        if port.trickle and port.trickle_mark_mwh is not None:
            budget -= sample.energy_mwh - port.trickle_mark_mwh
        budget = min(budget + limit * self.settings.interval_ms / 3_600_000, TRICKLE_SLACK_MWH)
        port.trickle_budget_mwh = budget
        port.trickle_mark_mwh = sample.energy_mwh
        if port.trickle and budget < -TRICKLE_SLACK_MWH:
            port.trickle, port.trickle_paused = False, True
        elif not port.trickle and budget >= 0:
            port.trickle, port.trickle_paused = True, False

    # --- pairing, ports --------------------------------------------------------------------

    async def pair(self, code: str, fund: int | None = None) -> dict[str, Any]:
        """Bind the phone showing `code` to a new wallet kept here, funded with `fund`
        milli-units from the home's account."""
        async with self._lock:
            port = next((p for p in self.ports.values() if p.pairing_code == code), None)
            if port is None or port.device is None:
                raise Refusal("unknown_code", "no phone shows that pairing code", Why.NOT_FOUND)
            device = port.device
            key = KeyPair.generate()
            if fund and await self._sign("transfer", to=key.account, amount=fund) is None:
                raise self._last_refusal
            key.save(self.wallet_dir / f"{key.account}.key")
            self.wallets[key.account] = key
            self.store.bind(
                Binding(
                    phone=device.key,
                    wallet=key.account,
                    vendor_id=device.vendor_id,
                    product_id=device.product_id,
                    serial=device.serial,
                    manufacturer=device.manufacturer,
                    product=device.product,
                    bound_at=self.now,
                )
            )
            port.pairing_code, port.wallet = None, key.account
            self._publish_port(port)
        log.info("phone %s paired with wallet %s", device.key, key.account)
        return {"phone": device.key, "wallet": key.account}

    async def set_enabled(self, port_number: int, enabled: bool) -> dict[str, Any]:
        """Enable or disable a port; disabling ends its session ("stopped")."""
        async with self._lock:
            port = self._port(port_number)
            self.store.set_port_enabled(port.port, enabled)
            port.enabled = enabled
            if not enabled:
                if port.session is not None:
                    await self._end(port, "stopped")
                port.trickle = False
                await self._set_power(port, False)
            self._publish_port(port)
            return self.port_view(port)

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

    # --- views -----------------------------------------------------------------------------

    def port_view(self, port: PortState) -> dict[str, Any]:
        attached = None
        if port.device is not None:
            attached = {
                "identity": identity_view(port.device),
                "wallet": port.wallet,
                "pairing_code": port.pairing_code,
                "since": port.since,
            }
        sample = port.sample if port.powered else None
        return {
            "port": port.port,
            "resource": port.resource,
            "enabled": port.enabled,
            "powered": port.powered,
            "attached": attached,
            "power_mw": sample.power_mw if sample else 0,
            "voltage_mv": sample.voltage_mv if sample else 0,
            "current_ma": sample.current_ma if sample else 0,
            "trickle": port.trickle,
            "error": error_view(port.error),
            "meter_error": error_view(self._port_meter_error(port)),
            "session": session_view(port.session) if port.session else None,
        }

    def _port_meter_error(self, port: PortState) -> UsbError | None:
        """The meter's error on the port it stands in front of (also while it is missing)."""
        if port.port in self.meters:
            return port.meter_error
        if self.opener is not None and port.port == self.opener.meter_port:
            return self.meter_error
        return None

    def view(self) -> dict[str, Any]:
        """`GET usb`: hub, meter, ports and recent sessions."""
        meter = next(iter(self.meters.values()), None)
        meter_errors = [p.meter_error for p in self.ports.values() if p.meter_error is not None]
        meter_error = self.meter_error or (meter_errors[0] if meter_errors else None)
        return {
            "hub": {
                "description": self.hub_description,
                "switchable": self.hub is not None
                and not isinstance(self.hub_error, NoPortPowerControl),
                "error": error_view(self.hub_error),
            },
            "meter": {
                "description": meter.description if meter is not None else self.meter_description,
                "ok": meter is not None and meter_error is None,
                "error": error_view(meter_error),
            },
            "price": self.settings.price,
            "free_trickle": bool(self.settings.free_trickle_mw),
            "ports": [self.port_view(p) for p in self.ports.values()],
            "sessions": [session_view(r) for r in self.store.recent_sessions(RECENT_SESSIONS)],
        }

    def _publish_port(self, port: PortState) -> None:
        view = self.port_view(port)
        if view != port.published:
            port.published = view
            self.publish("usb", view, self.now)


class _PooledTrade:
    """A trade whose acceptance is still in the pool: active until a block says more."""

    status = "active"


@dataclass(frozen=True)
class HardwareOpener:
    """How to open the configured hub and meter: at start-up, and again every `reopen_ms`
    while one of them is missing. Each call raises a `UsbError` saying why it cannot."""

    hub_vendor_id: int | None = None
    hub_product_id: int | None = None
    hub_location: str | None = None
    hub_sysfs: str | None = None  # "1-1.3": switch ports through sysfs, not hub requests
    hub_sysfs_root: str = "/"
    meter: Mapping[str, Any] = field(default_factory=lambda: {"type": "fnirsi"})
    meter_port: int = 1
    backend: Any = None
    clock: Clock | None = None

    @property
    def hub_wanted(self) -> str:
        """The configured hub for people, shown while it cannot be opened."""
        if self.hub_sysfs is not None:
            return f"hub {self.hub_sysfs} (sysfs)"
        wanted = hub_wanted(self.hub_vendor_id, self.hub_product_id, self.hub_location)
        return f"USB hub {wanted}".strip()

    def open_hub(self) -> PortPower:
        """The hub: through sysfs when configured so, else hub class requests over pyusb."""
        try:
            if self.hub_sysfs is not None:
                return SysfsPortPower(self.hub_sysfs, root=self.hub_sysfs_root)
            return open_hub(
                self.hub_vendor_id, self.hub_product_id, self.hub_location, backend=self.backend
            )
        except UsbError:
            raise
        except Exception as exc:  # pyusb without libusb, permissions: say so, do not crash
            raise UsbError(f"cannot open the USB hub: {exc}", "port_unavailable") from exc

    def open_meter(self) -> UsbMeter:
        """The meter in front of `meter_port`."""
        try:
            return open_meter(self.meter, self.backend, clock=self.clock)
        except UsbError:
            raise
        except Exception as exc:
            raise MeterError(f"cannot open the USB meter: {exc}", "meter_missing") from exc


@dataclass
class UsbHardware:
    """The hub and meter as opened at start-up, or why they could not be."""

    hub: PortPower | None
    hub_error: UsbError | None
    hub_description: str
    meters: dict[int, UsbMeter]
    meter_error: UsbError | None
    opener: HardwareOpener | None = None


def open_hardware(opener: HardwareOpener) -> UsbHardware:
    """Open the configured hub (pyusb with the opener's `backend`, libusb when None, or the
    virtual world's; or sysfs with `hub_sysfs`) and meter. A failure is kept to be shown in
    `GET usb`, never raised; the returned `opener` tries again later."""
    hub: PortPower | None = None
    hub_error: UsbError | None = None
    try:
        hub = opener.open_hub()
    except UsbError as exc:
        hub_error = exc
    meters: dict[int, UsbMeter] = {}
    meter_error: UsbError | None = None
    try:
        meters[opener.meter_port] = opener.open_meter()
    except UsbError as exc:
        meter_error = exc
    return UsbHardware(
        hub=hub,
        hub_error=hub_error,
        hub_description=hub.description if hub is not None else opener.hub_wanted,
        meters=meters,
        meter_error=meter_error,
        opener=opener,
    )
