"""USB power meters: FNIRSI FNB48 / FNB58 / C1 over USB HID, and the Linux Type-C PD contract.

FNIRSI protocol (as the open-source fnirsi-usb-power-data-logger documents it): the host
writes 64-byte commands `aa 81 …`, `aa 82 …` to start the stream and `aa 83 …` to keep it
alive; the meter answers with 64-byte reports `aa 04` + four 15-byte samples (voltage and
current as little-endian int32 in 10 µV / 10 µA, D+ and D- in mV, a constant, the
temperature in 0.1 °C), one unknown byte and a CRC-8 (poly 0x39, init 0x42) over bytes
1..62. The last byte of each command is the same CRC. One sample is 10 ms.
"""

from __future__ import annotations

import errno
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import usb.core
import usb.util

from edge_controller.devices.clock import Clock, SystemClock
from edge_controller.usb.hub import format_location
from edge_controller.usb.types import (
    MAX_CURRENT_MA,
    MAX_VOLTAGE_MV,
    MeterError,
    MeterSample,
    UsbError,
)

FNIRSI_PACKET_SIZE = 64
FNIRSI_SAMPLE_INTERVAL_MS = 10
FNIRSI_DATA_PACKET = 0x04

# (vendor, product) → model name. The FNB58 and FNB48S want the start command twice.
FNIRSI_MODELS: dict[tuple[int, int], str] = {
    (0x0483, 0x003A): "FNB48",
    (0x0483, 0x003B): "C1",
    (0x2E3C, 0x5558): "FNB58",
    (0x2E3C, 0x0049): "FNB48S",
}
_NEWER_FIRMWARE = {"FNB58", "FNB48S"}

_HID_CLASS = 0x03
_DRAIN_PACKETS = 8
_DRAIN_TIMEOUT_MS = 5


def fnirsi_crc(data: bytes) -> int:
    """CRC-8 with polynomial 0x39 and initial value 0x42, no reflection, no final xor."""
    crc = 0x42
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x39) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def fnirsi_command(code: int) -> bytes:
    """A 64-byte command packet: 0xaa, the code, zeros, and the CRC of bytes 1..62."""
    body = bytes([0xAA, code]) + bytes(61)
    return body + bytes([fnirsi_crc(body[1:])])


@dataclass(frozen=True, slots=True)
class FnirsiSample:
    """One 10 ms sample from a FNIRSI report, in the meter's own units converted to mV/mA."""

    voltage_uv: int  # microvolts (the meter's unit is 10 µV)
    current_ua: int  # microamps (the meter's unit is 10 µA)
    dp_mv: int
    dn_mv: int
    temperature_dc: int  # tenths of a degree Celsius

    @property
    def power_uw(self) -> int:
        """Power in microwatts."""
        return self.voltage_uv * self.current_ua // 1_000_000


def decode_fnirsi_packet(packet: bytes, *, check_crc: bool) -> list[FnirsiSample] | None:
    """The four samples of a data report; None for reports that carry no samples.

    Raises MeterError("meter_failed") for a malformed report or a wrong CRC.
    """
    if len(packet) != FNIRSI_PACKET_SIZE or packet[0] != 0xAA:
        raise MeterError(
            f"the meter sent a malformed report ({len(packet)} bytes, starting "
            f"{packet[:2].hex() or 'empty'})",
            code="meter_failed",
        )
    if packet[1] != FNIRSI_DATA_PACKET:
        return None
    if check_crc and fnirsi_crc(packet[1:63]) != packet[63]:
        raise MeterError(
            f"a meter report failed its CRC check (got {packet[63]:02x}, "
            f"expected {fnirsi_crc(packet[1:63]):02x})",
            code="meter_failed",
        )
    samples = []
    for index in range(4):
        voltage, current, dp, dn, _constant, temperature = struct.unpack_from(
            "<iiHHBH", packet, 2 + 15 * index
        )
        samples.append(
            FnirsiSample(
                voltage_uv=voltage * 10,
                current_ua=current * 10,
                dp_mv=dp,
                dn_mv=dn,
                temperature_dc=temperature,
            )
        )
    return samples


def check_plausible(voltage_mv: int, current_ma: int, source: str) -> None:
    """Raise MeterError("meter_absurd") for values no USB port can carry."""
    if (
        voltage_mv < 0
        or current_ma < 0
        or voltage_mv > MAX_VOLTAGE_MV
        or current_ma > MAX_CURRENT_MA
    ):
        raise MeterError(
            f"{source} reports {voltage_mv / 1000:.3f} V and {current_ma / 1000:.3f} A, which "
            f"no USB port carries (0..{MAX_VOLTAGE_MV // 1000} V, 0..{MAX_CURRENT_MA // 1000} A)",
            code="meter_absurd",
        )


