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
import threading

import usb.backend
import usb.core

from edge_controller.devices.clock import Clock
from edge_controller.simulation.phone import PD_VOLTAGES_MV, VirtualPhone, vbus_v
from edge_controller.simulation.usb_devices import (
    ConfigurationDescriptor,
    DeviceDescriptor,
    EndpointDescriptor,
    HubPort,
    InterfaceDescriptor,
    VirtualDevice,
    VirtualHub,
    VirtualMeter,
    no_device_error,
)


class _Handle:
    def __init__(self, device: VirtualDevice) -> None:
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

    def enumerate_devices(self) -> list[VirtualDevice]:
        with self.world.lock:
            self.world.sync()
            return self.world.devices()

    def get_parent(self, dev: VirtualDevice) -> VirtualDevice | None:
        return dev.parent

    def get_device_descriptor(self, dev: VirtualDevice) -> DeviceDescriptor:
        return dev.descriptor

    def get_configuration_descriptor(
        self, dev: VirtualDevice, config: int
    ) -> ConfigurationDescriptor:
        if config != 0:
            raise IndexError("configuration index out of range")
        return dev.configuration

    def get_interface_descriptor(
        self, dev: VirtualDevice, intf: int, alt: int, config: int
    ) -> InterfaceDescriptor:
        interfaces = [
            i
            for i in self.get_configuration_descriptor(dev, config).interfaces
            if i.bInterfaceNumber == intf
        ]
        if alt >= len(interfaces):
            raise IndexError("interface index out of range")
        return interfaces[alt]

    def get_endpoint_descriptor(
        self, dev: VirtualDevice, ep: int, intf: int, alt: int, config: int
    ) -> EndpointDescriptor:
        endpoints = self.get_interface_descriptor(dev, intf, alt, config).endpoints
        if ep >= len(endpoints):
            raise IndexError("endpoint index out of range")
        return endpoints[ep]

    def open_device(self, dev: VirtualDevice) -> _Handle:
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
    def _present(device: VirtualDevice) -> VirtualDevice:
        if not device.present:
            raise no_device_error()
        return device

    @staticmethod
    def _claimed(device: VirtualDevice, intf: int) -> None:
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
        self.root = VirtualDevice(
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
            slot.device = VirtualDevice(
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

    def devices(self) -> list[VirtualDevice]:
        """What is enumerable now: root hub, hub, the meter if present, connected phones."""
        found: list[VirtualDevice] = [self.root, self.hub]
        if self.meter.present:
            found.append(self.meter)
        found.extend(slot.device for slot in self.hub.ports if slot.device is not None)
        return found

    def _port(self, port: int) -> HubPort:
        if not 1 <= port <= len(self.hub.ports):
            raise ValueError(f"the hub has ports 1..{len(self.hub.ports)}, not {port}")
        return self.hub.ports[port - 1]

    def _address(self) -> int:
        address = self._next_address
        self._next_address = self._next_address % 127 + 1
        return address
