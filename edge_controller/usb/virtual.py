"""A virtual USB world for tests and the demo: a pyusb backend with a hub, phones and a meter.

`VirtualUsbWorld(clock).backend` is a real `usb.backend.IBackend`. `usb.core.find(
backend=world.backend)` sees a root hub, a hub with per-port power switching (or a ganged
one), the phones plugged into its ports, and an FNIRSI FNB58-style USB HID power meter.
The production classes (`UsbHub`, `FnirsiMeter`) run against it unchanged: the hub answers
the same class requests a real hub answers, the meter speaks the same HID packets.

Time comes from the clock: every access brings the phones' batteries up to the clock's
now, so a test drives a whole charge with a `SimulatedClock` and no sleeping.
"""

from __future__ import annotations

import array
import errno
import struct
import threading
from dataclasses import dataclass, field

import usb.backend
import usb.core

from edge_controller.devices.clock import Clock
from edge_controller.usb.meters import (
    FNIRSI_PACKET_SIZE,
    FNIRSI_SAMPLE_INTERVAL_MS,
    fnirsi_crc,
)

# USB standard and hub class request codes (USB 2.0 chapters 9 and 11).
_GET_STATUS = 0
_CLEAR_FEATURE = 1
_SET_FEATURE = 3
_GET_DESCRIPTOR = 6
_PORT_POWER = 8
_PACKET_INTERVAL_MS = 4 * FNIRSI_SAMPLE_INTERVAL_MS  # four samples per HID report
_MAX_BACKLOG = 4
# USB-PD's fixed supply voltages (standard power range) and the most a 5 A e-marked cable
# carries: what a virtual phone may negotiate.
PD_VOLTAGES_MV = (5_000, 9_000, 15_000, 20_000)
PD_MAX_CURRENT_A = 5.0


def _pipe_error(what: str) -> usb.core.USBError:
    return usb.core.USBError(f"Pipe error ({what})", -9, errno.EPIPE)


def _no_device() -> usb.core.USBError:
    return usb.core.USBError("No such device (it may have been disconnected)", -4, errno.ENODEV)


def _timeout() -> usb.core.USBTimeoutError:
    return usb.core.USBTimeoutError("Operation timed out", -7, errno.ETIMEDOUT)


class VirtualPhone:
    """A phone with a battery that charges on a CC/CV curve from USB VBUS.

    Below about 80 % it takes its full power (constant current); above it the power
    falls towards ~1 W (constant voltage) and stops at 100 %. `pd_voltage_mv` is the
    USB-PD contract it negotiates (5 V for a plain phone, 9/15/20 V for fast-charging
    phones, tablets and laptops); the port then carries that voltage while it charges.
    """

    CV_START = 0.8
    FLOOR_W = 0.8
    EFFICIENCY = 0.9  # what reaches the battery of what crosses the USB port

    def __init__(
        self,
        vendor_id: int,
        product_id: int,
        serial: str | None,
        manufacturer: str | None = None,
        product: str | None = None,
        battery_wh: float = 15.0,
        soc: float = 0.2,
        *,
        max_power_w: float = 15.0,
        pd_voltage_mv: int = 5_000,
        strings_fail: bool = False,
    ) -> None:
        if not 0.0 <= soc <= 1.0:
            raise ValueError("state of charge is between 0 and 1")
        if battery_wh <= 0 or max_power_w <= 0:
            raise ValueError("battery size and charge power must be positive")
        if pd_voltage_mv not in PD_VOLTAGES_MV:
            raise ValueError(f"a USB-PD contract is one of {PD_VOLTAGES_MV} mV")
        if max_power_w > pd_voltage_mv / 1000 * PD_MAX_CURRENT_A:
            raise ValueError(
                f"{max_power_w:g} W at {pd_voltage_mv / 1000:g} V needs more than"
                f" {PD_MAX_CURRENT_A:g} A; negotiate a higher voltage"
            )
        self.vendor_id = vendor_id
        self.product_id = product_id
        self.serial = serial
        self.manufacturer = manufacturer
        self.product = product
        self.battery_wh = battery_wh
        self.soc = soc
        self.max_power_w = max_power_w
        self.pd_voltage_mv = pd_voltage_mv
        self.strings_fail = strings_fail
        self.delivered_wh = 0.0  # energy taken from the port, the truth a meter should see

    def demand_w(self) -> float:
        """The power the phone draws right now from a powered port, in watts."""
        if self.soc >= 1.0:
            return 0.0
        if self.soc < self.CV_START:
            return self.max_power_w
        taper = (1.0 - self.soc) / (1.0 - self.CV_START)
        return max(self.FLOOR_W, self.max_power_w * taper)

    def voltage_v(self) -> float:
        """VBUS at the phone: the contract's voltage plus 0.1 V at no load, less a little
        cable drop under load."""
        return vbus_v(self.pd_voltage_mv, self.demand_w())

    def current_a_at(self, volts: float) -> float:
        """The current for the present demand at `volts`."""
        return self.demand_w() / volts if volts > 0 else 0.0

    def charge(self, seconds: float) -> None:
        """Draw from a powered port for `seconds`, in steps small enough for the taper."""
        remaining = seconds
        while remaining > 0 and self.soc < 1.0:
            step = min(remaining, 1.0)
            power_w = self.demand_w()
            self.delivered_wh += power_w * step / 3600.0
            self.soc = min(
                1.0, self.soc + power_w * self.EFFICIENCY * step / 3600.0 / self.battery_wh
            )
            remaining -= step

    def __repr__(self) -> str:
        return (
            f"VirtualPhone({self.vendor_id:04x}:{self.product_id:04x} {self.serial!r} "
            f"{self.pd_voltage_mv / 1000:g} V soc={self.soc:.3f})"
        )


