"""Buying a charge, step by step: check the request and the port, find the wallet that
pays, read the meter's starting point, make room in the port's registered energy, sign
the offer (private to the wallet) and the wallet's acceptance, and only once the local
ledger holds both, power the port on. Every refusal is raised where it happens; nothing
is bought (and no session shown) unless the trade exists."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from edge_controller.devices import Clock
from edge_controller.ledger import KeyPair, Ledger, cost_of
from edge_controller.refusal import Refusal, Why
from edge_controller.usb.charging.bus import UsbBus
from edge_controller.usb.charging.port import EndSession, PortState
from edge_controller.usb.charging.readings import PortReadings
from edge_controller.usb.charging.settings import UsbSettings
from edge_controller.usb.charging.signing import Signer
from edge_controller.usb.charging.wallets import Wallets
from edge_controller.usb.store import SessionRow, UsbStore
from edge_controller.usb.types import MeterSample, UsbError, UsbIdentity

log = logging.getLogger(__name__)

OFFER_VALIDITY_MS = 60_000


@dataclass(frozen=True)
class Request:
    """What a purchase asks for: energy, and whether it was asked as money."""

    energy_wh: int
    by_amount: bool


def checked_request(energy_wh: int | None, amount: int | None, price: int) -> Request:
    """The energy a purchase buys: given in Wh, or as money at `price` per kWh; raises
    Refusal (invalid) for a request that is not one."""
    if (energy_wh is None) == (amount is None):
        raise Refusal("invalid_field", "give either energy_wh or amount", Why.INVALID)
    if energy_wh is not None:
        if energy_wh < 1:
            raise Refusal("invalid_field", "energy_wh must be at least 1", Why.INVALID)
        return Request(energy_wh, by_amount=False)
    assert amount is not None
    if amount < 1:
        raise Refusal("invalid_field", "amount must be at least 1", Why.INVALID)
    bought = amount * 1000 // price if price else 0
    if bought < 1:
        raise Refusal(
            "invalid_field", f"{amount} buys less than 1 Wh at {price} per kWh", Why.INVALID
        )
    return Request(bought, by_amount=True)


class Purchases:
    """Starts charging sessions on the ports."""

    def __init__(
        self,
        *,
        settings: UsbSettings,
        bus: UsbBus,
        store: UsbStore,
        ledger: Ledger,
        wallets: Wallets,
        signer: Signer,
        readings: PortReadings,
        clock: Clock,
        meter_public: str,
        settling: Callable[[int], bool],
        end: EndSession,
    ) -> None:
        self._settings = settings
        self._bus = bus
        self._store = store
        self._ledger = ledger
        self._wallets = wallets
        self._signer = signer
        self._readings = readings
        self._clock = clock
        self._meter_public = meter_public
        self._settling = settling
        self._end = end

    async def buy(
        self, port: PortState, energy_wh: int | None, amount: int | None, wallet: str | None
    ) -> SessionRow:
        """Buy a charge on the port for its phone's wallet (or `wallet`) and power it on;
        the session, now charging. Raises Refusal."""
        request = checked_request(energy_wh, amount, self._settings.price)
        device = self._check_port(port)
        buyer = self._wallets.payer(device, wallet, port.pairing_code)
        start = await self._meter_start(port)
        await self._make_room(port, request.energy_wh)
        row = self._new_session(port, device, buyer, request)
        await self._offer_and_accept(row, buyer, request.energy_wh)
        await self._power_on(port, row, start)
        log.info(
            "port %d: %s buys %d Wh for %d (trade %s)",
            port.port,
            row.phone,
            request.energy_wh,
            row.cost,
            (row.trade or "")[:10],
        )
        return row

    def _check_port(self, port: PortState) -> UsbIdentity:
        """The phone on the port, when the port can charge it now."""
        if not self._bus.switchable:
            error = self._bus.switch_error()
            raise Refusal(error.code, error.message)
        if port.error is not None:
            raise Refusal(port.error.code, port.error.message)
        if not port.enabled:
            raise Refusal("port_disabled", f"port {port.port} is disabled by the owner")
        if port.device is None:
            raise Refusal("no_device", f"nothing is plugged into port {port.port}")
        if port.session is not None:
            raise Refusal("session_running", f"port {port.port} is already charging")
        if self._settling(port.port):
            raise Refusal(
                "session_running",
                f"port {port.port}'s last session is being settled; try again in a few seconds",
            )
        return port.device

    async def _meter_start(self, port: PortState) -> MeterSample:
        """A fresh, plausible sample of the port's meter: where the session's energy starts."""
        if not self._bus.has_meter(port.port):
            missing = self._bus.meter_error
            if missing is not None:
                raise Refusal(missing.code, missing.message)
            raise Refusal("meter_missing", f"no meter stands in front of port {port.port}")
        error = await self._bus.read_meter(port)
        if error is not None:
            raise Refusal(error.code, error.message)
        assert port.sample is not None
        return port.sample

    async def _make_room(self, port: PortState, energy_wh: int) -> None:
        """A port draws from the grid: before selling, refill the energy its registration
        says it holds, which every settlement lowers by what was delivered."""
        resource = self._ledger.state.resources.get(port.resource)
        if resource is None:
            return  # the ledger's own refusal (unknown_resource) names it
        if resource.meter != self._meter_public:
            raise Refusal(
                "port_not_metered",
                f"{port.resource} is registered with another meter key than this home's",
            )
        free = resource.available_wh - resource.committed_wh
        if free < energy_wh and resource.available_wh < resource.capacity_wh:
            # Refused, the acceptance's own refusal says what is short.
            with contextlib.suppress(Refusal):
                await self._signer.sign(
                    "resource_update", resource=resource.id, available_wh=resource.capacity_wh
                )

    def _new_session(
        self, port: PortState, device: UsbIdentity, buyer: KeyPair, request: Request
    ) -> SessionRow:
        """The session as stored before anything is signed (a crash then finds it)."""
        price = self._settings.price
        cursor = self._store.cursor(port.port)
        row = SessionRow(
            id=secrets.token_hex(8),
            port=port.port,
            resource=port.resource,
            phone=device.key,
            wallet=buyer.account,
            state="starting",
            bought_mwh=request.energy_wh * 1000,
            price=price,
            cost=cost_of(request.energy_wh, price),
            by_amount=request.by_amount,
            started=self._clock.now_ms(),
            counter_start_wh=cursor.counter_wh if cursor else 0,
        )
        self._store.save_session(row)
        return row

    async def _offer_and_accept(self, row: SessionRow, buyer: KeyPair, energy_wh: int) -> None:
        """The home's offer private to the wallet, and the wallet's acceptance: the trade.
        Either refused, nothing was bought: the session goes (an offer signed is cancelled)."""
        now = row.started
        try:
            offer = await self._signer.sign(
                "offer",
                resource=row.resource,
                mode="energy",
                quantity=energy_wh,
                price=row.price,
                start=now,
                end=now + self._settings.max_session_ms,
                expires=now + OFFER_VALIDITY_MS,
                to=[buyer.account],
            )
        except Refusal:
            self._store.delete_session(row.id)
            raise
        row.offer = offer.id
        self._store.save_session(row)
        try:
            acceptance = await self._signer.sign(
                "acceptance", key=buyer, offer=offer.id, quantity=energy_wh
            )
        except Refusal as refused:
            # Refused too, the offer lapses on its own within OFFER_VALIDITY_MS.
            with contextlib.suppress(Refusal):
                await self._signer.sign("cancel", offer=offer.id)
            self._store.delete_session(row.id)
            raise refused
        row.trade = acceptance.id
        self._store.save_session(row)

    async def _power_on(self, port: PortState, row: SessionRow, start: MeterSample) -> None:
        """The ledger holds offer and acceptance: the trade exists, the port may power on.
        A port that does not switch on ends the session at once ("error") and refuses."""
        port.trickle = False
        row.meter_start_mwh = start.energy_mwh
        if not port.powered and not await self._bus.set_power(port, True):
            port.session = row
            error = (
                port.error
                or self._bus.hub_error
                or UsbError("the port did not switch on", "port_unavailable")
            )
            await self._end(port, "error", error=error)
            raise Refusal(error.code, error.message)
        row.state = "charging"
        self._store.save_session(row)
        port.session = row
        # The cursor moves to the power-on instant, so the session's readings start there.
        await self._readings.sign(
            port, max(self._clock.now_ms(), row.started + 1), row.counter_start_wh
        )
