"""How the configured hub and meter are opened: at start-up, and again while one is
missing. Opening never raises to the caller of `open_hardware`: a failure is kept to be
shown, and the opener is kept to try again."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_controller.devices import Clock
from edge_controller.usb.hub import SysfsPortPower, hub_wanted, open_hub
from edge_controller.usb.meters import open_meter
from edge_controller.usb.types import MeterError, PortPower, UsbError, UsbMeter


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