def vbus_v(contract_mv: int, power_w: float) -> float:
    """VBUS under a contract: sources aim 0.1 V high, the cable drops 40 mOhm x current."""
    nominal_v = contract_mv / 1000
    return nominal_v + 0.1 - 0.04 * power_w / nominal_v


@dataclass
class _Endpoint:
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
class _Interface:
    bLength: int  # noqa: N815
    bDescriptorType: int  # noqa: N815
    bInterfaceNumber: int  # noqa: N815
    bAlternateSetting: int  # noqa: N815
    bNumEndpoints: int  # noqa: N815
    bInterfaceClass: int  # noqa: N815
    bInterfaceSubClass: int  # noqa: N815
    bInterfaceProtocol: int  # noqa: N815
    iInterface: int  # noqa: N815
    endpoints: list[_Endpoint]
    extra_descriptors: list[int] = field(default_factory=list)


@dataclass
class _Configuration:
    bLength: int  # noqa: N815
    bDescriptorType: int  # noqa: N815
    wTotalLength: int  # noqa: N815
    bNumInterfaces: int  # noqa: N815
    bConfigurationValue: int  # noqa: N815
    iConfiguration: int  # noqa: N815
    bmAttributes: int  # noqa: N815
    bMaxPower: int  # noqa: N815
    interfaces: list[_Interface]
    extra_descriptors: list[int] = field(default_factory=list)


@dataclass
class _DeviceDescriptor:
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


