"""The simulated world: what stands in for a home's hardware in tests, benchmarks and the demo.

Production code never imports this package; the simulated world reaches a home only the
way real hardware does: device simulators speak MQTT on the device broker in a profile's
layout, and the virtual USB world is a pyusb backend handed to the home's USB opener.

- `models`, `site`: physics of PV, battery, fuel cell, household load and a whole site;
- `mqtt_device`: `SimulatedMqttDevice`, a model on MQTT as a profile describes it;
- `phone`, `usb_devices`, `usb_world`: the virtual USB world (hub, meter, phones) and its
  pyusb backend;
- `control`: the simulation control topics on the device broker (plug and unplug a phone,
  change a simulated device's state), so the world is acted on from outside the process;
- `home`: one home's simulated hardware, served on the broker with its control topics;
- `plan`: the demo's homes (hardware, devices, resources, owners' policies).
"""

from edge_controller.simulation.models import (
    HYDROGEN_EMPTY,
    BatteryModel,
    FuelCellModel,
    PvInverter,
    SimulatedHardware,
    TelemetryValue,
    Weather,
)
from edge_controller.simulation.mqtt_device import SimulatedMqttDevice
from edge_controller.simulation.phone import PD_MAX_CURRENT_A, PD_VOLTAGES_MV, VirtualPhone
from edge_controller.simulation.site import HouseholdLoad, SimulatedSite
from edge_controller.simulation.usb_world import VirtualUsbBackend, VirtualUsbWorld

__all__ = [
    "HYDROGEN_EMPTY",
    "PD_MAX_CURRENT_A",
    "PD_VOLTAGES_MV",
    "BatteryModel",
    "FuelCellModel",
    "HouseholdLoad",
    "PvInverter",
    "SimulatedHardware",
    "SimulatedMqttDevice",
    "SimulatedSite",
    "TelemetryValue",
    "VirtualPhone",
    "VirtualUsbBackend",
    "VirtualUsbWorld",
    "Weather",
]
