"""Per-port power switching of a USB hub, the way uhubctl does it.

`UsbHub` speaks the USB hub class requests over pyusb (any backend: libusb on a real
machine, the virtual world in tests). `SysfsPortPower` uses the Linux >= 6.0
`<hub>-port<N>/disable` files instead, where the kernel offers them.
"""

from __future__ import annotations

import errno
import os
import re
import threading
from pathlib import Path
from typing import Any

import usb.core
import usb.util

from edge_controller.usb.types import (
    HubMissing,
    NoPortPowerControl,
    PortStatus,
    PortUnavailable,
    UsbError,
    UsbIdentity,
)

HUB_CLASS = 0x09

# bmRequestType values (USB 2.0 spec 11.24.2, the same constants uhubctl uses).
REQUEST_TYPE_HUB_IN = 0xA0  # class, device-to-host, recipient device (the hub)
REQUEST_TYPE_PORT_IN = 0xA3  # class, device-to-host, recipient "other" (a port)
REQUEST_TYPE_PORT_OUT = 0x23  # class, host-to-device, recipient "other" (a port)

GET_STATUS = 0
CLEAR_FEATURE = 1
SET_FEATURE = 3
GET_DESCRIPTOR = 6

PORT_POWER = 8
HUB_DESCRIPTOR_USB2 = 0x29
HUB_DESCRIPTOR_USB3 = 0x2A

PORT_STATUS_CONNECTION = 0x0001
PORT_STATUS_POWER_USB2 = 0x0100
PORT_STATUS_POWER_USB3 = 0x0200

# wHubCharacteristics bits 0..1: logical power switching mode.
POWER_SWITCHING_MASK = 0x0003
POWER_SWITCHING_GANGED = 0x0000
POWER_SWITCHING_PER_PORT = 0x0001

_TIMEOUT_MS = 1000
_LOCATION = re.compile(r"^(\d+)-(\d+(?:\.\d+)*)$")
_ROOT_HUB = re.compile(r"^usb\d+$")


def parse_location(location: str) -> tuple[int, tuple[int, ...]]:
    """Split a Linux USB location such as "1-1.3" into (bus 1, ports (1, 3))."""
    match = _LOCATION.match(location.strip())
    if match is None:
        raise UsbError(
            f"hub location {location!r} is not of the form BUS-PORT[.PORT...], e.g. 1-1.3",
            code="invalid_config",
        )
    return int(match.group(1)), tuple(int(part) for part in match.group(2).split("."))


def check_sysfs_hub(name: str) -> str:
    """A hub's name in /sys/bus/usb/devices: "1-1.3", or "usb1" for a root hub."""
    name = name.strip()
    if not (_LOCATION.match(name) or _ROOT_HUB.match(name)):
        raise UsbError(
            f"sysfs hub {name!r} is not of the form BUS-PORT[.PORT...] (e.g. 1-1.3) or usbN",
            code="invalid_config",
        )
    return name


def format_location(bus: int, ports: tuple[int, ...]) -> str:
    """The Linux name of a USB location: "1-1.3", or "usb1" for a root hub."""
    if not ports:
        return f"usb{bus}"
    return f"{bus}-{'.'.join(str(port) for port in ports)}"


def _port_path(device: Any) -> tuple[int, ...]:
    return tuple(device.port_numbers or ())


def _string(device: Any, index: int) -> str | None:
    """A string descriptor, or None when the device has none or will not say."""
    if not index:
        return None
    try:
        text = usb.util.get_string(device, index)
    except (usb.core.USBError, ValueError, NotImplementedError):
        return None
    if text is None:
        return None
    text = str(text).strip()
    return text or None


def identify(device: Any) -> UsbIdentity:
    """Who a USB device says it is; strings it refuses to give stay None."""
    try:
        return UsbIdentity(
            vendor_id=int(device.idVendor),
            product_id=int(device.idProduct),
            serial=_string(device, device.iSerialNumber),
            manufacturer=_string(device, device.iManufacturer),
            product=_string(device, device.iProduct),
        )
    finally:
        # Reading strings opens the device; let it go so the next owner can open it.
        usb.util.dispose_resources(device)


