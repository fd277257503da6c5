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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import paho.mqtt.client
from paho.mqtt.enums import CallbackAPIVersion

from edge_controller.devices.clock import Clock
from edge_controller.devices.mqtt import Publisher
from edge_controller.market.checks import (
    Between,
    Check,
    Checks,
    Expect,
    NonEmpty,
    OneOf,
    ValidationError,
    from_dict,
    read,
)
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


def _usb_id(value: object) -> int | None:
    """A USB id given as an integer or as hex text ("18d1", "0x18d1"); None when it is not one."""
    if isinstance(value, str):
        try:
            value = int(value.removeprefix("0x"), 16)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        return None
    return value


def _usb_id_problems(value: object) -> Iterable[tuple[str, str]]:
    if _usb_id(value) is None:
        yield "", "expected a USB id from 0 to 0xffff (or hex text)"


UsbId = Annotated[
    int | str, Expect("a USB id from 0 to 0xffff (or hex text)"), Check(_usb_id_problems)
]
Name = Annotated[str, Expect("a non-empty text"), NonEmpty()]
PD_VOLTS = ", ".join(str(v) for v in PD_VOLTAGES_MV)


@dataclass(frozen=True)
class PlugMessage:
    """The payload of a plug message: the phone's identity, battery and USB-PD contract
    (defaults: a 15 Wh Google Pixel at 20 % on a 5 V, 15 W contract)."""

    vendor_id: UsbId = 0x18D1
    product_id: UsbId = 0x4EE7
    serial: Name = "VIRTUAL0001"
    manufacturer: Name = "Google"
    product: Name = "Pixel"
    battery_wh: Annotated[float, Between(1, 200)] = 15
    soc_percent: Annotated[float, Between(0, 100)] = 20
    max_power_w: Annotated[float, Between(1, 100)] = 15
    pd_voltage_mv: Annotated[
        int, Expect(f"a USB-PD voltage: {PD_VOLTS}"), OneOf(PD_VOLTAGES_MV)
    ] = PD_VOLTAGES_MV[0]

    def __post_init__(self) -> None:
        checks = Checks()
        checks.require(
            self.max_power_w <= self.pd_voltage_mv / 1000 * PD_MAX_CURRENT_A,
            "max_power_w",
            f"{self.max_power_w:g} W at {self.pd_voltage_mv} mV needs more than"
            f" {PD_MAX_CURRENT_A:g} A; raise pd_voltage_mv",
        )
        checks.done()

    def phone(self) -> VirtualPhone:
        """The phone, ready to be plugged in."""
        return VirtualPhone(
            _usb_id(self.vendor_id) or 0,
            _usb_id(self.product_id) or 0,
            self.serial,
            self.manufacturer,
            self.product,
            battery_wh=self.battery_wh,
            soc=self.soc_percent / 100,
            max_power_w=self.max_power_w,
            pd_voltage_mv=self.pd_voltage_mv,
        )


def _problems(exc: ValidationError) -> list[str]:
    return [f"{p.path or '(payload)'}: {p.message}" for p in exc.problems]


def phone_from_json(data: Any) -> VirtualPhone:
    """The phone a plug message describes; `SimulationInputError` lists every mistake."""
    try:
        return from_dict(PlugMessage, data).phone()
    except ValidationError as exc:
        raise SimulationInputError(_problems(exc)) from None


Percent = Annotated[float, Between(0, 100)]


@dataclass(frozen=True)
class Setting:
    """One state of a simulated device that can be set from outside: its type as the one
    input checker reads it, and what setting it does."""

    kind: Any
    apply: Callable[[Any], None]


def settings_of(hardware: SimulatedHardware) -> dict[str, Setting]:
    """What can be set on `hardware` through its `set` topic, by name."""
    if isinstance(hardware, SimulatedSite):
        return {**settings_of(hardware.pv), **settings_of(hardware.battery)}
    if isinstance(hardware, PvInverter):
        pv = hardware

        def irradiance(value: float | None) -> None:
            pv.irradiance = None if value is None else value / 100

        def producing(value: bool) -> None:
            pv.producing = value

        return {
            "irradiance_percent": Setting(
                Annotated[
                    Percent | None, Expect("a number from 0 to 100, or null for the weather's")
                ],
                irradiance,
            ),
            "producing": Setting(bool, producing),
        }
    if isinstance(hardware, BatteryModel):
        return {"soc_percent": Setting(Percent, hardware.set_soc)}
    if isinstance(hardware, FuelCellModel):
        return {
            "hydrogen_g": Setting(Annotated[float, Between(0, 1_000_000)], hardware.set_hydrogen),
            "fault": Setting(
                Annotated[Name | None, Expect("a fault code (text), or null to clear the faults")],
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
    problems: list[str] = []
    values: dict[str, Any] = {}
    for name, value in changes.items():
        setting = settings.get(name)
        if setting is None:
            problems.append(f"{name}: unknown setting; expected one of {known}")
            continue
        try:
            values[name] = read(setting.kind, value, name)
        except ValidationError as exc:
            problems += _problems(exc)
    if problems:
        raise SimulationInputError(problems)
    for name, value in values.items():
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
