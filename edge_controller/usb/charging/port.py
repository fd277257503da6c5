"""One port as every charging part sees it: what is plugged in, what the meter said, the
session running on it; and the plausibility check of a meter sample."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from edge_controller.usb.store import SessionRow
from edge_controller.usb.types import (
    MAX_CURRENT_MA,
    MAX_POWER_MW,
    MAX_VOLTAGE_MV,
    MeterSample,
    UsbError,
    UsbIdentity,
)

Publish = Callable[[str, dict[str, Any], int], None]


@dataclass
class PortState:
    """What is known about one port right now."""

    port: int
    resource: str
    enabled: bool = True
    powered: bool = False
    connected: bool = False
    device: UsbIdentity | None = None
    wallet: str | None = None  # the attached phone's bound wallet, looked up once on attach
    since: int | None = None
    pairing_code: str | None = None
    sample: MeterSample | None = None
    last_valid_ms: int = 0
    meter_error: UsbError | None = None
    error: UsbError | None = None
    session: SessionRow | None = None
    trickle: bool = False
    trickle_budget_mwh: float = 0.0
    trickle_paused: bool = False
    trickle_mark_mwh: int | None = None
    auto_tried: tuple[str, int | None] | None = None


class EndSession(Protocol):
    """Ends the port's session: port off, last reading, termination and settlement."""

    async def __call__(
        self, port: PortState, reason: str, error: UsbError | None = None
    ) -> SessionRow: ...


class PortLost(Protocol):
    """What happens to a port whose hub or meter left the bus."""

    async def __call__(self, port: PortState, error: UsbError) -> None: ...


def forget_device(port: PortState) -> None:
    """Nothing is plugged in (any more): the phone and what came with it are gone."""
    port.device, port.wallet, port.since, port.connected = None, None, None, False
    port.pairing_code, port.trickle = None, False


def delivered_wh(delivered_mwh: int) -> int:
    """The Wh a session's delivery counts for in the ledger (which keeps whole Wh)."""
    return (delivered_mwh + 500) // 1000


def check_sample(sample: MeterSample, previous: MeterSample | None) -> str | None:
    """Why a meter sample cannot be right, or None when it is plausible."""
    if min(sample.voltage_mv, sample.current_ma, sample.power_mw, sample.energy_mwh) < 0:
        return "negative values"
    if (
        sample.voltage_mv > MAX_VOLTAGE_MV
        or sample.current_ma > MAX_CURRENT_MA
        or sample.power_mw > MAX_POWER_MW
    ):
        return (
            f"{sample.voltage_mv} mV, {sample.current_ma} mA, {sample.power_mw} mW"
            " is beyond what USB-PD can carry"
        )
    if previous is not None:
        if sample.energy_mwh < previous.energy_mwh:
            went = f"{previous.energy_mwh} to {sample.energy_mwh} mWh"
            return f"its energy counter went back from {went}"
        elapsed = max(sample.time_ms - previous.time_ms, 1_000)
        # What 240 W could deliver in the time between the samples, plus a margin.
        if sample.energy_mwh - previous.energy_mwh > MAX_POWER_MW * elapsed // 3_600_000 + 100:
            return f"its energy counter jumped by {sample.energy_mwh - previous.energy_mwh} mWh"
    return None
