"""How the owner runs the USB ports: the `usb:` section of edge.yaml as charging reads it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UsbSettings:
    """How the owner runs the USB ports (the `usb:` section of edge.yaml)."""

    ports: tuple[int, ...] = (1,)
    price: int = 2_000  # milli-units per kWh
    free_trickle_mw: int | None = None  # None: unknown phones stay unpowered
    max_session_ms: int = 4 * 3_600_000
    watchdog_ms: int = 5_000
    auto_purchase_wh: int = 0  # bought on attach for a bound phone (0: only through the API)
    resource_prefix: str = "usb"
    interval_ms: int = 1_000
    reopen_ms: int = 10_000  # how often a missing hub or meter is looked for again

    def resource(self, port: int) -> str:
        """The ledger resource id of a port."""
        return f"{self.resource_prefix}/usb-{port}"