class UsbHub:
    """A USB hub with per-port power switching, driven by hub class control requests."""

    def __init__(self, device: Any, *, timeout_ms: int = _TIMEOUT_MS) -> None:
        self._device = device
        self._backend = device.backend
        self._timeout_ms = timeout_ms
        self._lock = threading.Lock()
        self._bus = int(device.bus or 0)
        self._path = _port_path(device)
        self._usb3 = int(device.bcdUSB) >= 0x0300
        self._identities: dict[tuple[int, int, int, int], UsbIdentity] = {}
        descriptor = self._hub_descriptor()
        if len(descriptor) < 5:
            raise PortUnavailable(
                f"{self.description} returned a hub descriptor of {len(descriptor)} bytes"
            )
        self._port_count = int(descriptor[2])
        characteristics = int(descriptor[3]) | int(descriptor[4]) << 8
        switching = characteristics & POWER_SWITCHING_MASK
        if switching != POWER_SWITCHING_PER_PORT:
            kind = (
                "switches all ports together (ganged power)"
                if switching == POWER_SWITCHING_GANGED
                else "has no power switching at all"
            )
            raise NoPortPowerControl(
                f"{self.description} {kind}; it cannot turn one port on or off. Use a hub "
                "with per-port power switching (see uhubctl's list of compatible hubs)."
            )

    @property
    def port_count(self) -> int:
        """How many downstream ports the hub has."""
        return self._port_count

    @property
    def location(self) -> str:
        """The hub's Linux USB location, e.g. "1-1.3"."""
        return format_location(self._bus, self._path)

    @property
    def description(self) -> str:
        """For people: "hub 2109:2817 on bus 1 port 1.3"."""
        ports = ".".join(str(port) for port in self._path) or "root"
        return (
            f"hub {int(self._device.idVendor):04x}:{int(self._device.idProduct):04x} "
            f"on bus {self._bus} port {ports}"
        )

    def set_power(self, port: int, on: bool) -> None:
        """Switch VBUS of `port` on or off, and check the hub now reports it so."""
        self._check_port(port)
        with self._lock:
            self._control_out(SET_FEATURE if on else CLEAR_FEATURE, PORT_POWER, port)
            status = self._port_status(port)
        if self._powered(status) != on:
            raise NoPortPowerControl(
                f"{self.description} accepted turning port {port} {'on' if on else 'off'} "
                "but still reports it the other way; it does not switch power per port"
            )

    def ports(self) -> list[PortStatus]:
        """The status of every port, with who is plugged in where something is."""
        with self._lock:
            statuses = [self._port_status(port) for port in range(1, self._port_count + 1)]
            children = self._children() if any(s & PORT_STATUS_CONNECTION for s in statuses) else {}
        result = []
        for port, status in enumerate(statuses, start=1):
            connected = bool(status & PORT_STATUS_CONNECTION)
            result.append(
                PortStatus(
                    port=port,
                    powered=self._powered(status),
                    connected=connected,
                    device=children.get(port) if connected else None,
                )
            )
        return result

    def _powered(self, status: int) -> bool:
        return bool(status & (PORT_STATUS_POWER_USB3 if self._usb3 else PORT_STATUS_POWER_USB2))

    def _check_port(self, port: int) -> None:
        if not 1 <= port <= self._port_count:
            raise PortUnavailable(
                f"{self.description} has ports 1..{self._port_count}, not port {port}"
            )

    def _hub_descriptor(self) -> bytes:
        descriptor_type = HUB_DESCRIPTOR_USB3 if self._usb3 else HUB_DESCRIPTOR_USB2
        try:
            data = self._device.ctrl_transfer(
                REQUEST_TYPE_HUB_IN, GET_DESCRIPTOR, descriptor_type << 8, 0, 64, self._timeout_ms
            )
        except usb.core.USBError as error:
            raise self._failure("could not read its hub descriptor", error) from error
        return bytes(data)

    def _port_status(self, port: int) -> int:
        try:
            data = bytes(
                self._device.ctrl_transfer(
                    REQUEST_TYPE_PORT_IN, GET_STATUS, 0, port, 4, self._timeout_ms
                )
            )
        except usb.core.USBError as error:
            raise self._failure(f"could not read the status of port {port}", error) from error
        if len(data) < 2:
            raise PortUnavailable(f"{self.description} sent a short status for port {port}")
        return data[0] | data[1] << 8

    def _control_out(self, request: int, feature: int, port: int) -> None:
        try:
            self._device.ctrl_transfer(
                REQUEST_TYPE_PORT_OUT, request, feature, port, None, self._timeout_ms
            )
        except usb.core.USBError as error:
            raise self._failure(f"refused the power request for port {port}", error) from error

    def _failure(self, what: str, error: usb.core.USBError) -> UsbError:
        if getattr(error, "errno", None) == errno.ENODEV:
            return HubMissing(f"{self.description} is gone from the bus ({what})")
        return PortUnavailable(f"{self.description} {what}: {error}")

    def _children(self) -> dict[int, UsbIdentity]:
        """Who is on each port: devices one level below the hub on its bus."""
        depth = len(self._path) + 1
        children: dict[int, UsbIdentity] = {}
        seen: set[tuple[int, int, int, int]] = set()
        for device in usb.core.find(find_all=True, backend=self._backend):
            path = _port_path(device)
            if int(device.bus or 0) != self._bus or len(path) != depth:
                continue
            if path[:-1] != self._path:
                continue
            # The address changes on every re-enumeration, so it keys the cache safely.
            key = (int(device.address or 0), path[-1], int(device.idVendor), int(device.idProduct))
            seen.add(key)
            identity = self._identities.get(key)
            if identity is None:
                identity = identify(device)
                self._identities[key] = identity
            else:
                usb.util.dispose_resources(device)
            children[path[-1]] = identity
        for stale in set(self._identities) - seen:
            del self._identities[stale]
        return children


