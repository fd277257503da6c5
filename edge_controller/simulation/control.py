"""Simulation control topics: the simulated world acted on from outside the process.

A person plugs a phone into a real hub or a cloud passes over real panels; a simulated
home is acted on the same way, from any MQTT client on its device broker, so tests and the
demo drive it as a person would and nothing reaches into the process. Under
`<prefix>/sim/<home>/` (`<home>` is the home's slug):

- `usb/<port>/plug`: plug a phone into that port of the virtual hub. The payload is the
  phone's identity and battery as a JSON object, every field optional (`{}` plugs the
  default phone): `vendor_id`, `product_id` (integers, or hex text such as "18d1"),
  `serial`, `manufacturer`, `product`, `battery_wh`, `soc_percent`, `max_power_w` and
  `pd_voltage_mv` (its USB-PD contract: 5000, 9000, 15000 or 20000; `max_power_w` must fit
  it at 5 A).
- `usb/<port>/unplug`: pull out whatever is plugged into that port (any payload).
- `device/<device>/set`: change a simulated device's state; a JSON object of any of the
  settings that device has (`settings_of`): `irradiance_percent` (PV: the share of
  clear-sky sunshine, or null for the weather's), `producing` (PV on or off),
  `soc_percent` (battery), `hydrogen_g` and `fault` (fuel cell: a fault code, or null to
  clear faults).

What the world cannot act on (an unknown device, a busy port, a bad payload) is logged and
answered on `<prefix>/sim/<home>/error` with the topic and each problem as
"field: what was expected".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client
from paho.mqtt.enums import CallbackAPIVersion

from edge_controller.devices.clock import Clock
from edge_controller.devices.mqtt import Publisher
from edge_controller.simulation.models import (
    BatteryModel,
    FuelCellModel,
    PvInverter,
    SimulatedHardware,
)
from edge_controller.simulation.mqtt_device import SimulatedMqttDevice
from edge_controller.simulation.phone import PD_MAX_CURRENT_A, PD_VOLTAGES_MV, VirtualPhone
from edge_controller.simulation.site import SimulatedSite
from edge_controller.simulation.usb_world import VirtualUsbWorld

log = logging.getLogger(__name__)


class SimulationInputError(Exception):
    """A control message the world cannot act on; `problems` lists 'field: expected'."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def control_root(prefix: str, home: str) -> str:
    """The topic every control topic of `home` begins with."""
    return f"{prefix}/sim/{home}"


def plug_topic(prefix: str, home: str, port: int) -> str:
    """Where a phone is plugged into `port` of `home`'s virtual hub."""
    return f"{control_root(prefix, home)}/usb/{port}/plug"


def unplug_topic(prefix: str, home: str, port: int) -> str:
    """Where whatever is in `port` of `home`'s virtual hub is pulled out."""
    return f"{control_root(prefix, home)}/usb/{port}/unplug"


def set_topic(prefix: str, home: str, device: str) -> str:
    """Where the state of `home`'s simulated `device` is changed."""
    return f"{control_root(prefix, home)}/device/{device}/set"


def _is_number(value: Any, low: float, high: float) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and low <= value <= high


def _usb_id(value: Any) -> int | None:
    if isinstance(value, str):
        try:
            value = int(value.removeprefix("0x"), 16)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        return None
    return value


PHONE_TEXTS = (("serial", "VIRTUAL0001"), ("manufacturer", "Google"), ("product", "Pixel"))
PHONE_FIELDS = (
    "vendor_id",
    "product_id",
    "serial",
    "manufacturer",
    "product",
    "battery_wh",
    "soc_percent",
    "max_power_w",
    "pd_voltage_mv",
)


