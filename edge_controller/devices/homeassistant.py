"""Devices seen through Home Assistant: entities relayed by the Energy P2P integration.

The integration holds a connection to the edge controller already; it relays the states of
the entities the owner picked for each role (`POST /api/v1/homeassistant/states`) and
carries out the service calls that come back in the answer. No credential for Home
Assistant is kept here, and when Home Assistant is away nothing is relayed: the values go
stale and nothing is offered from them.

Units come from each entity's `unit_of_measurement` (W/kW/MW, Wh/kWh/MWh, %, g/kg);
`unavailable`, `unknown`, a wrong unit or a value that is not a number leave the quantity
without a value, and the reason is in `GET devices`. Values are integers after conversion.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from edge_controller.devices.adapter import DeviceCommandError
from edge_controller.devices.capabilities import FuelCellState
from edge_controller.devices.clock import Clock
from edge_controller.devices.profiles import Command, Quantity, kind_of
from edge_controller.devices.samples import Sample
from edge_controller.market.checks import Check, Expect

log = logging.getLogger(__name__)

_ENTITY_ID = re.compile(r"[a-z_][a-z0-9_]*\.[a-z0-9_]+\Z")
_SERVICE = re.compile(r"[a-z_][a-z0-9_]*\.[a-z0-9_]+\Z")
MAX_ENTITY_ID = 255
MAX_STATE = 255
MAX_PENDING = 16
_POWER = {"W": 1, "kW": 1_000, "MW": 1_000_000}
_ENERGY = {"Wh": 1, "kWh": 1_000, "MWh": 1_000_000}
UNITS: Mapping[Quantity, Mapping[str, int]] = {
    Quantity.POWER_W: _POWER,
    Quantity.GRID_POWER_W: _POWER,
    Quantity.BATTERY_POWER_W: _POWER,
    Quantity.POWER_RATING_W: _POWER,
    Quantity.EXPORT_LIMIT_W: _POWER,
    Quantity.IMPORT_ENERGY_WH: _ENERGY,
    Quantity.EXPORT_ENERGY_WH: _ENERGY,
    Quantity.CAPACITY_WH: _ENERGY,
    Quantity.SOC_PERCENT: {"%": 1},
    Quantity.HYDROGEN_G: {"g": 1, "kg": 1_000},
}
# What Home Assistant says of an entity that has no value now.
NO_VALUE = frozenset({"unavailable", "unknown", "none", ""})


def _entity_problems(entity_id: str) -> Iterable[tuple[str, str]]:
    if len(entity_id) > MAX_ENTITY_ID or not _ENTITY_ID.match(entity_id):
        yield "", "expected an entity id such as sensor.battery_soc"


def _service_problems(service: str) -> Iterable[tuple[str, str]]:
    if not _SERVICE.match(service):
        yield "", "expected a service such as number.set_value"


def _mapped_quantities(entities: Mapping[Quantity, Any]) -> Iterable[tuple[str, str]]:
    for quantity in entities:
        if quantity not in UNITS and kind_of(quantity) != "text":
            yield str(quantity), "is not read from Home Assistant"


EntityId = Annotated[str, Expect("an entity id"), Check(_entity_problems)]


@dataclass(frozen=True)
class EntitySource:
    """An entity whose state is a quantity; `scale` -1 turns a battery's discharge-positive
    power into ours (positive while charging)."""

    entity_id: EntityId
    scale: Annotated[int, Expect("1 or -1")] = 1


@dataclass(frozen=True)
class ServiceCall:
    """How a command reaches Home Assistant: a service, the entity it acts on, the field
    that carries the value (times `scale`), and fixed fields (e.g. a select's option)."""

    service: Annotated[str, Expect("a service"), Check(_service_problems)]
    entity_id: EntityId | None = None
    value_field: Annotated[str, Expect("a field name")] | None = "value"
    scale: int = 1
    data: Mapping[str, str | int] | None = None

    def call(self, value: int) -> dict[str, Any]:
        """The service call, as the integration carries it out."""
        data: dict[str, Any] = dict(self.data or {})
        if self.entity_id is not None:
            data["entity_id"] = self.entity_id
        if self.value_field:
            data[self.value_field] = value * self.scale
        return {"service": self.service, "data": data}


@dataclass(frozen=True)
class HomeAssistantProfileSettings:
    """`profile: homeassistant`: entities per quantity, services per command, constants.
    The integration's options write the entities (`PUT /api/v1/homeassistant/entities`)."""

    TAG_FIELD: ClassVar[str] = "profile"
    KIND: ClassVar[str] = "homeassistant"
    entities: Annotated[Mapping[Quantity, EntityId | EntitySource], Check(_mapped_quantities)] = (
        field(default_factory=dict)
    )
    commands: Mapping[Command, ServiceCall] | None = None
    constants: Mapping[Quantity, int] | None = None

    def build(self) -> HomeAssistantSource:
        """The source these settings describe."""
        return HomeAssistantSource(
            entities={
                q: s if isinstance(s, EntitySource) else EntitySource(s)
                for q, s in self.entities.items()
            },
            commands=dict(self.commands or {}),
            constants=dict(self.constants or {}),
        )


@dataclass(frozen=True)
class HomeAssistantSource:
    """A device as a set of Home Assistant entities and services."""

    entities: Mapping[Quantity, EntitySource] = field(default_factory=dict)
    commands: Mapping[Command, ServiceCall] = field(default_factory=dict)
    constants: Mapping[Quantity, int] = field(default_factory=dict)
    name: str = "homeassistant"

    def quantities(self) -> frozenset[Quantity]:
        """What the mapped entities (and the constants) give; empty until the integration
        writes the mapping."""
        return frozenset(self.entities) | frozenset(self.constants)

    def watched(self) -> tuple[str, ...]:
        """Every entity the integration relays: the mapped ones and the commanded ones
        (whose state is the owner's setting, written back when a trade ends)."""
        ids = [s.entity_id for s in self.entities.values()]
        ids += [c.entity_id for c in self.commands.values() if c.entity_id is not None]
        return tuple(dict.fromkeys(ids))

    def view(self) -> dict[str, Any]:
        """The mapping, for `GET /api/v1/homeassistant/entities`."""
        return {
            "entities": {q.value: s.entity_id for q, s in self.entities.items()},
            "commands": {
                c.value: call.call(0)["data"] | {"service": call.service}
                for c, call in self.commands.items()
            },
            "watched": list(self.watched()),
        }


@dataclass(frozen=True)
class EntityState:
    """One entity's state as Home Assistant reports it."""

    entity_id: Annotated[str, Expect("an entity id"), Check(_entity_problems)]
    state: Annotated[str, Expect("the state as text")]
    unit: Annotated[str, Expect("a unit")] | None = None

    def __post_init__(self) -> None:
        if len(self.state) > MAX_STATE:
            object.__setattr__(self, "state", self.state[:MAX_STATE])


class HomeAssistantDevice:
    """A device whose telemetry Home Assistant relays and whose commands it carries out."""

    def __init__(
        self,
        device_id: str,
        source: HomeAssistantSource,
        clock: Clock,
        *,
        stale_after_ms: int = 30_000,
    ) -> None:
        self.device_id = device_id
        self._clock = clock
        self._stale_after_ms = stale_after_ms
        self._last_relay_ms: int | None = None
        self._pending: dict[Command, dict[str, Any]] = {}
        self._owner_setting: str | None = None  # the commanded entity's state before a trade
        self.problems: dict[str, str] = {}
        self.source = source
        self._numbers: dict[Quantity, Sample[int]] = {}
        self._texts: dict[Quantity, Sample[str]] = {}
        self._raw: dict[str, str] = {}
        self.remap(source)

    def remap(self, source: HomeAssistantSource) -> None:
        """Follow other entities (the owner picked them in Home Assistant)."""
        self.source = source
        self._numbers = {q: Sample(v, 0, None) for q, v in source.constants.items()}
        self._texts = {}
        self.problems = {}
        if not source.entities and not source.constants:
            self.problems["entities"] = "no entities picked yet (the integration's options)"

    @property
    def connected(self) -> bool:
        """Whether Home Assistant relayed recently enough for its commands to be carried out."""
        last = self._last_relay_ms
        return last is not None and self._clock.now_ms() - last <= self._stale_after_ms

    def quantities(self) -> frozenset[Quantity]:
        """The quantities mapped to entities, and the constants."""
        return frozenset(self.source.entities) | frozenset(self.source.constants)

    def number(self, quantity: Quantity) -> Sample[int] | None:
        """The latest value of `quantity`."""
        return self._numbers.get(quantity)

    def text(self, quantity: Quantity) -> Sample[str] | None:
        """The latest state text (a fuel cell's state)."""
        return self._texts.get(quantity)

    def codes(self, quantity: Quantity) -> Sample[tuple[str, ...]] | None:
        """Home Assistant relays no code lists."""
        return None

    def snapshot(self) -> dict[str, Any]:
        """Values with age and freshness, and what is wrong with any entity."""
        now = self._clock.now_ms()
        readings: dict[Quantity, Sample[Any]] = {**self._numbers, **self._texts}
        view: dict[str, Any] = {
            q.value: {"value": s.value, "at_ms": s.at_ms, "fresh": s.fresh(now)}
            for q, s in sorted(readings.items())
        }
        problems = dict(self.problems)
        if not self.connected and self.source.entities:
            problems.setdefault("relay", "Home Assistant has not relayed its entities lately")
        view["problems"] = problems
        view["entities"] = self.source.view()["entities"]
        return view

    # --- relayed states -------------------------------------------------------------------

    def receive(self, states: Iterable[EntityState]) -> int:
        """Take in relayed states; returns how many gave a value."""
        now = self._clock.now_ms()
        self._last_relay_ms = now
        by_id = {s.entity_id: s for s in states}
        taken = 0
        for entity_id, given in by_id.items():
            self._raw[entity_id] = given.state
        for quantity, source in self.source.entities.items():
            state = by_id.get(source.entity_id)
            if state is None:
                continue
            try:
                self._store(quantity, source, state, now)
            except ValueError as problem:
                self._numbers.pop(quantity, None)
                self._texts.pop(quantity, None)
                self._note(source.entity_id, str(problem))
                continue
            self.problems.pop(source.entity_id, None)
            taken += 1
        return taken

    def _store(
        self, quantity: Quantity, source: EntitySource, state: EntityState, now: int
    ) -> None:
        if state.state.lower() in NO_VALUE:
            raise ValueError(f"{state.entity_id} is {state.state or 'empty'}")
        if kind_of(quantity) == "text":
            if quantity is Quantity.STATE and state.state not in set(FuelCellState):
                raise ValueError(f"{state.entity_id} is {state.state!r}, not a fuel-cell state")
            self._texts[quantity] = Sample(state.state, now, self._stale_after_ms)
            return
        units = UNITS[quantity]
        if state.unit is None or state.unit not in units:
            raise ValueError(
                f"{state.entity_id} is in {state.unit or 'no unit'!s}, "
                f"expected {' or '.join(units)}"
            )
        try:
            number = float(state.state)
        except ValueError:
            raise ValueError(f"{state.entity_id} is {state.state!r}, not a number") from None
        if not math.isfinite(number) or abs(number) > 1e12:
            raise ValueError(f"{state.entity_id} is {state.state!r}, not a real reading")
        value = round(number * units[state.unit] * source.scale)
        if quantity is Quantity.SOC_PERCENT and not 0 <= value <= 100:
            raise ValueError(f"{state.entity_id} is {value} %, outside 0 to 100")
        self._numbers[quantity] = Sample(value, now, self._stale_after_ms)

    def _note(self, where: str, problem: str) -> None:
        if self.problems.get(where) != problem:
            log.warning("%s: %s", self.device_id, problem)
        self.problems[where] = problem

    # --- commands -------------------------------------------------------------------------

    def source_of(self, quantity: Quantity) -> str | None:
        """The entity `quantity` is read from."""
        entity = self.source.entities.get(quantity)
        return None if entity is None else f"homeassistant {entity.entity_id}"

    def supports(self, command: Command) -> bool:
        """A command the owner named a service for; the hand-back of a battery also when
        its setpoint entity is known (its state before the trade is written back)."""
        if command is Command.BATTERY_RELEASE:
            return Command.BATTERY_RELEASE in self.source.commands or (
                Command.BATTERY_SETPOINT_W in self.source.commands
            )
        return command in self.source.commands

    async def send(self, command: Command, value: int) -> None:
        """Queue the service call for the integration to carry out on its next relay."""
        if not self.supports(command):
            raise DeviceCommandError(f"{self.device_id} has no service for {command}")
        if not self.connected:
            raise DeviceCommandError(f"{self.device_id}: Home Assistant is not relaying")
        call = self.source.commands.get(command)
        if command is Command.BATTERY_RELEASE and call is None:
            self._pending[Command.BATTERY_SETPOINT_W] = self._owner_call()
            self._owner_setting = None
            return
        assert call is not None
        if command is Command.BATTERY_SETPOINT_W and self._owner_setting is None:
            entity = call.entity_id
            self._owner_setting = self._raw.get(entity, "") if entity else ""
        if command is Command.BATTERY_RELEASE:
            self._owner_setting = None
        self._pending[command] = call.call(value)

    def _owner_call(self) -> dict[str, Any]:
        """The setpoint service with the value the entity had before the trade (0 if unknown)."""
        call = self.source.commands[Command.BATTERY_SETPOINT_W]
        request = call.call(0)
        owner = _finite(self._owner_setting)
        if owner is not None and call.value_field:
            request["data"][call.value_field] = owner
        return request

    def take_commands(self) -> list[dict[str, Any]]:
        """The service calls waiting for the integration, each once (the latest per command)."""
        calls = [
            {"device": self.device_id, "command": c.value, **v} for c, v in self._pending.items()
        ]
        self._pending.clear()
        return calls[:MAX_PENDING]

    def command_failed(self, command: str, error: str) -> None:
        """Home Assistant could not carry out a service call: say so in `GET devices`."""
        self._note(f"command {command}", f"{command} failed in Home Assistant: {error[:200]}")

    def command_done(self, command: str) -> None:
        """A service call went through."""
        self.problems.pop(f"command {command}", None)


def _finite(text: str | None) -> int | float | None:
    """A state as a number (an integer when it is whole), or None."""
    try:
        number = float(text or "")
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() else number


# --- what the integration sends -------------------------------------------------------------

MAX_STATES = 500
MAX_RESULTS = 64


def _at_most(limit: int) -> Any:
    def check(items: tuple[Any, ...]) -> Iterable[tuple[str, str]]:
        if len(items) > limit:
            yield "", f"at most {limit} items"

    return Check(check)


@dataclass(frozen=True)
class CommandResult:
    """How a service call the edge controller asked for went in Home Assistant."""

    device: str
    command: str
    error: Annotated[str, Expect("the error as text")] | None = None


@dataclass(frozen=True)
class RelayBody:
    """`POST /api/v1/homeassistant/states`: states of the watched entities, and how the
    service calls of the last answer went."""

    IGNORE_UNKNOWN: ClassVar[bool] = True
    states: Annotated[tuple[EntityState, ...], _at_most(MAX_STATES)] = ()
    results: Annotated[tuple[CommandResult, ...], _at_most(MAX_RESULTS)] = ()


@dataclass(frozen=True)
class EntityMappingBody:
    """`PUT /api/v1/homeassistant/entities`: each Home Assistant device's entities and
    services, by device id, as the owner picked them."""

    devices: Mapping[str, HomeAssistantProfileSettings]
