"""MQTT device profiles: data describing which topic carries which value and how commands are sent.

A new inverter is a new profile, not new code. A profile maps each `Quantity` to a topic
and a JSON path inside that topic's payload, and each `Command` to a topic and a payload
template in which `$value` stands for the integer to send. Three families are built in:
a generic mapping read from configuration, OpenDTU and Victron Venus OS.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from edge_controller.market.checks import (
    Check,
    Checks,
    Expect,
    NonEmpty,
    ValidationError,
    read,
)

JsonPath = tuple[str, ...]
ValueKind = Literal["number", "text", "list"]

# A number no real device reports, so a template can be searched for where `$value` lands.
_TEMPLATE_PROBE = 918_273_645


class ProfileError(ValueError):
    """A profile or its configuration is invalid; the message says where and why."""


class Quantity(StrEnum):
    """The values a device can report, in the edge controller's units and signs."""

    POWER_W = "power_w"
    GRID_POWER_W = "grid_power_w"
    IMPORT_ENERGY_WH = "import_energy_wh"
    EXPORT_ENERGY_WH = "export_energy_wh"
    SOC_PERCENT = "soc_percent"
    CAPACITY_WH = "capacity_wh"
    BATTERY_POWER_W = "battery_power_w"
    # The charge (> 0) or discharge (< 0) setpoint in force, as the battery reports it:
    # the owner's own setting is written back from it when a trade ends.
    BATTERY_SETPOINT_W = "battery_setpoint_w"
    POWER_RATING_W = "power_rating_w"
    EXPORT_LIMIT_W = "export_limit_w"
    STATE = "state"
    HYDROGEN_G = "hydrogen_g"
    FAULT_CODES = "fault_codes"


class Command(StrEnum):
    """The commands a device can obey; every command carries one integer."""

    SETPOINT_W = "setpoint_w"
    START_STOP = "start_stop"
    BATTERY_SETPOINT_W = "battery_setpoint_w"
    # Hands the battery back to its own energy management (self-consumption); sent as 1.
    BATTERY_RELEASE = "battery_release"
    EXPORT_LIMIT_W = "export_limit_w"


VALUE_KINDS: Mapping[Quantity, ValueKind] = {
    Quantity.STATE: "text",
    Quantity.FAULT_CODES: "list",
}


def kind_of(quantity: Quantity) -> ValueKind:
    """Whether a quantity is a number, a text or a list of codes."""
    return VALUE_KINDS.get(quantity, "number")


def parse_json_path(path: str | None) -> JsonPath:
    """Split a dotted JSON path (`battery.soc`, `values.0`); empty means the whole payload."""
    if not path:
        return ()
    parts = tuple(path.split("."))
    if any(not part for part in parts):
        raise ProfileError(f"JSON path {path!r} has an empty segment")
    return parts


@dataclass(frozen=True, slots=True)
class TelemetryPoint:
    """Where one value is published: a topic, a JSON path inside its payload, and a scale.

    The edge controller's value is `round(published * scale)`, e.g. scale 1000 turns
    kWh into Wh.
    """

    quantity: Quantity
    topic: str
    path: JsonPath = ()
    scale: float = 1.0


@dataclass(frozen=True, slots=True)
class CommandPoint:
    """How one command is sent: a topic and a JSON payload template with `$value`."""

    command: Command
    topic: str
    payload_template: str = "$value"
    value_path: JsonPath = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "value_path", _locate_value(self.payload_template))

    def render(self, value: int) -> bytes:
        """The payload that carries `value`."""
        return string.Template(self.payload_template).substitute(value=value).encode()


@dataclass(frozen=True, slots=True)
class Keepalive:
    """A message the device needs at intervals to keep publishing (Victron Venus OS).

    The first message asks for a full publish of every value; later ones may ask the
    device not to republish everything again.
    """

    topic: str
    interval_ms: int
    first_payload: bytes = b""
    repeat_payload: bytes = b""
    device_timeout_ms: int = 60_000


