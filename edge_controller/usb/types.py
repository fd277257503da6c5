"""What the USB hardware layer hands to the session layer: identities, port states,
meter samples, the errors it raises and the two capabilities (port power, metering)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# What no USB port can carry: USB-PD EPR tops out at 48 V, 5 A, 240 W; the meters read up
# to 6 A and the power limit keeps a margin. Meters and the session layer both check these.
MAX_VOLTAGE_MV = 48_000
MAX_CURRENT_MA = 6_000
MAX_POWER_MW = 250_000


@dataclass(frozen=True, slots=True)
class UsbIdentity:
    """What was plugged in, as the device describes itself."""

    vendor_id: int
    product_id: int
    serial: str | None
    manufacturer: str | None
    product: str | None

    @property
    def key(self) -> str:
        """The stable key a phone is bound by: "18d1:4ee7:SERIAL" ("18d1:4ee7:-" without one)."""
        return f"{self.vendor_id:04x}:{self.product_id:04x}:{self.serial or '-'}"


@dataclass(frozen=True, slots=True)
class PortStatus:
    """One hub port as the hub reports it."""

    port: int  # 1-based hub port number
    powered: bool  # VBUS on (PORT_POWER bit)
    connected: bool  # a device is present (PORT_CONNECTION bit)
    device: UsbIdentity | None


@dataclass(frozen=True, slots=True)
class MeterSample:
    """One reading of a USB power meter."""

    time_ms: int
    voltage_mv: int
    current_ma: int
    power_mw: int
    energy_mwh: int  # cumulative since the meter started; monotonic


class UsbError(Exception):
    """A USB hardware problem, with a reason code and a message for people."""

    code: str = "usb_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message


class NoPortPowerControl(UsbError):
    """The hub cannot switch power per port (ganged or no switching)."""

    code = "no_port_power"


class HubMissing(UsbError):
    """No hub matching the configuration is on the bus."""

    code = "hub_missing"


class PortUnavailable(UsbError):
    """The port does not exist or cannot be reached."""

    code = "port_unavailable"


class MeterError(UsbError):
    """The meter failed, returned impossible values, or is missing."""

    # "meter_failed": present but silent or erring; "meter_absurd": impossible values;
    # "meter_missing": not on the bus. The raise site passes the code.
    code = "meter_failed"


class PortPower(Protocol):
    """Per-port power switching and status; blocking calls, run off the event loop."""

    def ports(self) -> list[PortStatus]:
        """The status of every port, 1..port_count."""
        ...

    def set_power(self, port: int, on: bool) -> None:
        """Switch VBUS of `port` on or off."""
        ...

    @property
    def port_count(self) -> int:
        """How many downstream ports the hub has."""
        ...

    @property
    def description(self) -> str:
        """For people, e.g. "hub 2109:2817 on bus 1 port 1.3"."""
        ...


class UsbMeter(Protocol):
    """A power meter in front of a port."""

    def read(self) -> MeterSample:
        """The latest sample; raises MeterError when it cannot."""
        ...

    @property
    def description(self) -> str:
        """For people, e.g. "FNIRSI FNB58 (2e3c:5558)"."""
        ...
