"""USB-PD charging wired to a home's parts: its hub and meter, its ledger and node."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_controller.app.delivery import Delivery
from edge_controller.app.node import LedgerNode
from edge_controller.config import UsbConfig
from edge_controller.devices import Clock
from edge_controller.ledger import Ledger
from edge_controller.usb.charging import UsbCharging, open_hardware
from edge_controller.usb.store import UsbStore


def usb_charging(
    config: UsbConfig,
    usb_backend: Any,
    clock: Clock,
    data_dir: Path,
    ledger: Ledger,
    node: LedgerNode,
    delivery: Delivery,
    publish: Callable[[str, dict[str, Any], int], None],
) -> UsbCharging:
    """USB-PD charging on the configured hub and meter, found on `usb_backend` (libusb when
    None)."""
    # A backend handed in (not libusb) runs on this home's clock, and so do its meters.
    opener = config.opener(usb_backend, clock if usb_backend is not None else None)
    return UsbCharging(
        settings=config.settings,
        hardware=open_hardware(opener),
        store=UsbStore(data_dir / "usb.sqlite3"),
        wallet_dir=data_dir / "usb-wallets",
        ledger=ledger,
        issue=node.issue,
        meters_signer=delivery,
        publish=publish,
        clock=clock,
        meter_public=node.meter_key.public_hex if node.meter_key else "",
    )