@dataclass(frozen=True, slots=True)
class Profile:
    """Everything the adapter needs to read and command one device over MQTT."""

    name: str
    telemetry: tuple[TelemetryPoint, ...]
    commands: tuple[CommandPoint, ...] = ()
    constants: Mapping[Quantity, int] = field(default_factory=dict)
    keepalive: Keepalive | None = None
    retained: bool = True

    def __post_init__(self) -> None:
        seen: set[Quantity] = set()
        for point in self.telemetry:
            if point.quantity in seen:
                raise ProfileError(f"profile {self.name}: {point.quantity} is mapped twice")
            seen.add(point.quantity)
        for quantity in self.constants:
            if quantity in seen:
                raise ProfileError(
                    f"profile {self.name}: {quantity} is both a constant and a telemetry value"
                )

    def quantities(self) -> frozenset[Quantity]:
        """Every quantity the device provides, by telemetry or as a constant."""
        return frozenset(p.quantity for p in self.telemetry) | frozenset(self.constants)

    def command_point(self, command: Command) -> CommandPoint | None:
        """How to send `command`, or None when the device does not take it."""
        return next((c for c in self.commands if c.command == command), None)

    def points_on(self, topic: str) -> tuple[TelemetryPoint, ...]:
        """The telemetry values carried by `topic`."""
        return tuple(p for p in self.telemetry if p.topic == topic)

    def topics(self) -> tuple[str, ...]:
        """Every telemetry topic, each once, in profile order."""
        return tuple(dict.fromkeys(p.topic for p in self.telemetry))


def _locate_value(template: str) -> JsonPath:
    """Where `$value` sits in a command payload template, so a device can read it back."""
    try:
        rendered = string.Template(template).substitute(value=_TEMPLATE_PROBE)
        document = json.loads(rendered)
    except (KeyError, ValueError) as error:
        raise ProfileError(
            f"payload template {template!r} must be JSON with a $value placeholder"
        ) from error
    path = _find(document, ())
    if path is None:
        raise ProfileError(f"payload template {template!r} has no $value placeholder")
    return path


def _find(document: Any, path: JsonPath) -> JsonPath | None:
    if isinstance(document, bool):
        return None
    if document == _TEMPLATE_PROBE:
        return path
    if isinstance(document, dict):
        for key, child in document.items():
            found = _find(child, (*path, str(key)))
            if found is not None:
                return found
    if isinstance(document, list):
        for index, child in enumerate(document):
            found = _find(child, (*path, str(index)))
            if found is not None:
                return found
    return None


def simple_generic_profile(
    base_topic: str,
    quantities: Sequence[Quantity],
    commands: Sequence[Command] = (),
    constants: Mapping[Quantity, int] | None = None,
) -> Profile:
    """A generic profile with one JSON document on `<base>/telemetry` and `<base>/cmd/<command>`.

    Each value sits under its own name in the document, e.g. `{"soc_percent": 57}`; each
    command payload is `{"value": <int>}`. This is the layout the simulators use by default.
    """
    base = base_topic.rstrip("/")
    return Profile(
        name=f"generic:{base}",
        telemetry=tuple(TelemetryPoint(q, f"{base}/telemetry", (q.value,)) for q in quantities),
        commands=tuple(
            CommandPoint(c, f"{base}/cmd/{c.value}", '{"value": $value}') for c in commands
        ),
        constants=dict(constants or {}),
    )


def opendtu_profile(base_topic: str, serial: str, power_rating_w: int) -> Profile:
    """An inverter behind OpenDTU (Hoymiles): AC power, yield, power limit, on/off.

    Topics follow OpenDTU's MQTT documentation: `<base>/<serial>/0/power` (W),
    `<base>/<serial>/0/yieldtotal` (kWh), `<base>/<serial>/status/limit_absolute` (W),
    commands on `<base>/<serial>/cmd/limit_nonpersistent_absolute` (W, not written to the
    inverter's flash, which wears out) and `<base>/<serial>/cmd/power` (1 on, 0 off).
    Payloads are bare numbers.
    """
    root = f"{base_topic.rstrip('/')}/{serial}"
    return Profile(
        name=f"opendtu:{serial}",
        telemetry=(
            TelemetryPoint(Quantity.POWER_W, f"{root}/0/power"),
            TelemetryPoint(Quantity.EXPORT_ENERGY_WH, f"{root}/0/yieldtotal", scale=1000.0),
            TelemetryPoint(Quantity.EXPORT_LIMIT_W, f"{root}/status/limit_absolute"),
        ),
        commands=(
            CommandPoint(Command.EXPORT_LIMIT_W, f"{root}/cmd/limit_nonpersistent_absolute"),
            CommandPoint(Command.START_STOP, f"{root}/cmd/power"),
        ),
        constants={Quantity.POWER_RATING_W: power_rating_w},
    )


