"""The device layer: read and command inverters, batteries and fuel cells over MQTT.

- `capabilities`: small Protocols (PowerMeter, Battery, ExportLimiter, ...);
- `profiles`: data mapping MQTT topics to quantities and commands (generic, OpenDTU, Victron);
- `adapter` and `mqtt_capabilities`: `MqttDevice` and the capability objects it offers;
- `mqtt`: the seam to an `aiomqtt.Client` (`run_participants`);
"""

from edge_controller.devices.adapter import (
    DeviceCommandError,
    DeviceStats,
    MqttDevice,
)
from edge_controller.devices.capabilities import (
    Battery,
    ControllableGenerator,
    EnergyMeter,
    ExportLimiter,
    FuelCellState,
    FuelCellTelemetry,
    PowerMeter,
)
from edge_controller.devices.clock import Clock, SimulatedClock, SystemClock
from edge_controller.devices.mqtt import (
    MqttParticipant,
    Publisher,
    run_participants,
    serve_on_broker,
)
from edge_controller.devices.mqtt_capabilities import DeviceCapabilities, capabilities_of
from edge_controller.devices.profiles import (
    Command,
    Profile,
    ProfileError,
    ProfileSettings,
    Quantity,
    opendtu_profile,
    profile_from_config,
    simple_generic_profile,
    victron_profile,
)
from edge_controller.devices.samples import Sample

__all__ = [
    "Battery",
    "Clock",
    "Command",
    "ControllableGenerator",
    "DeviceCapabilities",
    "DeviceCommandError",
    "DeviceStats",
    "EnergyMeter",
    "ExportLimiter",
    "FuelCellState",
    "FuelCellTelemetry",
    "MqttDevice",
    "MqttParticipant",
    "PowerMeter",
    "Profile",
    "ProfileError",
    "ProfileSettings",
    "Publisher",
    "Quantity",
    "Sample",
    "SimulatedClock",
    "SystemClock",
    "capabilities_of",
    "opendtu_profile",
    "profile_from_config",
    "run_participants",
    "serve_on_broker",
    "simple_generic_profile",
    "victron_profile",
]
