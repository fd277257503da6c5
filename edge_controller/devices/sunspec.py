"""Modbus TCP devices that speak SunSpec: an inverter, a battery or a meter, polled.

`SunSpecLink` reads a device's model list and model blocks over `pymodbus`; `SunSpecDevice`
polls the models the owner named in `edge.yaml`, turns their points into quantities
(inverter 101-103 or 701: power and energy; storage 124 or battery 802: state of charge,
capacity, power; meter 201-204: grid power and energy) and, where model 124 allows, drives
the battery with its storage-control registers, writing back the owner's own settings when
a trade ends. A device that is unreachable, lacks a named model or answers a read with a
Modbus exception has no fresh values (so nothing is offered from them) and says why in
`GET devices`; it is tried again at every poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from edge_controller.devices.adapter import DeviceCommandError
from edge_controller.devices.clock import Clock
from edge_controller.devices.profiles import Command, Quantity
from edge_controller.devices.samples import Sample
from edge_controller.devices.sunspec_models import (
    BASE_ADDRESSES,
    BATTERY_MODEL,
    COMMON_MODEL,
    DER_MODELS,
    END_OF_MODELS,
    INVERTER_MODELS,
    METER_MODELS,
    READABLE_MODELS,
    STORAGE_CONTROL_MODEL,
    SUNS,
    ModelBlock,
    ModelValues,
    SunSpecError,
    encode,
    model_definition,
)
from edge_controller.market.checks import Between, Check, Expect, NonEmpty

log = logging.getLogger(__name__)
# pymodbus logs every failed connect and dumps frames on each error, at every poll of a
# device that is down; this module reports each new failure once instead.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

MAX_READ = 125  # registers per Modbus read request
MAX_MODELS = 64  # a model list longer than this is a broken device, not a bigger one
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    6: "server device busy",
    11: "gateway target failed to respond",
}
# Point → quantity, with the sign that turns SunSpec's convention into ours; the first
# named model that has a quantity gives it.
_READS: tuple[tuple[frozenset[int], str, Quantity, int], ...] = (
    (INVERTER_MODELS | DER_MODELS, "W", Quantity.POWER_W, 1),
    (INVERTER_MODELS, "WH", Quantity.EXPORT_ENERGY_WH, 1),
    (DER_MODELS, "TotWhInj", Quantity.EXPORT_ENERGY_WH, 1),
    (DER_MODELS, "TotWhAbs", Quantity.IMPORT_ENERGY_WH, 1),
    (frozenset({STORAGE_CONTROL_MODEL}), "ChaState", Quantity.SOC_PERCENT, 1),
    (frozenset({BATTERY_MODEL}), "SoC", Quantity.SOC_PERCENT, 1),
    (frozenset({BATTERY_MODEL}), "WHRtg", Quantity.CAPACITY_WH, 1),
    # Model 802 counts discharge as positive; a battery here is positive while charging.
    (frozenset({BATTERY_MODEL}), "W", Quantity.BATTERY_POWER_W, -1),
    (METER_MODELS, "W", Quantity.GRID_POWER_W, 1),
    (METER_MODELS, "TotWhImp", Quantity.IMPORT_ENERGY_WH, 1),
    (METER_MODELS, "TotWhExp", Quantity.EXPORT_ENERGY_WH, 1),
)
# Model 124's storage-control bits (StorCtl_Mod): charge limit, discharge limit.
_CHARGE, _DISCHARGE = 1, 2
# The owner's settings kept while a trade drives the battery, written back after it.
_CONTROL_POINTS = ("StorCtl_Mod", "InWRte", "OutWRte", "InOutWRte_RvrtTms")


def _readable(models: tuple[int, ...]) -> Iterable[tuple[str, str]]:
    for i, model in enumerate(models):
        if model not in READABLE_MODELS:
            yield (
                f"[{i}]",
                (
                    f"model {model} is not read; expected one of "
                    f"{', '.join(str(m) for m in sorted(READABLE_MODELS))}"
                ),
            )
    if not models:
        yield "", "name at least one model (energy-p2p-edge devices probe lists them)"


@dataclass(frozen=True)
class SunSpecProfileSettings:
    """`profile: sunspec`: a SunSpec device on Modbus TCP, and the models read from it."""

    TAG_FIELD: ClassVar[str] = "profile"
    KIND: ClassVar[str] = "sunspec"
    host: Annotated[str, NonEmpty()]
    models: Annotated[
        tuple[int, ...], Expect("a list of SunSpec model ids, e.g. [103, 124]"), Check(_readable)
    ]
    port: Annotated[int, Between(1, 65535)] = 502
    unit: Annotated[int, Between(0, 247)] = 1
    poll_interval_s: Annotated[int, Between(1, 300)] = 5
    timeout_s: Annotated[int, Between(1, 60)] = 3
    battery_capacity_wh: Annotated[int, Between(1, 10**9)] | None = None
    power_rating_w: Annotated[int, Between(1, 10**9)] | None = None
    # The battery falls back to its own settings this long after our last write, should
    # the edge controller stop without handing it back.
    revert_after_s: Annotated[int, Between(10, 3600)] = 120

    def build(self) -> SunSpecSource:
        """The source these settings describe."""
        constants: dict[Quantity, int] = {}
        if self.battery_capacity_wh is not None:
            constants[Quantity.CAPACITY_WH] = self.battery_capacity_wh
        if self.power_rating_w is not None:
            constants[Quantity.POWER_RATING_W] = self.power_rating_w
        return SunSpecSource(
            name=f"sunspec:{self.host}:{self.port}/{self.unit}",
            host=self.host,
            port=self.port,
            unit=self.unit,
            models=self.models,
            poll_interval_ms=self.poll_interval_s * 1000,
            timeout_s=self.timeout_s,
            constants=constants,
            revert_after_s=self.revert_after_s,
        )


@dataclass(frozen=True)
class SunSpecSource:
    """Where a SunSpec device is and what to read from it."""

    name: str
    host: str
    port: int
    unit: int
    models: tuple[int, ...]
    poll_interval_ms: int = 5_000
    timeout_s: float = 3.0
    constants: dict[Quantity, int] = field(default_factory=dict)
    revert_after_s: int = 120

    def quantities(self) -> frozenset[Quantity]:
        """What the named models (and the constants) can give."""
        named = set(self.models)
        read = {q for models, _, q, _ in _READS if models & named}
        return frozenset(read) | frozenset(self.constants)


def modbus_problem(error: BaseException | Any, what: str) -> str:
    """A Modbus error or exception response in words."""
    code = getattr(error, "exception_code", None)
    if isinstance(code, int):
        name = EXCEPTION_NAMES.get(code, "unknown exception")
        return f"{what} answered with Modbus exception {code} ({name})"
    return f"{what} failed: {error}"


class SunSpecLink:
    """One Modbus TCP connection to a SunSpec device: its model list and its registers.
    Every pymodbus failure comes out as a `SunSpecError` saying what failed."""

    def __init__(self, host: str, port: int, unit: int, timeout_s: float = 3.0) -> None:
        # Imported only when a SunSpec device is used: a home without one (or an edge
        # controller installed beside Home Assistant before this dependency) never needs it.
        from pymodbus.client import AsyncModbusTcpClient
        from pymodbus.exceptions import ModbusException

        self._modbus_error = ModbusException
        self.host, self.port, self.unit = host, port, unit
        self._client = AsyncModbusTcpClient(
            host, port=port, timeout=timeout_s, retries=0, reconnect_delay=0
        )

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port} unit {self.unit}"

    async def connect(self) -> None:
        """Open the connection; raises SunSpecError when nothing answers."""
        try:
            connected = await self._client.connect()
        except (OSError, self._modbus_error) as error:
            raise SunSpecError(
                f"no Modbus TCP device answers at {self.host}:{self.port}: {error}"
            ) from None
        if not connected:
            raise SunSpecError(f"no Modbus TCP device answers at {self.host}:{self.port}")

    def close(self) -> None:
        self._client.close()

    async def read(self, address: int, count: int) -> list[int]:
        """`count` holding registers from `address`, in reads of at most 125."""
        registers: list[int] = []
        while len(registers) < count:
            at, size = address + len(registers), min(MAX_READ, count - len(registers))
            try:
                answer = await self._client.read_holding_registers(
                    at, count=size, device_id=self.unit
                )
            except (OSError, self._modbus_error) as error:
                raise SunSpecError(
                    modbus_problem(error, f"register {at} of {self.where}")
                ) from None
            if answer.isError():
                raise SunSpecError(modbus_problem(answer, f"register {at} of {self.where}"))
            registers.extend(answer.registers)
        return registers

    async def write(self, address: int, values: Sequence[int]) -> None:
        """Write holding registers from `address`."""
        try:
            answer = await self._client.write_registers(address, list(values), device_id=self.unit)
        except (OSError, self._modbus_error) as error:
            raise SunSpecError(modbus_problem(error, f"writing register {address}")) from None
        if answer.isError():
            raise SunSpecError(modbus_problem(answer, f"writing register {address}"))

    async def scan(self) -> list[ModelBlock]:
        """The models the device exposes, in map order (the common model first)."""
        base = await self._find_base()
        blocks: list[ModelBlock] = []
        address = base + 2
        while len(blocks) < MAX_MODELS:
            model_id, length = await self.read(address, 2)
            if model_id == END_OF_MODELS:
                return blocks
            blocks.append(ModelBlock(model_id, address, length))
            address += 2 + length
        raise SunSpecError(f"{self.where} lists more than {MAX_MODELS} models")

    async def _find_base(self) -> int:
        for base in BASE_ADDRESSES:
            try:
                marker = await self.read(base, 2)
            except SunSpecError:
                continue
            if tuple(marker) == SUNS:
                return base
        raise SunSpecError(
            f"{self.where} has no SunSpec map (no 'SunS' at {', '.join(map(str, BASE_ADDRESSES))})"
        )

    async def values(self, block: ModelBlock) -> ModelValues:
        """A model's registers, read whole."""
        return ModelValues(block, await self.read(block.address, block.length + 2))