VICTRON_KEEPALIVE_INTERVAL_MS = 30_000
VICTRON_SUPPRESS_REPUBLISH = b'{"keepalive-options": ["suppress-republish"]}'


def victron_profile(
    portal_id: str,
    *,
    battery_capacity_wh: int,
    grid_instance: int | None = 30,
    battery_instance: int | None = 512,
    pvinverter_instance: int | None = 20,
    vebus_instance: int | None = 276,
) -> Profile:
    """A Victron ESS behind a Venus OS GX device, through its MQTT broker (dbus-flashmq).

    Notifications arrive on `N/<portal>/<service>/<instance>/<path>` as `{"value": x}`;
    writes go to `W/...` with the same payload. Venus OS stops publishing 60 s after the
    last keepalive on `R/<portal>/keepalive`, so the adapter sends one every 30 s. Leave an
    instance as None when the system has no such service. The capacity comes from
    configuration because Venus reports it in Ah.
    """

    def notification(service: str, instance: int, path: str) -> str:
        return f"N/{portal_id}/{service}/{instance}/{path}"

    def write(service: str, instance: int, path: str) -> str:
        return f"W/{portal_id}/{service}/{instance}/{path}"

    value: JsonPath = ("value",)
    template = '{"value": $value}'
    telemetry: list[TelemetryPoint] = []
    commands: list[CommandPoint] = []
    constants: dict[Quantity, int] = {}
    if grid_instance is not None:
        telemetry += [
            TelemetryPoint(
                Quantity.GRID_POWER_W, notification("grid", grid_instance, "Ac/Power"), value
            ),
            TelemetryPoint(
                Quantity.IMPORT_ENERGY_WH,
                notification("grid", grid_instance, "Ac/Energy/Forward"),
                value,
                scale=1000.0,
            ),
            TelemetryPoint(
                Quantity.EXPORT_ENERGY_WH,
                notification("grid", grid_instance, "Ac/Energy/Reverse"),
                value,
                scale=1000.0,
            ),
        ]
    if battery_instance is not None:
        telemetry += [
            TelemetryPoint(
                Quantity.SOC_PERCENT, notification("battery", battery_instance, "Soc"), value
            ),
            TelemetryPoint(
                Quantity.BATTERY_POWER_W,
                notification("battery", battery_instance, "Dc/0/Power"),
                value,
            ),
        ]
        constants[Quantity.CAPACITY_WH] = battery_capacity_wh
    if pvinverter_instance is not None:
        telemetry.append(
            TelemetryPoint(
                Quantity.POWER_W, notification("pvinverter", pvinverter_instance, "Ac/Power"), value
            )
        )
    if vebus_instance is not None:
        # ESS with external control: the AC setpoint of the Multi, positive charges the battery.
        commands.append(
            CommandPoint(
                Command.BATTERY_SETPOINT_W,
                write("vebus", vebus_instance, "Hub4/L1/AcPowerSetpoint"),
                template,
            )
        )
    feed_in = "Settings/CGwacs/MaxFeedInPower"
    telemetry.append(
        TelemetryPoint(Quantity.EXPORT_LIMIT_W, notification("settings", 0, feed_in), value)
    )
    commands.append(CommandPoint(Command.EXPORT_LIMIT_W, write("settings", 0, feed_in), template))
    return Profile(
        name=f"victron:{portal_id}",
        telemetry=tuple(telemetry),
        commands=tuple(commands),
        constants=constants,
        keepalive=Keepalive(
            topic=f"R/{portal_id}/keepalive",
            interval_ms=VICTRON_KEEPALIVE_INTERVAL_MS,
            first_payload=b"",
            repeat_payload=VICTRON_SUPPRESS_REPUBLISH,
        ),
        retained=False,
    )


# --- profiles written in configuration ------------------------------------------------------
# Each family's settings as a dataclass, read by the market's one checker: every mistake is
# reported at once with its path, e.g. `devices[1].profile.battery_capacity_wh: expected an
# integer`. A family is chosen by the `profile` key.


def _json_path_problems(path: str | None) -> Iterable[tuple[str, str]]:
    try:
        parse_json_path(path)
    except ProfileError as error:
        yield "", str(error)


