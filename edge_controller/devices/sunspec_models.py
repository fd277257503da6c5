"""SunSpec model definitions and register decoding, read from the SunSpec Alliance's own
model files (shipped in the `pysunspec2` package), so no register offset is typed by hand.

A SunSpec device starts its map with "SunS" at 40000 (or 0, or 50000), then one model after
another: its id, its length in registers, its points, until the id 0xFFFF. A point's value
is an integer (or text) scaled by 10 to the power of its scale-factor point; each type has
one "not implemented" value, which reads as None here.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

SUNS = (0x5375, 0x6E53)  # "SunS"
BASE_ADDRESSES = (40000, 0, 50000)
END_OF_MODELS = 0xFFFF
COMMON_MODEL = 1
INVERTER_MODELS = frozenset({101, 102, 103})
DER_MODELS = frozenset({701})
STORAGE_CONTROL_MODEL = 124
BATTERY_MODEL = 802
METER_MODELS = frozenset({201, 202, 203, 204})
# Models a profile may read: the ones whose points the edge controller maps to quantities.
READABLE_MODELS = INVERTER_MODELS | DER_MODELS | METER_MODELS | {STORAGE_CONTROL_MODEL, 802}

_NOT_IMPLEMENTED: Mapping[str, int] = {
    "uint16": 0xFFFF,
    "enum16": 0xFFFF,
    "bitfield16": 0xFFFF,
    "int16": 0x8000,
    "sunssf": 0x8000,
    "count": 0,
    "acc16": 0,
    "uint32": 0xFFFFFFFF,
    "enum32": 0xFFFFFFFF,
    "bitfield32": 0xFFFFFFFF,
    "int32": 0x80000000,
    "acc32": 0,
    "uint64": 0xFFFFFFFFFFFFFFFF,
    "int64": 0x8000000000000000,
    "acc64": 0,
}
_SIGNED = frozenset({"int16", "sunssf", "int32", "int64"})


class SunSpecError(Exception):
    """A SunSpec device or its register map is not what was expected; says why."""


@dataclass(frozen=True, slots=True)
class PointDef:
    """One point of a model: where it sits from the model's id register, its type, size,
    scale-factor point and access (R or RW)."""

    name: str
    offset: int
    size: int
    type: str
    sf: str | None
    access: str
    units: str


@dataclass(frozen=True, slots=True)
class ModelDef:
    """A SunSpec model's fixed block, as its definition file gives it."""

    id: int
    name: str
    label: str
    points: Mapping[str, PointDef]

    @property
    def length(self) -> int:
        """Registers after the id and length registers (the fixed block only)."""
        return sum(p.size for p in self.points.values()) - 2


@functools.cache
def model_definition(model_id: int) -> ModelDef | None:
    """The definition of SunSpec model `model_id`, or None when the catalogue has none."""
    path = resources.files("sunspec2") / "models" / "json" / f"model_{model_id}.json"
    if not path.is_file():
        return None
    group: dict[str, Any] = json.loads(path.read_text())["group"]
    points: dict[str, PointDef] = {}
    offset = 0
    for point in group["points"]:
        size = int(point["size"])
        points[point["name"]] = PointDef(
            name=point["name"],
            offset=offset,
            size=size,
            type=point["type"],
            sf=point.get("sf") if isinstance(point.get("sf"), str) else None,
            access=point.get("access", "R"),
            units=point.get("units", ""),
        )
        offset += size
    return ModelDef(model_id, group["name"], group.get("label", group["name"]), points)


def decode(point: PointDef, registers: Sequence[int]) -> int | str | None:
    """The raw value of `point` from its registers (big-endian words), None when the
    device says it does not implement it."""
    if point.type == "string":
        raw = b"".join(r.to_bytes(2, "big") for r in registers)
        return raw.split(b"\0", 1)[0].decode("ascii", "replace").strip()
    if point.type == "pad":
        return None
    value = 0
    for register in registers:
        value = value << 16 | (register & 0xFFFF)
    if point.type not in _NOT_IMPLEMENTED:
        return None
    if value == _NOT_IMPLEMENTED[point.type]:
        return None
    if point.type in _SIGNED and value >> (16 * point.size - 1):
        value -= 1 << (16 * point.size)
    return value


def encode(point: PointDef, value: int) -> list[int]:
    """The registers that carry integer `value` for `point`."""
    bits = 16 * point.size
    low = -(1 << (bits - 1)) if point.type in _SIGNED else 0
    high = (1 << (bits - 1)) - 1 if point.type in _SIGNED else (1 << bits) - 1
    if not low <= value <= high:
        raise SunSpecError(f"{point.name}: {value} does not fit a {point.type}")
    raw = value & ((1 << bits) - 1)
    return [(raw >> (16 * (point.size - 1 - i))) & 0xFFFF for i in range(point.size)]


@dataclass(frozen=True, slots=True)
class ModelBlock:
    """One model found on a device: its id, the address of its id register, its length."""

    id: int
    address: int
    length: int

    @property
    def definition(self) -> ModelDef | None:
        """Its definition, when the catalogue has one."""
        return model_definition(self.id)

    def view(self) -> dict[str, Any]:
        """For `GET devices` and the probe's listing."""
        definition = self.definition
        return {
            "id": self.id,
            "name": definition.name if definition else "unknown",
            "address": self.address,
            "length": self.length,
        }


class ModelValues:
    """The registers of one model as read, decoded point by point with scale factors."""

    def __init__(self, block: ModelBlock, registers: Sequence[int]) -> None:
        definition = block.definition
        if definition is None:
            raise SunSpecError(f"model {block.id} has no definition")
        self.block = block
        self.definition = definition
        self.registers = list(registers)

    def raw(self, name: str) -> int | str | None:
        """A point's value before scaling (None: not implemented or beyond the block)."""
        point = self.definition.points.get(name)
        if point is None or point.offset + point.size > len(self.registers):
            return None
        return decode(point, self.registers[point.offset : point.offset + point.size])

    def scaled(self, name: str) -> float | None:
        """A point's value times 10 ** its scale factor (None: not implemented)."""
        value = self.raw(name)
        if not isinstance(value, int):
            return None
        point = self.definition.points[name]
        if point.sf is None:
            return float(value)
        sf = self.raw(point.sf)
        if not isinstance(sf, int) or not -10 <= sf <= 10:
            return None
        return float(value * 10**sf) if sf >= 0 else value / 10**-sf

    def address_of(self, name: str) -> int:
        """The register address of a point."""
        return self.block.address + self.definition.points[name].offset
