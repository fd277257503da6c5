"""USB charging as the API and the dashboard see it: `GET usb`, a port, a session; and the
`usb` event, sent when a port's view changed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from edge_controller.devices import Clock
from edge_controller.ledger import Ledger
from edge_controller.usb.charging.bus import UsbBus
from edge_controller.usb.charging.port import PortState, Publish
from edge_controller.usb.charging.settings import UsbSettings
from edge_controller.usb.store import SessionRow, UsbStore
from edge_controller.usb.types import UsbError, UsbIdentity

RECENT_SESSIONS = 20
# An account's display name as its registrar recorded it (a `member` record), or None.
Names = Callable[[str], str | None]


def ledger_names(ledger: Ledger) -> Names:
    """The display names the ledger holds for accounts."""

    def name(account: str) -> str | None:
        member = ledger.state.members.get(account) if account else None
        return member.name if member is not None else None

    return name


def no_names(_account: str) -> str | None:
    return None


def error_view(error: UsbError | None) -> dict[str, str] | None:
    """An error as the API shows it: null or {code, message}."""
    return None if error is None else {"code": error.code, "message": error.message}


def identity_view(identity: UsbIdentity) -> dict[str, Any]:
    """What was plugged in, as the API shows it."""
    return {
        "vendor_id": identity.vendor_id,
        "product_id": identity.product_id,
        "serial": identity.serial,
        "manufacturer": identity.manufacturer,
        "product": identity.product,
        "key": identity.key,
    }


def session_view(row: SessionRow, names: Names = no_names) -> dict[str, Any]:
    """A session as the API shows it."""
    return {
        "id": row.id,
        "port": row.port,
        "resource": row.resource,
        "phone": row.phone,
        "wallet": row.wallet,
        "wallet_name": names(row.wallet) if row.wallet else None,
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


def port_view(
    port: PortState, meter_error: UsbError | None, names: Names = no_names
) -> dict[str, Any]:
    """A port as the API shows it; `meter_error` is the error of the meter in front of it."""
    attached = None
    if port.device is not None:
        attached = {
            "identity": identity_view(port.device),
            "wallet": port.wallet,
            "wallet_name": names(port.wallet) if port.wallet else None,
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
        "meter_error": error_view(meter_error),
        "session": session_view(port.session, names) if port.session else None,
    }


class UsbViews:
    """The read views of USB charging, and the `usb` event of each port."""

    def __init__(
        self,
        *,
        settings: UsbSettings,
        ports: Mapping[int, PortState],
        bus: UsbBus,
        store: UsbStore,
        publish: Publish,
        clock: Clock,
        names: Names = no_names,
    ) -> None:
        self._settings = settings
        self.names = names
        self._ports = ports
        self._bus = bus
        self._store = store
        self._publish = publish
        self._clock = clock
        self._published: dict[int, dict[str, Any]] = {}

    def port(self, port: PortState) -> dict[str, Any]:
        """One port as `GET usb` lists it."""
        return port_view(port, self._bus.port_meter_error(port), self.names)

    def view(self) -> dict[str, Any]:
        """`GET usb`: hub, meter, ports and recent sessions."""
        bus = self._bus
        meter_errors = [p.meter_error for p in self._ports.values() if p.meter_error is not None]
        meter_error = bus.meter_error or (meter_errors[0] if meter_errors else None)
        return {
            "hub": {
                "description": bus.hub_description,
                "switchable": bus.switchable,
                "error": error_view(bus.hub_error),
            },
            "meter": {
                "description": bus.meter_description,
                "ok": bus.meter_open and meter_error is None,
                "error": error_view(meter_error),
            },
            "price": self._settings.price,
            "free_trickle": bool(self._settings.free_trickle_mw),
            "ports": [self.port(p) for p in self._ports.values()],
            "sessions": [
                session_view(r, self.names) for r in self._store.recent_sessions(RECENT_SESSIONS)
            ],
        }

    def publish(self, port: PortState) -> None:
        """Send the port's view as a `usb` event when it changed since the last one."""
        view = self.port(port)
        if view != self._published.get(port.port):
            self._published[port.port] = view
            self._publish("usb", view, self._clock.now_ms())

    def resend(self, port_number: int) -> None:
        """Send the port's view again at the next `publish`: the session list changed."""
        self._published.pop(port_number, None)