def _template_problems(template: str) -> Iterable[tuple[str, str]]:
    try:
        _locate_value(template)
    except ProfileError as error:
        yield "", str(error)


def _non_zero(scale: float) -> Iterable[tuple[str, str]]:
    if scale == 0:
        yield "", "expected a non-zero number"


Topic = Annotated[str, NonEmpty()]


@dataclass(frozen=True)
class TelemetrySource:
    """Where a generic device publishes one value: topic, dotted JSON path, scale."""

    topic: Topic
    path: Annotated[str | None, Expect("a dotted JSON path"), Check(_json_path_problems)] = None
    scale: Annotated[float, Expect("a non-zero number"), Check(_non_zero)] = 1.0


@dataclass(frozen=True)
class CommandTarget:
    """Where a generic device takes one command: topic and payload template with $value."""

    topic: Topic
    payload: Annotated[str, Expect("a template text with $value"), Check(_template_problems)] = (
        "$value"
    )


@dataclass(frozen=True)
class GenericProfileSettings:
    """`profile: generic`: telemetry and commands mapped by name, constants by value."""

    TAG_FIELD: ClassVar[str] = "profile"
    KIND: ClassVar[str] = "generic"
    telemetry: Mapping[Quantity, TelemetrySource]
    commands: Mapping[Command, CommandTarget] | None = None
    constants: Mapping[Quantity, int] | None = None
    retained: bool = True
    name: str = "generic"

    def __post_init__(self) -> None:
        checks = Checks()
        for quantity in self.constants or {}:
            checks.require(
                quantity not in self.telemetry,
                f"constants.{quantity}",
                f"{quantity} is both a constant and a telemetry value",
            )
        checks.done()

    def build(self) -> Profile:
        """The profile these settings describe."""
        return Profile(
            name=self.name,
            telemetry=tuple(
                TelemetryPoint(q, s.topic, parse_json_path(s.path), s.scale)
                for q, s in self.telemetry.items()
            ),
            commands=tuple(
                CommandPoint(c, t.topic, t.payload) for c, t in (self.commands or {}).items()
            ),
            constants=dict(self.constants or {}),
            retained=self.retained,
        )


@dataclass(frozen=True)
class OpenDtuProfileSettings:
    """`profile: opendtu`: an inverter behind OpenDTU."""

    TAG_FIELD: ClassVar[str] = "profile"
    KIND: ClassVar[str] = "opendtu"
    base_topic: Topic
    serial: Annotated[str, NonEmpty()]
    power_rating_w: int

    def build(self) -> Profile:
        """The profile these settings describe."""
        return opendtu_profile(self.base_topic, self.serial, self.power_rating_w)


@dataclass(frozen=True)
class VictronProfileSettings:
    """`profile: victron`: a Victron ESS behind Venus OS; an instance of null: no service."""

    TAG_FIELD: ClassVar[str] = "profile"
    KIND: ClassVar[str] = "victron"
    portal_id: Annotated[str, NonEmpty()]
    battery_capacity_wh: int
    grid_instance: int | None = 30
    battery_instance: int | None = 512
    pvinverter_instance: int | None = 20
    vebus_instance: int | None = 276

    def build(self) -> Profile:
        """The profile these settings describe."""
        return victron_profile(
            self.portal_id,
            battery_capacity_wh=self.battery_capacity_wh,
            grid_instance=self.grid_instance,
            battery_instance=self.battery_instance,
            pvinverter_instance=self.pvinverter_instance,
            vebus_instance=self.vebus_instance,
        )


ProfileSettings = GenericProfileSettings | OpenDtuProfileSettings | VictronProfileSettings


def profile_from_config(config: Mapping[str, Any], where: str = "device") -> Profile:
    """Build a profile from a configuration mapping (parsed JSON or YAML).

    `{"profile": "generic", "telemetry": {...}, "commands": {...}, "constants": {...}}`,
    `{"profile": "opendtu", "base_topic": ..., "serial": ..., "power_rating_w": ...}` or
    `{"profile": "victron", "portal_id": ..., "battery_capacity_wh": ..., <service>_instance}`.
    Mistakes raise `ProfileError` naming every path in the configuration (`where`).
    """
    try:
        settings: ProfileSettings = read(ProfileSettings, config, where)
        return settings.build()
    except ValidationError as error:
        raise ProfileError(str(error)) from None
