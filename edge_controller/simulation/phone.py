"""A virtual phone: a battery charging from USB VBUS on a CC/CV curve under a USB-PD contract."""

from __future__ import annotations

# USB-PD's fixed supply voltages (standard power range) and the most a 5 A e-marked cable
# carries: what a virtual phone may negotiate.
PD_VOLTAGES_MV = (5_000, 9_000, 15_000, 20_000)
PD_MAX_CURRENT_A = 5.0


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