def phone_from_json(data: Any) -> VirtualPhone:
    """The phone a plug message describes (defaults: a 15 Wh Google Pixel at 20 % on a 5 V,
    15 W contract); `SimulationInputError` lists every mistake."""
    if not isinstance(data, Mapping):
        raise SimulationInputError(["(payload): expected a JSON object"])
    problems = [
        f"{key}: unknown field; expected one of {', '.join(PHONE_FIELDS)}"
        for key in data
        if key not in PHONE_FIELDS
    ]
    ids: dict[str, int] = {}
    for key, default_id in (("vendor_id", 0x18D1), ("product_id", 0x4EE7)):
        found = _usb_id(data.get(key, default_id))
        if found is None:
            problems.append(f"{key}: expected a USB id from 0 to 0xffff (or hex text)")
        ids[key] = found if found is not None else default_id
    texts: dict[str, str] = {}
    for key, default_text in PHONE_TEXTS:
        value = data.get(key, default_text)
        if not isinstance(value, str) or not value:
            problems.append(f"{key}: expected a non-empty text")
            value = default_text
        texts[key] = value
    battery_wh = data.get("battery_wh", 15)
    if not _is_number(battery_wh, 1, 200):
        problems.append("battery_wh: expected a number from 1 to 200")
        battery_wh = 15
    soc_percent = data.get("soc_percent", 20)
    if not _is_number(soc_percent, 0, 100):
        problems.append("soc_percent: expected a number from 0 to 100")
        soc_percent = 20
    max_power_w = data.get("max_power_w", 15)
    if not _is_number(max_power_w, 1, 100):
        problems.append("max_power_w: expected a number from 1 to 100")
        max_power_w = 15
    pd_voltage_mv = data.get("pd_voltage_mv", PD_VOLTAGES_MV[0])
    if type(pd_voltage_mv) is not int or pd_voltage_mv not in PD_VOLTAGES_MV:
        volts = ", ".join(str(v) for v in PD_VOLTAGES_MV)
        problems.append(f"pd_voltage_mv: expected a USB-PD voltage: {volts}")
    elif max_power_w > pd_voltage_mv / 1000 * PD_MAX_CURRENT_A:
        problems.append(
            f"max_power_w: {max_power_w} W at {pd_voltage_mv} mV needs more than"
            f" {PD_MAX_CURRENT_A:g} A; raise pd_voltage_mv"
        )
    if problems:
        raise SimulationInputError(problems)
    return VirtualPhone(
        ids["vendor_id"],
        ids["product_id"],
        texts["serial"],
        texts["manufacturer"],
        texts["product"],
        battery_wh=float(battery_wh),
        soc=soc_percent / 100,
        max_power_w=float(max_power_w),
        pd_voltage_mv=pd_voltage_mv,
    )


@dataclass(frozen=True)
class Setting:
    """One state of a simulated device that can be set from outside."""

    expected: str
    accepts: Callable[[Any], bool]
    apply: Callable[[Any], None]


def settings_of(hardware: SimulatedHardware) -> dict[str, Setting]:
    """What can be set on `hardware` through its `set` topic, by name."""
    if isinstance(hardware, SimulatedSite):
        return {**settings_of(hardware.pv), **settings_of(hardware.battery)}
    if isinstance(hardware, PvInverter):
        pv = hardware

        def irradiance(value: Any) -> None:
            pv.irradiance = None if value is None else value / 100

        def producing(value: Any) -> None:
            pv.producing = value

        return {
            "irradiance_percent": Setting(
                "a number from 0 to 100, or null for the weather's",
                lambda v: v is None or _is_number(v, 0, 100),
                irradiance,
            ),
            "producing": Setting("true or false", lambda v: isinstance(v, bool), producing),
        }
    if isinstance(hardware, BatteryModel):
        return {
            "soc_percent": Setting(
                "a number from 0 to 100", lambda v: _is_number(v, 0, 100), hardware.set_soc
            )
        }
    if isinstance(hardware, FuelCellModel):
        return {
            "hydrogen_g": Setting(
                "a number of grams from 0 to 1000000",
                lambda v: _is_number(v, 0, 1_000_000),
                hardware.set_hydrogen,
            ),
            "fault": Setting(
                "a fault code (text), or null to clear the faults",
                lambda v: v is None or (isinstance(v, str) and bool(v)),
                hardware.fault,
            ),
        }
    return {}


def apply_settings(hardware: SimulatedHardware, changes: Any) -> None:
    """Check every change against `settings_of(hardware)`, then apply them all (or none:
    `SimulationInputError` lists every mistake)."""
    if not isinstance(changes, Mapping) or not changes:
        raise SimulationInputError(["(payload): expected a JSON object of settings"])
    settings = settings_of(hardware)
    known = ", ".join(sorted(settings)) or "nothing (this device has no settings)"
    problems = []
    for name, value in changes.items():
        setting = settings.get(name)
        if setting is None:
            problems.append(f"{name}: unknown setting; expected one of {known}")
        elif not setting.accepts(value):
            problems.append(f"{name}: expected {setting.expected}")
    if problems:
        raise SimulationInputError(problems)
    for name, value in changes.items():
        settings[name].apply(value)


