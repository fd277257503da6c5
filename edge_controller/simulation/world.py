"""One home's simulated world: its devices on the device broker, its virtual USB hub, and the
control topics that act on both.

The home's edge controller meets this world only where it meets real hardware: it reads
and commands the device simulators over MQTT, and it finds the virtual hub and meter on
`usb_backend`, the pyusb backend handed to `Home` in place of libusb.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge_controller.devices import Clock, MqttParticipant, serve_on_broker
from edge_controller.simulation.control import SimulationControl
from edge_controller.simulation.mqtt_device import SimulatedMqttDevice
from edge_controller.simulation.usb_world import VirtualUsbWorld


class SimulatedHome:
    """The simulated hardware of the home `slug`, and its control topics under `prefix`."""

    def __init__(
        self,
        prefix: str,
        slug: str,
        devices: Mapping[str, SimulatedMqttDevice],
        usb: VirtualUsbWorld | None,
        clock: Clock,
    ) -> None:
        self.prefix = prefix
        self.slug = slug
        self.devices = dict(devices)
        self.usb = usb
        self.control = SimulationControl(prefix, slug, self.devices, usb, clock)

    @property
    def usb_backend(self) -> Any:
        """The pyusb backend the home finds its (virtual) hub and meter on, if it has one."""
        return self.usb.backend if self.usb is not None else None

    def participants(self) -> list[MqttParticipant]:
        """Everything of this world that lives on the device broker."""
        return [*self.devices.values(), self.control]

    @property
    def connected(self) -> bool:
        """Whether every device and the control topics are on the broker."""
        return all(d.connected for d in self.devices.values()) and self.control.connected


async def serve_worlds(
    host: str, port: int, worlds: list[SimulatedHome], tick_interval_s: float = 1.0
) -> None:
    """Run `worlds` on the device broker at `host`:`port` (one connection) until cancelled."""
    participants = [p for world in worlds for p in world.participants()]
    await serve_on_broker(host, port, participants, tick_interval_s=tick_interval_s)
