"""What every device adapter answers, whatever carries its telemetry (MQTT, Modbus TCP,
Home Assistant): the latest value of each quantity, the commands it takes, and a snapshot
for `GET devices`. The capability objects (`capabilities_of`) are built on this alone.
"""

from __future__ import annotations

from typing import Any, Protocol

from edge_controller.devices.profiles import Command, Quantity
from edge_controller.devices.samples import Sample


class Device(Protocol):
    """A device as the rest of the app reads and commands it."""

    device_id: str

    @property
    def connected(self) -> bool:
        """Whether commands can be sent now."""
        ...

    def quantities(self) -> frozenset[Quantity]:
        """Every quantity the device can report (by telemetry or as a constant)."""
        ...

    def number(self, quantity: Quantity) -> Sample[int] | None:
        """The latest numeric value of `quantity` (W, Wh, %, g), or None."""
        ...

    def text(self, quantity: Quantity) -> Sample[str] | None:
        """The latest text value of `quantity`, or None."""
        ...

    def codes(self, quantity: Quantity) -> Sample[tuple[str, ...]] | None:
        """The latest list of codes of `quantity`, or None."""
        ...

    def source_of(self, quantity: Quantity) -> str | None:
        """Where `quantity` is read (a topic and path, a Modbus unit, an entity); None for a
        constant or a quantity not read. Two devices configured on one physical device (a
        GX's battery and PV) read its one grid meter: the same source counts the same Wh."""
        ...

    def supports(self, command: Command) -> bool:
        """Whether the device takes `command`."""
        ...

    async def send(self, command: Command, value: int) -> None:
        """Send `command` with its integer value; raises `DeviceCommandError` on failure."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """Every current value with its age and freshness (and any problem), for the API."""
        ...