class _Device:
    """One device on the virtual bus: descriptors, strings, and its control endpoint."""

    def __init__(
        self,
        world: VirtualUsbWorld,
        *,
        vendor_id: int,
        product_id: int,
        address: int,
        port_numbers: tuple[int, ...],
        parent: _Device | None,
        device_class: int = 0,
        bcd_usb: int = 0x0200,
        strings: tuple[str | None, str | None, str | None] = (None, None, None),
        interfaces: list[_Interface] | None = None,
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
        self.descriptor = _DeviceDescriptor(
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
            _Interface(9, 4, 0, 0, 0, 0xFF, 0, 0, 0, []),
        ]
        self.configuration = _Configuration(
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


class _Port:
    def __init__(self) -> None:
        self.powered = True  # hubs power every port when they enumerate
        self.phone: VirtualPhone | None = None
        self.device: _Device | None = None


class VirtualHub(_Device):
    """A hub with `ports` downstream ports that answers the USB hub class requests."""

    def __init__(
        self,
        world: VirtualUsbWorld,
        *,
        ports: int,
        switching: str,
        usb3: bool,
        vendor_id: int,
        product_id: int,
        address: int,
        port_numbers: tuple[int, ...],
        parent: _Device | None,
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
                _Interface(9, 4, 0, 0, 1, 0x09, 0, 0, 0, [_Endpoint(7, 5, 0x81, 0x03, 1, 12)])
            ],
        )
        self.switching = switching
        self.usb3 = usb3
        self.ports = [_Port() for _ in range(ports)]

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


class VirtualMeter(_Device):
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
        world: VirtualUsbWorld,
        *,
        port: int | None,
        address: int,
        port_numbers: tuple[int, ...],
    ) -> None:
        hid = _Interface(
            9,
            4,
            0,
            0,
            2,
            0x03,
            0,
            0,
            0,
            [_Endpoint(7, 5, 0x81, 0x03, 64, 1), _Endpoint(7, 5, 0x01, 0x03, 64, 1)],
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


class _Handle:
    def __init__(self, device: _Device) -> None:
        self.device = device


class VirtualUsbBackend(usb.backend.IBackend):  # type: ignore[misc]
    """The pyusb backend of a `VirtualUsbWorld`."""

    def __init__(self, world: VirtualUsbWorld) -> None:
        super().__init__()
        self.world = world

    @property
    def clock(self) -> Clock:
        """The world's clock; meters opened on this backend take their time from it."""
        return self.world.clock

    def enumerate_devices(self) -> list[_Device]:
        with self.world.lock:
            self.world.sync()
            return self.world.devices()

    def get_parent(self, dev: _Device) -> _Device | None:
        return dev.parent

    def get_device_descriptor(self, dev: _Device) -> _DeviceDescriptor:
        return dev.descriptor

    def get_configuration_descriptor(self, dev: _Device, config: int) -> _Configuration:
        if config != 0:
            raise IndexError("configuration index out of range")
        return dev.configuration

    def get_interface_descriptor(
        self, dev: _Device, intf: int, alt: int, config: int
    ) -> _Interface:
        interfaces = [
            i
            for i in self.get_configuration_descriptor(dev, config).interfaces
            if i.bInterfaceNumber == intf
        ]
        if alt >= len(interfaces):
            raise IndexError("interface index out of range")
        return interfaces[alt]

    def get_endpoint_descriptor(
        self, dev: _Device, ep: int, intf: int, alt: int, config: int
    ) -> _Endpoint:
        endpoints = self.get_interface_descriptor(dev, intf, alt, config).endpoints
        if ep >= len(endpoints):
            raise IndexError("endpoint index out of range")
        return endpoints[ep]

    def open_device(self, dev: _Device) -> _Handle:
        self._present(dev)
        return _Handle(dev)

    def close_device(self, dev_handle: _Handle) -> None:
        dev_handle.device.claimed.clear()

    def set_configuration(self, dev_handle: _Handle, config_value: int) -> None:
        device = self._present(dev_handle.device)
        if device.kernel_driver:
            raise usb.core.USBError("Resource busy", -6, errno.EBUSY)
        device.active_configuration = config_value

    def get_configuration(self, dev_handle: _Handle) -> int:
        return self._present(dev_handle.device).active_configuration

    def set_interface_altsetting(self, dev_handle: _Handle, intf: int, altsetting: int) -> None:
        self._present(dev_handle.device)

    def claim_interface(self, dev_handle: _Handle, intf: int) -> None:
        device = self._present(dev_handle.device)
        if intf in device.kernel_driver:
            raise usb.core.USBError("Resource busy", -6, errno.EBUSY)
        device.claimed.add(intf)

    def release_interface(self, dev_handle: _Handle, intf: int) -> None:
        dev_handle.device.claimed.discard(intf)

    def ctrl_transfer(
        self,
        dev_handle: _Handle,
        request_type: int,
        request: int,
        value: int,
        index: int,
        data: array.array[int],
        timeout: int,
    ) -> int:
        with self.world.lock:
            device = self._present(dev_handle.device)
            self.world.sync()
            answer = device.control(request_type, request, value, index, len(data))
        if request_type & 0x80:
            data[: len(answer)] = array.array("B", answer)
            return len(answer)
        return len(data)

    def intr_write(
        self, dev_handle: _Handle, ep: int, intf: int, data: array.array[int], timeout: int
    ) -> int:
        with self.world.lock:
            device = self._present(dev_handle.device)
            self._claimed(device, intf)
            return device.interrupt_out(ep, bytes(data))

    def intr_read(
        self, dev_handle: _Handle, ep: int, intf: int, buff: array.array[int], timeout: int
    ) -> int:
        with self.world.lock:
            device = self._present(dev_handle.device)
            self._claimed(device, intf)
            self.world.sync()
            answer = device.interrupt_in(ep, len(buff), timeout)
        buff[: len(answer)] = array.array("B", answer)
        return len(answer)

    def clear_halt(self, dev_handle: _Handle, ep: int) -> None:
        self._present(dev_handle.device)

    def reset_device(self, dev_handle: _Handle) -> None:
        device = self._present(dev_handle.device)
        if isinstance(device, VirtualMeter):
            device.streaming = False

    def is_kernel_driver_active(self, dev_handle: _Handle, intf: int) -> bool:
        return intf in self._present(dev_handle.device).kernel_driver

    def detach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        device = self._present(dev_handle.device)
        if intf not in device.kernel_driver:
            raise usb.core.USBError("Entity not found", -5, errno.ENOENT)
        device.kernel_driver.discard(intf)

    def attach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        self._present(dev_handle.device).kernel_driver.add(intf)

    @staticmethod
    def _present(device: _Device) -> _Device:
        if not device.present:
            raise _no_device()
        return device

    @staticmethod
    def _claimed(device: _Device, intf: int) -> None:
        if intf not in device.claimed:
            raise usb.core.USBError("Interface not claimed", -1, errno.EIO)


class VirtualUsbWorld:
    """A bus with a hub of `ports` ports, phones to plug in, and a meter in front of a port.

    `per_port_power=False` gives a ganged hub (it takes power requests and switches
    nothing); `vbus_follows_power=False` gives a hub that reports a port off but keeps
    VBUS on (the caveat some real hubs have). `meter_port=None` puts the meter upstream
    of the hub, measuring all ports together.
    """

    def __init__(
        self,
        clock: Clock,
        ports: int = 4,
        per_port_power: bool = True,
        *,
        meter_port: int | None = 1,
        usb3: bool = False,
        vbus_follows_power: bool = True,
        hub_vendor_id: int = 0x2109,
        hub_product_id: int = 0x2817,
        bus: int = 1,
    ) -> None:
        if ports < 1 or ports > 15:
            raise ValueError("a hub has 1 to 15 ports")
        if meter_port is not None and not 1 <= meter_port <= ports:
            raise ValueError(f"the meter can sit in front of ports 1..{ports}")
        self.clock = clock
        self.bus = bus
        self.lock = threading.RLock()
        self.vbus_follows_power = vbus_follows_power
        self._next_address = 1
        self._last_sync_ms = clock.now_ms()
        self.root = _Device(
            self,
            vendor_id=0x1D6B,
            product_id=0x0002,
            address=self._address(),
            port_numbers=(),
            parent=None,
            device_class=0x09,
            strings=("Linux virtual", "xHCI Host Controller", "0000:00:14.0"),
        )
        self.hub = VirtualHub(
            self,
            ports=ports,
            switching="per_port" if per_port_power else "ganged",
            usb3=usb3,
            vendor_id=hub_vendor_id,
            product_id=hub_product_id,
            address=self._address(),
            port_numbers=(1,),
            parent=self.root,
        )
        self.meter = VirtualMeter(self, port=meter_port, address=self._address(), port_numbers=(2,))
        self.backend = VirtualUsbBackend(self)

    @property
    def location(self) -> str:
        """The hub's location as configuration names it, e.g. "1-1"."""
        return f"{self.bus}-1"

    def hub_without_port_power(self, switching: str = "ganged") -> None:
        """Make the hub one without per-port switching ("ganged" or "none")."""
        if switching not in ("ganged", "none"):
            raise ValueError("switching is 'ganged' or 'none'")
        self.hub.switching = switching

    def plug(self, port: int, phone: VirtualPhone) -> None:
        """Plug `phone` into hub port `port`; it enumerates with a new address."""
        slot = self._port(port)
        with self.lock:
            self.sync()
            if slot.phone is not None:
                raise ValueError(f"port {port} already has {slot.phone!r}")
            slot.phone = phone
            slot.device = _Device(
                self,
                vendor_id=phone.vendor_id,
                product_id=phone.product_id,
                address=self._address(),
                port_numbers=(1, port),
                parent=self.hub,
                strings=(phone.manufacturer, phone.product, phone.serial),
                strings_fail=phone.strings_fail,
            )

    def unplug(self, port: int) -> VirtualPhone | None:
        """Pull whatever is in `port` out and return it."""
        slot = self._port(port)
        with self.lock:
            self.sync()
            phone = slot.phone
            if slot.device is not None:
                slot.device.present = False
            slot.phone = None
            slot.device = None
            return phone

    def phone(self, port: int) -> VirtualPhone | None:
        """The phone plugged into `port`, if any."""
        return self._port(port).phone

    def powered(self, port: int) -> bool:
        """Whether the hub reports `port` powered."""
        return self._port(port).powered

    def set_port_power(self, port: int, on: bool) -> None:
        """What the hub does on SET/CLEAR_FEATURE(PORT_POWER): time first, then the switch."""
        with self.lock:
            self.sync()
            self._port(port).powered = on

    def vbus(self, port: int) -> bool:
        """Whether VBUS really is on at `port` (a ganged hub leaves every port on)."""
        slot = self._port(port)
        if self.hub.switching != "per_port" or not self.vbus_follows_power:
            return True
        return slot.powered

    def sync(self) -> None:
        """Bring every phone's battery up to the clock's now."""
        with self.lock:
            now = self.clock.now_ms()
            elapsed_s = (now - self._last_sync_ms) / 1000.0
            self._last_sync_ms = max(now, self._last_sync_ms)
            if elapsed_s <= 0:
                return
            for number, slot in enumerate(self.hub.ports, start=1):
                if slot.phone is not None and self.vbus(number):
                    slot.phone.charge(elapsed_s)

    def measure(self, port: int | None) -> tuple[float, float]:
        """Volts and amps at the meter: one port, or all ports when it sits upstream."""
        with self.lock:
            self.sync()
            numbers = [port] if port is not None else range(1, len(self.hub.ports) + 1)
            live = [number for number in numbers if self.vbus(number)]
            if not live:
                return 0.0, 0.0
            power_w = 0.0
            contract_mv = PD_VOLTAGES_MV[0]  # an empty port offers plain 5 V
            for number in live:
                phone = self._port(number).phone
                if phone is not None:
                    power_w += phone.demand_w()
                    # Upstream of several phones, the hub asks for the highest contract.
                    contract_mv = max(contract_mv, phone.pd_voltage_mv)
            volts = vbus_v(contract_mv, power_w)
            return volts, power_w / volts

    def devices(self) -> list[_Device]:
        """What is enumerable now: root hub, hub, the meter if present, connected phones."""
        found: list[_Device] = [self.root, self.hub]
        if self.meter.present:
            found.append(self.meter)
        found.extend(slot.device for slot in self.hub.ports if slot.device is not None)
        return found

    def _port(self, port: int) -> _Port:
        if not 1 <= port <= len(self.hub.ports):
            raise ValueError(f"the hub has ports 1..{len(self.hub.ports)}, not {port}")
        return self.hub.ports[port - 1]

    def _address(self) -> int:
        address = self._next_address
        self._next_address = self._next_address % 127 + 1
        return address
