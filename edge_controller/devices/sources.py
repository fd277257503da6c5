"""Where a device's telemetry comes from, chosen by `profile:` in `edge.yaml`: an MQTT
profile (generic, OpenDTU, Victron), a SunSpec device on Modbus TCP, or entities relayed by
Home Assistant. `open_device` builds the adapter each source needs; all of them are a
`Device` to the rest of the app.
"""

from __future__ import annotations

from edge_controller.devices.adapter import MqttDevice
from edge_controller.devices.clock import Clock
from edge_controller.devices.device import Device
from edge_controller.devices.homeassistant import (
    HomeAssistantDevice,
    HomeAssistantProfileSettings,
    HomeAssistantSource,
)
from edge_controller.devices.profiles import (
    GenericProfileSettings,
    OpenDtuProfileSettings,
    Profile,
    VictronProfileSettings,
)
from edge_controller.devices.sunspec import SunSpecDevice, SunSpecProfileSettings, SunSpecSource

DeviceSettings = (
    GenericProfileSettings
    | OpenDtuProfileSettings
    | VictronProfileSettings
    | SunSpecProfileSettings
    | HomeAssistantProfileSettings
)
DeviceSource = Profile | SunSpecSource | HomeAssistantSource


def open_device(
    device_id: str, source: DeviceSource, clock: Clock, stale_after_ms: int = 30_000
) -> Device:
    """The adapter that reads and commands a device from `source`."""
    if isinstance(source, SunSpecSource):
        return SunSpecDevice(device_id, source, clock, stale_after_ms=stale_after_ms)
    if isinstance(source, HomeAssistantSource):
        return HomeAssistantDevice(device_id, source, clock, stale_after_ms=stale_after_ms)
    return MqttDevice(device_id, source, clock, stale_after_ms=stale_after_ms)
