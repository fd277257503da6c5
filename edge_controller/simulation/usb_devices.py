"""The devices of the virtual USB bus: a root hub, a hub that answers the hub class requests,
an FNIRSI FNB58-style HID power meter, and the phones' USB faces.

Each answers the same requests its real counterpart answers; `usb_world.VirtualUsbWorld`
puts them on a bus and `usb_world.VirtualUsbBackend` is how pyusb reaches them.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field
from typing import Protocol

import usb.core

from edge_controller.devices.clock import Clock
from edge_controller.simulation.phone import VirtualPhone
from edge_controller.usb.meters import (
    FNIRSI_PACKET_SIZE,
    FNIRSI_SAMPLE_INTERVAL_MS,
    fnirsi_crc,
)


class Bus(Protocol):
    """What a virtual device needs of the world it is plugged into (`VirtualUsbWorld`)."""

    bus: int
    clock: Clock

    @property
    def root(self) -> VirtualDevice: ...

    def set_port_power(self, port: int, on: bool) -> None: ...

    def measure(self, port: int | None) -> tuple[float, float]: ...


# USB standard and hub class request codes (USB 2.0 chapters 9 and 11).
_GET_STATUS = 0
_CLEAR_FEATURE = 1
_SET_FEATURE = 3
_GET_DESCRIPTOR = 6
_PORT_POWER = 8
_PACKET_INTERVAL_MS = 4 * FNIRSI_SAMPLE_INTERVAL_MS  # four samples per HID report
_MAX_BACKLOG = 4


def _pipe_error(what: str) -> usb.core.USBError:
    return usb.core.USBError(f"Pipe error ({what})", -9, errno.EPIPE)


def no_device_error() -> usb.core.USBError:
    """What libusb says of a device that left the bus (ENODEV)."""
    return usb.core.USBError("No such device (it may have been disconnected)", -4, errno.ENODEV)


def _timeout() -> usb.core.USBTimeoutError:
    return usb.core.USBTimeoutError("Operation timed out", -7, errno.ETIMEDOUT)


@dataclass
class EndpointDescriptor:
    bLength: int  # noqa: N815 - pyusb reads the descriptor fields by their USB names
    bDescriptorType: int  # noqa: N815
    bEndpointAddress: int  # noqa: N815
    bmAttributes: int  # noqa: N815
    wMaxPacketSize: int  # noqa: N815
    bInterval: int  # noqa: N815
    bRefresh: int = 0  # noqa: N815
    bSynchAddress: int = 0  # noqa: N815
    extra_descriptors: list[int] = field(default_factory=list)


@dataclass
class InterfaceDescriptor:
    bLength: int  # noqa: N815
    bDescriptorType: int  # noqa: N815
    bInterfaceNumber: int  # noqa: N815
    bAlternateSetting: int  # noqa: N815
    bNumEndpoints: int  # noqa: N815
    bInterfaceClass: int  # noqa: N815
    bInterfaceSubClass: int  # noqa: N815
    bInterfaceProtocol: int  # noqa: N815
    iInterface: int  # noqa: N815
    endpoints: list[EndpointDescriptor]
    extra_descriptors: list[int] = field(default_factory=list)


@dataclass
class ConfigurationDescriptor:
    bLength: int  # noqa: N815
    bDescriptorType: int  # noqa: N815
    wTotalLength: int  # noqa: N815
    bNumInterfaces: int  # noqa: N815
    bConfigurationValue: int  # noqa: N815
    iConfiguration: int  # noqa: N815
    bmAttributes: int  # noqa: N815
    bMaxPower: int  # noqa: N815
    interfaces: list[InterfaceDescriptor]
    extra_descriptors: list[int] = field(default_factory=list)


@dataclass
class DeviceDescriptor:
    bLength: int  # noqa: N815
    bDescriptorType: int  # noqa: N815
    bcdUSB: int  # noqa: N815
    bDeviceClass: int  # noqa: N815
    bDeviceSubClass: int  # noqa: N815
    bDeviceProtocol: int  # noqa: N815
    bMaxPacketSize0: int  # noqa: N815
    idVendor: int  # noqa: N815
    idProduct: int  # noqa: N815
    bcdDevice: int  # noqa: N815
    iManufacturer: int  # noqa: N815
    iProduct: int  # noqa: N815
    iSerialNumber: int  # noqa: N815
    bNumConfigurations: int  # noqa: N815
    address: int
    bus: int
    port_number: int | None
    port_numbers: tuple[int, ...] | None
    speed: int

    def to_bytes(self) -> bytes:
        return struct.pack(
            "<BBHBBBBHHHBBBB",
            18,
            1,
            self.bcdUSB,
            self.bDeviceClass,
            self.bDeviceSubClass,
            self.bDeviceProtocol,
            self.bMaxPacketSize0,
            self.idVendor,
            self.idProduct,
            self.bcdDevice,
            self.iManufacturer,
            self.iProduct,
            self.iSerialNumber,
            self.bNumConfigurations,
        )


class VirtualDevice:
    """One device on the virtual bus: descriptors, strings, and its control endpoint."""

    def __init__(
        self,
        world: Bus,
        *,
        vendor_id: int,
        product_id: int,
        address: int,
        port_numbers: tuple[int, ...],
        parent: VirtualDevice | None,
        device_class: int = 0,
        bcd_usb: int = 0x0200,
        strings: tuple[str | None, str | None, str | None] = (None, None, None),
        interfaces: list[InterfaceDescriptor] | None = None,
        strings_fail: bool = False,
    ) -> None:
        self.world = world
        self.parent = parent
        self.present = True
        self.strings_fail = strings_fail
        manufacturer, product, serial = strings
        self.strings: dict[int, str] = {}
        indexes = []
        for text in (manufacturer, product, serial):
            if text is None:
                indexes.append(0)
            else:
                self.strings[len(self.strings) + 1] = text
                indexes.append(len(self.strings))
        self.descriptor = DeviceDescriptor(
            bLength=18,
            bDescriptorType=1,
            bcdUSB=bcd_usb,
            bDeviceClass=device_class,
            bDeviceSubClass=0,
            bDeviceProtocol=1 if device_class == 0x09 else 0,
            bMaxPacketSize0=64,
            idVendor=vendor_id,
            idProduct=product_id,
            bcdDevice=0x0100,
            iManufacturer=indexes[0],
            iProduct=indexes[1],
            iSerialNumber=indexes[2],
            bNumConfigurations=1,
            address=address,
            bus=world.bus,
            port_number=port_numbers[-1] if port_numbers else None,
            port_numbers=port_numbers or None,
            speed=3,  # high speed
        )
        interfaces = interfaces or [
            InterfaceDescriptor(9, 4, 0, 0, 0, 0xFF, 0, 0, 0, []),
        ]
        self.configuration = ConfigurationDescriptor(
            bLength=9,
            bDescriptorType=2,
            wTotalLength=9 + sum(9 + 7 * len(i.endpoints) for i in interfaces),
            bNumInterfaces=len({i.bInterfaceNumber for i in interfaces}),
            bConfigurationValue=1,
            iConfiguration=0,
            bmAttributes=0x80,
            bMaxPower=50,
            interfaces=interfaces,
        )
        self.active_configuration = 1
        self.kernel_driver: set[int] = set()
        self.claimed: set[int] = set()

    def control(
        self, request_type: int, request: int, value: int, index: int, length: int
    ) -> bytes:
        """Standard requests every device answers; subclasses add their class requests."""
        if request_type == 0x80 and request == _GET_DESCRIPTOR:
            kind, number = value >> 8, value & 0xFF
            if kind == 1:
                return self.descriptor.to_bytes()[:length]
            if kind == 3:
                return self._string_descriptor(number)[:length]
        raise _pipe_error(f"request {request_type:#04x}/{request} not supported")

    def _string_descriptor(self, number: int) -> bytes:
        if self.strings_fail:
            raise _pipe_error("string descriptors refused")
        if number == 0:
            return bytes([4, 3]) + struct.pack("<H", 0x0409)  # English (US) only
        text = self.strings.get(number)
        if text is None:
            raise _pipe_error(f"no string {number}")
        encoded = text.encode("utf-16-le")
        return bytes([2 + len(encoded), 3]) + encoded

    def interrupt_in(self, endpoint: int, size: int, timeout_ms: int) -> bytes:
        raise _pipe_error(f"no interrupt endpoint {endpoint:#04x}")

    def interrupt_out(self, endpoint: int, data: bytes) -> int:
        raise _pipe_error(f"no interrupt endpoint {endpoint:#04x}")


class HubPort:
    def __init__(self) -> None:
        self.powered = True  # hubs power every port when they enumerate
        self.phone: VirtualPhone | None = None
        self.device: VirtualDevice | None = None


class VirtualHub(VirtualDevice):
    """A hub with `ports` downstream ports that answers the USB hub class requests."""

    def __init__(
        self,
        world: Bus,
        *,
        ports: int,
        switching: str,
        usb3: bool,
        vendor_id: int,
        product_id: int,
        address: int,
        port_numbers: tuple[int, ...],
        parent: VirtualDevice | None,
    ) -> None:
        super().__init__(
            world,
            vendor_id=vendor_id,
            product_id=product_id,
            address=address,
            port_numbers=port_numbers,
            parent=parent,
            device_class=0x09,
            bcd_usb=0x0300 if usb3 else 0x0210,
            strings=("VIA Labs, Inc.", "USB2.0 Hub" if not usb3 else "USB3.0 Hub", None),
            interfaces=[
                InterfaceDescriptor(
                    9, 4, 0, 0, 1, 0x09, 0, 0, 0, [EndpointDescriptor(7, 5, 0x81, 0x03, 1, 12)]
                )
            ],
        )
        self.switching = switching
        self.usb3 = usb3
        self.ports = [HubPort() for _ in range(ports)]

    def characteristics(self) -> int:
        """wHubCharacteristics: power switching mode in bits 0..1, per-port over-current."""
        mode = {"per_port": 0x0001, "ganged": 0x0000, "none": 0x0002}[self.switching]
        return mode | 0x0008

    def hub_descriptor(self) -> bytes:
        count = len(self.ports)
        if self.usb3:
            return struct.pack(
                "<BBBHBBBHH", 12, 0x2A, count, self.characteristics(), 50, 0, 0, 0, 0
            )
        bitmap = (count + 1 + 7) // 8
        return (
            struct.pack("<BBBHBB", 7 + 2 * bitmap, 0x29, count, self.characteristics(), 50, 100)
            + bytes(bitmap)
            + b"\xff" * bitmap
        )

    def port_status(self, number: int) -> bytes:
        port = self.ports[number - 1]
        status = 0
        if port.phone is not None:
            status |= 0x0001  # connection
            if port.powered:
                status |= 0x0002  # enabled
        if port.powered:
            status |= 0x0200 if self.usb3 else 0x0100
        if port.phone is not None and not self.usb3:
            status |= 0x0400  # high-speed device attached
        return struct.pack("<HH", status, 0)

    def control(
        self, request_type: int, request: int, value: int, index: int, length: int
    ) -> bytes:
        if request_type == 0xA0 and request == _GET_DESCRIPTOR:
            wanted = 0x2A if self.usb3 else 0x29
            if value >> 8 != wanted:
                raise _pipe_error(f"hub descriptor type {value >> 8:#04x}")
            return self.hub_descriptor()[:length]
        if request_type in (0xA3, 0x23):
            if not 1 <= index <= len(self.ports):
                raise _pipe_error(f"no port {index}")
            if request_type == 0xA3 and request == _GET_STATUS:
                return self.port_status(index)[:length]
            if request in (_SET_FEATURE, _CLEAR_FEATURE) and value == _PORT_POWER:
                if self.switching == "per_port":
                    self.world.set_port_power(index, request == _SET_FEATURE)
                # Ganged or non-switching hubs take the request and change nothing here.
                return b""
            raise _pipe_error(f"port feature {value} not supported")
        return super().control(request_type, request, value, index, length)


class VirtualMeter(VirtualDevice):
    """An FNIRSI FNB58-style USB HID power meter in front of one hub port.

    It streams 64-byte HID reports of four 10 ms samples once started with the 0xaa 0x81 /
    0xaa 0x82 commands, as the real meter does. `fail()` makes it stop answering,
    `absurd()` makes it report impossible values, `heal()` undoes both; `remove()` takes it
    off the bus.
    """

    VENDOR_ID = 0x2E3C
    PRODUCT_ID = 0x5558

    def __init__(
        self,
        world: Bus,
        *,
        port: int | None,
        address: int,
        port_numbers: tuple[int, ...],
    ) -> None:
        hid = InterfaceDescriptor(
            9,
            4,
            0,
            0,
            2,
            0x03,
            0,
            0,
            0,
            [
                EndpointDescriptor(7, 5, 0x81, 0x03, 64, 1),
                EndpointDescriptor(7, 5, 0x01, 0x03, 64, 1),
            ],
        )
        super().__init__(
            world,
            vendor_id=self.VENDOR_ID,
            product_id=self.PRODUCT_ID,
            address=address,
            port_numbers=port_numbers,
            parent=world.root,
            strings=("FNIRSI", "FNB-58", "0001A0000058"),
            interfaces=[hid],
        )
        self.port = port  # the hub port it measures; None: the hub's upstream (all ports)
        self.kernel_driver = {0}  # usbhid binds the HID interface until it is detached
        self.failed = False
        self.absurd_values = False
        self.streaming = False
        self.commands: list[int] = []
        self._pending: list[bytes] = []
        self._last_packet_ms = 0

    def fail(self) -> None:
        """Stop answering: reads time out, as a hung meter's do."""
        self.failed = True

    def absurd(self) -> None:
        """Report impossible values (thousands of volts, negative current)."""
        self.absurd_values = True

    def heal(self) -> None:
        """Answer normally again."""
        self.failed = False
        self.absurd_values = False

    def remove(self) -> None:
        """Take the meter off the bus (unplugged cable)."""
        self.present = False
        self.streaming = False

    def reconnect(self) -> None:
        """Put the meter back on the bus; it waits for the start commands again."""
        self.present = True
        self.kernel_driver = {0}
        self.claimed = set()

    def interrupt_out(self, endpoint: int, data: bytes) -> int:
        if endpoint != 0x01:
            return super().interrupt_out(endpoint, data)
        if (
            len(data) == FNIRSI_PACKET_SIZE
            and data[0] == 0xAA
            and fnirsi_crc(data[1:63]) == data[63]
        ):
            command = data[1]
            self.commands.append(command)
            if command == 0x81:
                self.streaming = False
                # The FNB58 answers the first command with a report that is not a sample.
                self._pending.append(self._packet(0x03, 0.0, 0.0))
            elif command in (0x82, 0x83) and not self.streaming:
                self.streaming = True
                self._last_packet_ms = self.world.clock.now_ms()
        return len(data)

    def interrupt_in(self, endpoint: int, size: int, timeout_ms: int) -> bytes:
        if endpoint != 0x81:
            return super().interrupt_in(endpoint, size, timeout_ms)
        if self.failed:
            raise _timeout()
        if self._pending:
            return self._pending.pop(0)[:size]
        if not self.streaming:
            raise _timeout()
        now = self.world.clock.now_ms()
        backlog = min(_MAX_BACKLOG, (now - self._last_packet_ms) // _PACKET_INTERVAL_MS)
        if backlog >= 1:
            self._last_packet_ms = now - (backlog - 1) * _PACKET_INTERVAL_MS
        elif timeout_ms >= _PACKET_INTERVAL_MS:
            self._last_packet_ms = now  # waited for the next report
        else:
            raise _timeout()
        volts, amps = self.world.measure(self.port)
        if self.absurd_values:
            volts, amps = 21_000.0, -0.5
        return self._packet(0x04, volts, amps)[:size]

    @staticmethod
    def _packet(kind: int, volts: float, amps: float) -> bytes:
        body = bytearray([0xAA, kind])
        for _ in range(4):
            body += struct.pack(
                "<iiHHBH", round(volts * 100_000), round(amps * 100_000), 600, 600, 1, 285
            )
        body.append(0x5A)  # byte 62: purpose unknown on the real meter
        body.append(fnirsi_crc(bytes(body[1:63])))
        return bytes(body)