async def probe(
    host: str, port: int = 502, unit: int = 1, timeout_s: float = 3.0
) -> dict[str, Any]:
    """What a SunSpec device exposes: its common model (maker, model, serial) and models."""
    link = SunSpecLink(host, port, unit, timeout_s)
    try:
        await link.connect()
        blocks = await link.scan()
        common: dict[str, Any] = {}
        first = next((b for b in blocks if b.id == COMMON_MODEL), None)
        if first is not None:
            values = await link.values(first)
            common = {k: values.raw(k) for k in ("Mn", "Md", "Vr", "SN")}
        return {"common": common, "models": [b.view() for b in blocks]}
    finally:
        link.close()


def devices_entry(host: str, port: int, unit: int, found: dict[str, Any]) -> list[dict[str, Any]]:
    """Ready `devices:` entries for what a probe found: one per role the models serve."""
    ids = {m["id"] for m in found["models"]}
    maker = str(found["common"].get("Mn") or "sunspec").lower().split()[0] if found else "sunspec"
    roles = (
        ("pv", sorted(ids & (INVERTER_MODELS | DER_MODELS))[:1]),
        ("battery", sorted(ids & {STORAGE_CONTROL_MODEL, BATTERY_MODEL})),
        ("grid_meter", sorted(ids & METER_MODELS)[:1]),
    )
    entries = []
    for role, models in roles:
        if not models:
            continue
        profile: dict[str, Any] = {
            "profile": "sunspec",
            "host": host,
            "port": port,
            "unit": unit,
            "models": models,
        }
        if role == "battery" and BATTERY_MODEL not in models:
            profile["battery_capacity_wh"] = 10000  # model 124 does not say: set yours
        entry: dict[str, Any] = {"id": f"{maker}-{role}".replace("_", "-"), "role": role}
        if role != "grid_meter":
            entry["resource"] = f"CHANGE-ME/{role}"
        entry["profile"] = profile
        entries.append(entry)
    return entries