class _EnergyCounter:
    """Cumulative energy from power readings over clock time (trapezoids), monotonic."""

    def __init__(self) -> None:
        self._energy_uwh = 0.0
        self._last: tuple[int, int] | None = None  # (time_ms, power_mw)

    def add(self, time_ms: int, power_mw: int) -> int:
        if self._last is not None:
            last_ms, last_mw = self._last
            elapsed_ms = max(0, time_ms - last_ms)
            self._energy_uwh += (last_mw + power_mw) / 2 * elapsed_ms / 3600.0
        self._last = (time_ms, power_mw)
        return int(self._energy_uwh // 1000)


def _clock_for(backend: Any, clock: Clock | None) -> Clock:
    # A backend that keeps its own time (the virtual USB world) lends its clock.
    if clock is not None:
        return clock
    lent = getattr(backend, "clock", None)
    return lent if lent is not None else SystemClock()


class FnirsiMeter:
    """An FNIRSI FNB48 / FNB58 / C1 / FNB48S USB meter, read over its HID interface."""

    def __init__(
        self,
        device: Any,
        *,
        clock: Clock | None = None,
        timeout_ms: int = 1000,
        check_crc: bool | None = None,
    ) -> None:
        self._device = device
        self._clock = _clock_for(device.backend, clock)
        self._timeout_ms = timeout_ms
        key = (int(device.idVendor), int(device.idProduct))
        self._model = FNIRSI_MODELS.get(key, "USB meter")
        # The newer meters always send the CRC; for the others it is not documented.
        self._check_crc = self._model in _NEWER_FIRMWARE if check_crc is None else check_crc
        self._lock = threading.Lock()
        self._energy = _EnergyCounter()
        self._started = False
        self._endpoint_in: Any = None
        self._endpoint_out: Any = None
        self._location = f"bus {device.bus} port " + (
            ".".join(str(p) for p in (device.port_numbers or ())) or "?"
        )

    @property
    def description(self) -> str:
        """For people: "FNIRSI FNB58 (2e3c:5558) on bus 1 port 2"."""
        return (
            f"FNIRSI {self._model} ({int(self._device.idVendor):04x}:"
            f"{int(self._device.idProduct):04x}) on {self._location}"
        )

    def read(self) -> MeterSample:
        """Send the keep-alive, read the freshest report, and add its power to the energy."""
        with self._lock:
            try:
                if not self._started:
                    self._start()
                self._endpoint_out.write(fnirsi_command(0x83), self._timeout_ms)
                samples = self._freshest_samples()
            except usb.core.USBError as error:
                self._started = False
                if getattr(error, "errno", None) == errno.ENODEV:
                    raise MeterError(
                        f"{self.description} is gone from the bus", code="meter_missing"
                    ) from error
                raise MeterError(
                    f"{self.description} failed: {error}", code="meter_failed"
                ) from error
            for sample in samples:
                check_plausible(
                    sample.voltage_uv // 1000, sample.current_ua // 1000, self.description
                )
            voltage_mv = sum(s.voltage_uv for s in samples) // len(samples) // 1000
            current_ma = sum(s.current_ua for s in samples) // len(samples) // 1000
            power_mw = sum(s.power_uw for s in samples) // len(samples) // 1000
            now_ms = self._clock.now_ms()
            energy_mwh = self._energy.add(now_ms, power_mw)
            return MeterSample(
                time_ms=now_ms,
                voltage_mv=voltage_mv,
                current_ma=current_ma,
                power_mw=power_mw,
                energy_mwh=energy_mwh,
            )

    def close(self) -> None:
        """Let go of the device so the kernel driver or another program may have it."""
        with self._lock:
            usb.util.dispose_resources(self._device)
            self._started = False

    def _start(self) -> None:
        device = self._device
        interface_number = None
        for configuration in device:
            for interface in configuration:
                if interface_number is None and interface.bInterfaceClass == _HID_CLASS:
                    interface_number = interface.bInterfaceNumber
                try:
                    if device.is_kernel_driver_active(interface.bInterfaceNumber):
                        device.detach_kernel_driver(interface.bInterfaceNumber)
                except NotImplementedError:
                    pass  # backends without kernel drivers (Windows, macOS) have nothing to detach
        if interface_number is None:
            raise MeterError(f"{self.description} has no HID interface", code="meter_missing")
        try:
            configuration = device.get_active_configuration()
        except usb.core.USBError:
            device.set_configuration()
            configuration = device.get_active_configuration()
        interface = configuration[(interface_number, 0)]
        self._endpoint_in = usb.util.find_descriptor(
            interface,
            custom_match=lambda e: (
                usb.util.endpoint_direction(e.bEndpointAddress) == usb.util.ENDPOINT_IN
            ),
        )
        self._endpoint_out = usb.util.find_descriptor(
            interface,
            custom_match=lambda e: (
                usb.util.endpoint_direction(e.bEndpointAddress) == usb.util.ENDPOINT_OUT
            ),
        )
        if self._endpoint_in is None or self._endpoint_out is None:
            raise MeterError(
                f"{self.description} lacks the HID in/out endpoints", code="meter_missing"
            )
        usb.util.claim_interface(device, interface_number)
        self._endpoint_out.write(fnirsi_command(0x81), self._timeout_ms)
        self._endpoint_out.write(fnirsi_command(0x82), self._timeout_ms)
        second = 0x82 if self._model in _NEWER_FIRMWARE else 0x83
        self._endpoint_out.write(fnirsi_command(second), self._timeout_ms)
        self._started = True

    def _freshest_samples(self) -> list[FnirsiSample]:
        """Wait up to the timeout for a data report, then drain what is queued behind it."""
        latest: list[FnirsiSample] | None = None
        crc_failures = 0
        timeout = self._timeout_ms
        for _ in range(_DRAIN_PACKETS + 4):
            try:
                packet = bytes(self._endpoint_in.read(FNIRSI_PACKET_SIZE, timeout))
            except usb.core.USBTimeoutError:
                break
            try:
                samples = decode_fnirsi_packet(packet, check_crc=self._check_crc)
            except MeterError:
                crc_failures += 1
                continue
            if samples is None:
                continue  # a status report, not samples
            latest = samples
            timeout = _DRAIN_TIMEOUT_MS  # from now on only take what is already queued
        if latest is None:
            if crc_failures:
                raise MeterError(
                    f"{self.description}: every report failed its check ({crc_failures})",
                    code="meter_failed",
                )
            raise MeterError(
                f"{self.description} sent no data within {self._timeout_ms} ms",
                code="meter_failed",
            )
        return latest


def _read_number(path: Path, units: Mapping[str, int]) -> int:
    """Read "5000mV" / "3000mA" / "5000000" style sysfs values, scaled by a unit table."""
    text = path.read_text().strip()
    for suffix, scale in sorted(units.items(), key=lambda item: -len(item[0])):
        if suffix and text.endswith(suffix):
            return int(text[: -len(suffix)].strip()) * scale
    return int(text) * units[""]


_TYPEC_CURRENT_MA = {"default": 500, "1.5A": 1500, "3.0A": 3000}


class TypecMeter:
    """Power from the USB Type-C / USB-PD contract Linux exposes in sysfs.

    This is the negotiated contract (the most the port may deliver), not a measurement:
    a phone that draws less is still counted at the contract. `power_supply` names a
    `/sys/class/power_supply` entry (e.g. UCSI's) whose voltage_now/current_now are used
    when present; otherwise the Type-C current mode or the PD object at position `pdo`
    of the port's source capabilities gives voltage and current. `root` is the
    file-system root, so tests can point it at a temporary tree.
    """

    def __init__(
        self,
        port: str = "port0",
        *,
        root: str | Path = "/",
        clock: Clock | None = None,
        pdo: int = 1,
        power_supply: str | None = None,
    ) -> None:
        self._root = Path(root)
        self._port = port
        self._port_dir = self._root / "sys" / "class" / "typec" / port
        self._clock = clock or SystemClock()
        self._pdo = pdo
        self._power_supply = power_supply
        self._lock = threading.Lock()
        self._energy = _EnergyCounter()
        if not self._port_dir.is_dir():
            raise MeterError(
                f"no USB Type-C port {port} ({self._port_dir} is missing)", code="meter_missing"
            )

    @property
    def description(self) -> str:
        """For people: "USB-PD contract of Type-C port0 (not a measurement)"."""
        return f"USB-PD contract of Type-C {self._port} (not a measurement)"

    def read(self) -> MeterSample:
        """The contract's voltage and current now, and the energy integrated over time."""
        with self._lock:
            try:
                voltage_mv, current_ma = self._contract()
            except (OSError, ValueError) as error:
                raise MeterError(
                    f"cannot read the contract of Type-C {self._port}: {error}",
                    code="meter_failed",
                ) from error
            check_plausible(voltage_mv, current_ma, self.description)
            power_mw = voltage_mv * current_ma // 1000
            now_ms = self._clock.now_ms()
            return MeterSample(
                time_ms=now_ms,
                voltage_mv=voltage_mv,
                current_ma=current_ma,
                power_mw=power_mw,
                energy_mwh=self._energy.add(now_ms, power_mw),
            )

    def _contract(self) -> tuple[int, int]:
        if not (self._port_dir / f"{self._port}-partner").exists():
            return 0, 0  # nothing attached, nothing delivered
        if self._power_supply is not None:
            supply = self._root / "sys" / "class" / "power_supply" / self._power_supply
            online = supply / "online"
            if online.exists() and online.read_text().strip() == "0":
                return 0, 0
            micro = {"": 1}
            return (
                _read_number(supply / "voltage_now", micro) // 1000,
                _read_number(supply / "current_now", micro) // 1000,
            )
        mode = (self._port_dir / "power_operation_mode").read_text().strip()
        if mode in _TYPEC_CURRENT_MA:
            return 5000, _TYPEC_CURRENT_MA[mode]
        if mode != "usb_power_delivery":
            raise ValueError(f"unknown power_operation_mode {mode!r}")
        capabilities = self._pd_dir() / "source-capabilities"
        matches = sorted(capabilities.glob(f"{self._pdo}:*"))
        if not matches:
            raise ValueError(f"no PD object {self._pdo} in {capabilities}")
        pdo = matches[0]
        voltage_file = pdo / "voltage" if (pdo / "voltage").exists() else pdo / "maximum_voltage"
        return (
            _read_number(voltage_file, {"mV": 1, "": 1}),
            _read_number(pdo / "maximum_current", {"mA": 1, "": 1}),
        )

    def _pd_dir(self) -> Path:
        link = self._port_dir / "usb_power_delivery"
        if link.exists():
            return link
        classes = self._root / "sys" / "class" / "usb_power_delivery"
        found = sorted(classes.glob("pd*"))
        if not found:
            raise ValueError(f"no USB Power Delivery objects under {classes}")
        return found[0]


def open_meter(
    config: Mapping[str, Any], backend: Any = None, *, clock: Clock | None = None
) -> FnirsiMeter | TypecMeter:
    """Open the meter the configuration names.

    `{"type": "fnirsi"}` (optional "vendor_id", "product_id", "location" such as "1-2")
    finds an FNIRSI meter over pyusb with `backend` (libusb when None); `{"type": "typec",
    "typec_port": "port0"}` (optional "root", "pdo", "power_supply") reads the PD contract.
    The clock defaults to the backend's own (the virtual world) or the system clock.
    """
    # "port" is left to the caller: it names the hub port the meter stands in front of.
    kind = str(config.get("type", "fnirsi")).lower()
    if kind == "typec":
        return TypecMeter(
            str(config.get("typec_port", "port0")),
            root=str(config.get("root", "/")),
            clock=clock,
            pdo=int(config.get("pdo", 1)),
            power_supply=config.get("power_supply"),
        )
    if kind != "fnirsi":
        raise UsbError(
            f"meter type {kind!r} is not known (use 'fnirsi' or 'typec')", code="invalid_config"
        )
    vendor_id = config.get("vendor_id")
    product_id = config.get("product_id")
    location = config.get("location")

    def matches(device: Any) -> bool:
        key = (int(device.idVendor), int(device.idProduct))
        if vendor_id is not None or product_id is not None:
            if vendor_id is not None and key[0] != int(vendor_id):
                return False
            if product_id is not None and key[1] != int(product_id):
                return False
        elif key not in FNIRSI_MODELS:
            return False
        if location is not None:
            path = tuple(device.port_numbers or ())
            if format_location(int(device.bus or 0), path) != str(location):
                return False
        return True

    try:
        device = usb.core.find(backend=backend, custom_match=matches)
    except usb.core.NoBackendError as error:
        raise MeterError(
            f"no USB access on this machine (libusb missing?): {error}", code="meter_missing"
        ) from error
    if device is None:
        raise MeterError(
            "no FNIRSI USB meter (FNB48, FNB58, C1) is connected", code="meter_missing"
        )
    return FnirsiMeter(device, clock=_clock_for(backend, clock))