class SimulationControl:
    """The control topics of one simulated home, as an `MqttParticipant` on its device broker."""

    def __init__(
        self,
        prefix: str,
        home: str,
        devices: Mapping[str, SimulatedMqttDevice],
        usb: VirtualUsbWorld | None,
        clock: Clock,
    ) -> None:
        self.root = control_root(prefix, home)
        self.devices = dict(devices)
        self.usb = usb
        self.clock = clock
        self.handled = 0
        self._publisher: Publisher | None = None

    def subscriptions(self) -> Sequence[str]:
        """The plug, unplug and set topics of this home."""
        return [
            f"{self.root}/usb/+/plug",
            f"{self.root}/usb/+/unplug",
            f"{self.root}/device/+/set",
        ]

    @property
    def connected(self) -> bool:
        """Whether the control topics are subscribed on the broker."""
        return self._publisher is not None

    async def on_connect(self, publisher: Publisher) -> None:
        """Keep the publisher for the answers to messages it cannot act on."""
        self._publisher = publisher

    def on_disconnect(self) -> None:
        """Nothing is answered until the next connect."""
        self._publisher = None

    async def on_tick(self) -> None:
        """The world keeps its own time; nothing to do."""

    async def on_message(self, topic: str, payload: bytes) -> None:
        """Act on one control message; answer on the error topic when it cannot."""
        parts = topic.removeprefix(self.root + "/").split("/")
        try:
            if parts[0] == "usb" and len(parts) == 3:
                self._usb(parts[1], parts[2], payload)
            elif parts[0] == "device" and len(parts) == 3:
                await self._set(parts[1], payload)
            else:
                raise SimulationInputError([f"(topic): {topic} is no control topic"])
        except SimulationInputError as exc:
            log.warning("simulation: %s refused: %s", topic, exc)
            if self._publisher is not None:
                answer = {"topic": topic, "problems": exc.problems}
                await self._publisher.publish(f"{self.root}/error", json.dumps(answer).encode())
            return
        self.handled += 1
        log.info("simulation: %s done", topic)

    def _usb(self, port_text: str, action: str, payload: bytes) -> None:
        world = self.usb
        if world is None:
            raise SimulationInputError(["(topic): this home has no virtual USB hub"])
        ports = len(world.hub.ports)
        if not port_text.isdigit() or not 1 <= int(port_text) <= ports:
            raise SimulationInputError([f"(topic): the hub has ports 1 to {ports}"])
        port = int(port_text)
        if action == "unplug":
            world.unplug(port)
            return
        phone = phone_from_json(_json(payload or b"{}"))
        if world.phone(port) is not None:
            raise SimulationInputError([f"(topic): port {port} has a phone; unplug it first"])
        world.plug(port, phone)

    async def _set(self, device_id: str, payload: bytes) -> None:
        device = self.devices.get(device_id)
        if device is None:
            known = ", ".join(sorted(self.devices)) or "none"
            raise SimulationInputError([f"(topic): no device {device_id!r}; this home has {known}"])
        # The physics up to now under the old state, then the new state from now on.
        device.hardware.advance_to(self.clock.now_ms())
        apply_settings(device.hardware, _json(payload))
        await device.publish_telemetry()


def _json(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError as exc:
        raise SimulationInputError([f"(payload): not JSON ({exc})"]) from None


def send_control(host: str, port: int, messages: Sequence[tuple[str, Any]]) -> None:
    """Publish control messages (topic, payload as JSON; None: empty) to the broker at
    `host`:`port` and return once the broker has each; blocking, for code without a loop."""
    client = paho.mqtt.client.Client(CallbackAPIVersion.VERSION2)
    client.connect(host, port)
    client.loop_start()
    try:
        for topic, payload in messages:
            body = b"" if payload is None else json.dumps(payload).encode()
            client.publish(topic, body, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