def open_hub(
    vendor_id: int | None = None,
    product_id: int | None = None,
    location: str | None = None,
    backend: Any = None,
) -> UsbHub:
    """Find the hub by vendor/product id and/or location ("1-1.3") and open it.

    With nothing given, the first external hub with per-port power switching is used.
    Raises HubMissing when nothing matches and NoPortPowerControl when the matching
    hub cannot switch ports one by one.
    """
    want_bus, want_path = parse_location(location) if location else (None, None)

    def matches(device: Any) -> bool:
        if int(device.bDeviceClass) != HUB_CLASS:
            return False
        if vendor_id is not None and int(device.idVendor) != vendor_id:
            return False
        if product_id is not None and int(device.idProduct) != product_id:
            return False
        if want_bus is not None and (
            int(device.bus or 0) != want_bus or _port_path(device) != want_path
        ):
            return False
        # Root hubs belong to the host controller; only a named location may pick one.
        return want_path is not None or bool(_port_path(device))

    try:
        candidates = list(usb.core.find(find_all=True, backend=backend, custom_match=matches))
    except usb.core.NoBackendError as error:
        raise HubMissing(f"no USB access on this machine (libusb missing?): {error}") from error
    if not candidates:
        wanted = hub_wanted(vendor_id, product_id, location) or "with per-port power switching"
        raise HubMissing(f"no USB hub {wanted} is connected")
    refusal: NoPortPowerControl | None = None
    for device in candidates:
        try:
            return UsbHub(device)
        except NoPortPowerControl as error:
            refusal = refusal or error
    assert refusal is not None
    raise refusal


def hub_wanted(vendor_id: int | None, product_id: int | None, location: str | None) -> str:
    """The configured hub for people ("2109:2817 at 1-1.3"); empty when any hub will do."""
    parts = []
    if vendor_id is not None or product_id is not None:
        vendor = f"{vendor_id:04x}" if vendor_id is not None else "*"
        product = f"{product_id:04x}" if product_id is not None else "*"
        parts.append(f"{vendor}:{product}")
    if location:
        parts.append(f"at {location}")
    return " ".join(parts)