class SunSpecDevice:
    """A SunSpec device polled over Modbus TCP, read and commanded as a `Device`."""

    def __init__(
        self, device_id: str, source: SunSpecSource, clock: Clock, *, stale_after_ms: int = 30_000
    ) -> None:
        self.device_id = device_id
        self.source = source
        self._clock = clock
        self._stale_after_ms = stale_after_ms
        self._link: SunSpecLink | None = None
        self._blocks: dict[int, ModelBlock] = {}
        self._values: dict[int, ModelValues] = {}
        self._numbers: dict[Quantity, Sample[int]] = {
            q: Sample(v, 0, None) for q, v in source.constants.items()
        }
        self._owner: dict[str, int] | None = None  # model 124's settings before we took over
        self.problem: str | None = "not read yet"
        self._logged: str | None = None

    @property
    def connected(self) -> bool:
        """Whether the device was reached and has every named model."""
        return self._link is not None and bool(self._blocks)

    def quantities(self) -> frozenset[Quantity]:
        """What the named models (and the constants) give."""
        return self.source.quantities()

    def number(self, quantity: Quantity) -> Sample[int] | None:
        """The latest value of `quantity`."""
        return self._numbers.get(quantity)

    def text(self, quantity: Quantity) -> Sample[str] | None:
        """SunSpec values here are all numbers."""
        return None

    def codes(self, quantity: Quantity) -> Sample[tuple[str, ...]] | None:
        """SunSpec values here are all numbers."""
        return None

    def snapshot(self) -> dict[str, Any]:
        """Values with age and freshness, the models read, and what is wrong, if anything."""
        now = self._clock.now_ms()
        view: dict[str, Any] = {
            q.value: {"value": s.value, "at_ms": s.at_ms, "fresh": s.fresh(now)}
            for q, s in sorted(self._numbers.items())
        }
        view["models"] = [b.view() for b in self._blocks.values()]
        view["problem"] = self.problem
        return view

    # --- polling ------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll until cancelled; every failure is reported and retried at the next poll."""
        try:
            while True:
                await self.poll()
                await asyncio.sleep(self.source.poll_interval_ms / 1000)
        finally:
            self._drop()

    async def poll(self) -> None:
        """Read every named model once; on failure say why and drop the connection."""
        try:
            if self._link is None:
                await self._open()
            await self._read_all()
        except SunSpecError as error:
            self._fail(str(error) or type(error).__name__)
            return
        self.problem = None
        if self._logged is not None:
            log.info("%s: SunSpec device answers again", self.device_id)
            self._logged = None

    async def _open(self) -> None:
        link = SunSpecLink(
            self.source.host, self.source.port, self.source.unit, self.source.timeout_s
        )
        try:
            await link.connect()
            found = {b.id: b for b in await link.scan()}
        except BaseException:
            link.close()
            raise
        missing = [m for m in self.source.models if m not in found]
        if missing:
            link.close()
            raise SunSpecError(
                f"{link.where} has no model {', '.join(map(str, missing))} "
                f"(it has {', '.join(map(str, found)) or 'none'}); "
                "energy-p2p-edge devices probe lists what it has"
            )
        self._link = link
        self._blocks = {m: found[m] for m in self.source.models}

    async def _read_all(self) -> None:
        assert self._link is not None
        for model_id, block in self._blocks.items():
            self._values[model_id] = await self._link.values(block)
        now = self._clock.now_ms()
        taken: set[Quantity] = set(self.source.constants)
        for model_id in self.source.models:
            values = self._values[model_id]
            for models, point, quantity, sign in _READS:
                if model_id not in models or quantity in taken:
                    continue
                value = values.scaled(point)
                if value is None:
                    continue  # not implemented by this device: the quantity stays unknown
                taken.add(quantity)
                self._numbers[quantity] = Sample(round(value) * sign, now, self._stale_after_ms)

    def _fail(self, why: str) -> None:
        self.problem = why
        self._drop()
        if why != self._logged:
            # A device that is down repeats its failure every poll: log each new one once.
            log.warning("%s: %s", self.device_id, why)
            self._logged = why

    def _drop(self) -> None:
        if self._link is not None:
            self._link.close()
        self._link = None
        self._blocks = {}
        self._values = {}

    # --- commands -----------------------------------------------------------------------

    def source_of(self, quantity: Quantity) -> str | None:
        """The Modbus unit `quantity` is read from (one register of its models for each)."""
        if quantity not in self.source.quantities() or quantity in self.source.constants:
            return None
        s = self.source
        return f"sunspec {s.host}:{s.port} unit {s.unit} {quantity.value}"

    def supports(self, command: Command) -> bool:
        """Model 124 takes a battery setpoint and the hand-back to the owner's settings."""
        return STORAGE_CONTROL_MODEL in self.source.models and command in (
            Command.BATTERY_SETPOINT_W,
            Command.BATTERY_RELEASE,
        )

    async def send(self, command: Command, value: int) -> None:
        """Drive model 124: charge (> 0 W) or discharge (< 0 W) at `value`, or hand back."""
        if not self.supports(command):
            raise DeviceCommandError(f"{self.device_id} does not take {command}")
        storage = self._values.get(STORAGE_CONTROL_MODEL)
        if self._link is None or storage is None:
            raise DeviceCommandError(f"{self.device_id} is not connected ({self.problem})")
        try:
            if command is Command.BATTERY_RELEASE:
                await self._hand_back(storage)
            else:
                await self._drive(storage, value)
        except SunSpecError as error:
            raise DeviceCommandError(f"{self.device_id}: {error}") from None

    async def _drive(self, storage: ModelValues, watts: int) -> None:
        w_max = storage.scaled("WChaMax")
        if not w_max:
            raise SunSpecError("model 124 gives no WChaMax: a setpoint cannot be set")
        if self._owner is None:
            self._owner = {
                name: v for name in _CONTROL_POINTS if isinstance(v := storage.raw(name), int)
            }
        sf = storage.raw("InOutWRte_SF")
        sf = sf if isinstance(sf, int) else 0
        percent = min(100.0, abs(watts) * 100 / w_max)
        rate = round(percent / 10**sf) if sf >= 0 else round(percent * 10**-sf)
        mode = _CHARGE if watts > 0 else _DISCHARGE if watts < 0 else _CHARGE | _DISCHARGE
        writes = {
            "InOutWRte_RvrtTms": self.source.revert_after_s,
            "InWRte": rate if watts > 0 else 0,
            "OutWRte": rate if watts < 0 else 0,
            "StorCtl_Mod": mode,
        }
        await self._write(storage, writes)
        log.info("%s: storage control %d W (%d%% of %g W)", self.device_id, watts, percent, w_max)

    async def _hand_back(self, storage: ModelValues) -> None:
        owner = self._owner if self._owner is not None else {"StorCtl_Mod": 0}
        await self._write(storage, owner)
        self._owner = None
        log.info("%s: storage control handed back to the owner's settings", self.device_id)

    async def _write(self, storage: ModelValues, writes: dict[str, int]) -> None:
        assert self._link is not None
        for name, value in writes.items():
            point = storage.definition.points[name]
            if point.access != "RW":
                continue
            await self._link.write(storage.address_of(name), encode(point, value))


def model_names(models: Iterable[int]) -> str:
    """`103 (inverter), 124 (storage)` for messages."""
    parts = []
    for model in models:
        definition = model_definition(model)
        parts.append(f"{model} ({definition.label if definition else 'unknown'})")
    return ", ".join(parts)