class SysfsPortPower:
    """Per-port power through Linux's `<hub>-port<N>/disable` files (kernel >= 6.0).

    `root` is the file-system root, so tests can point it at a temporary tree.
    """

    def __init__(self, hub_path: str, root: str | os.PathLike[str] = "/") -> None:
        self._hub = check_sysfs_hub(hub_path)
        devices = Path(root) / "sys" / "bus" / "usb" / "devices"
        self._devices = devices
        if self._hub.startswith("usb"):
            # A root hub "usb1" has interface "1-0:1.0" and children "1-N".
            bus = self._hub[3:]
            interface = f"{bus}-0:1.0"
            self._child_prefix = f"{bus}-"
        else:
            interface = f"{self._hub}:1.0"
            self._child_prefix = f"{self._hub}."
        self._interface_dir = devices / interface
        if not self._interface_dir.is_dir():
            raise HubMissing(f"no USB hub at {self._hub} ({self._interface_dir} is missing)")
        pattern = re.compile(rf"^{re.escape(self._hub)}-port(\d+)$")
        numbers = sorted(
            int(match.group(1))
            for entry in self._interface_dir.iterdir()
            if (match := pattern.match(entry.name))
        )
        if not numbers:
            raise HubMissing(f"{self._interface_dir} lists no ports")
        if not (self._port_dir(numbers[0]) / "disable").exists():
            raise NoPortPowerControl(
                f"hub {self._hub}: this kernel has no per-port 'disable' file "
                "(needs Linux 6.0 or newer); use the hub-request method instead"
            )
        self._port_count = numbers[-1]

    @property
    def port_count(self) -> int:
        """How many downstream ports the hub has."""
        return self._port_count

    @property
    def description(self) -> str:
        """For people: "hub 1-1.3 (sysfs)"."""
        return f"hub {self._hub} (sysfs)"

    def set_power(self, port: int, on: bool) -> None:
        """Write 0 (power on) or 1 (power off) to the port's disable file."""
        path = self._disable_file(port)
        try:
            path.write_text("0" if on else "1")
        except OSError as error:
            raise self._failure(f"cannot write {path}", error) from error

    def ports(self) -> list[PortStatus]:
        """Every port: powered from `disable`, connected when the port links a device."""
        result = []
        for port in range(1, self._port_count + 1):
            path = self._disable_file(port)
            try:
                disabled = path.read_text().strip() == "1"
            except OSError as error:
                raise self._failure(f"cannot read {path}", error) from error
            device = self._device_on(port)
            result.append(
                PortStatus(
                    port=port, powered=not disabled, connected=device is not None, device=device
                )
            )
        return result

    def _failure(self, what: str, error: OSError) -> UsbError:
        # The kernel removes the hub's directory when it is unplugged.
        if not self._interface_dir.is_dir():
            return HubMissing(f"hub {self._hub} is gone ({self._interface_dir} is missing)")
        return PortUnavailable(f"{what}: {error.strerror or error}")

    def _port_dir(self, port: int) -> Path:
        return self._interface_dir / f"{self._hub}-port{port}"

    def _disable_file(self, port: int) -> Path:
        if not 1 <= port <= self._port_count:
            raise PortUnavailable(f"hub {self._hub} has ports 1..{self._port_count}, not {port}")
        return self._port_dir(port) / "disable"

    def _device_on(self, port: int) -> UsbIdentity | None:
        # The kernel links a port to its device as `device`; the device's own directory
        # is `<hub>.<port>` (or `<bus>-<port>` below a root hub).
        if not (self._port_dir(port) / "device").exists():
            return None
        child = self._devices / f"{self._child_prefix}{port}"

        def text(name: str) -> str | None:
            try:
                value = (child / name).read_text().strip()
            except OSError:
                return None
            return value or None

        vendor, product = text("idVendor"), text("idProduct")
        if vendor is None or product is None:
            return None
        try:
            return UsbIdentity(
                vendor_id=int(vendor, 16),
                product_id=int(product, 16),
                serial=text("serial"),
                manufacturer=text("manufacturer"),
                product=text("product"),
            )
        except ValueError:
            return None
