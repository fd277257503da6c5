"""A real Modbus TCP server (pymodbus) holding a SunSpec register map built by the SunSpec
Alliance's model definitions (pysunspec2's `Model`, which lays out and encodes every point),
on loopback: what the edge controller's SunSpec profile and `devices probe` are tested on.

The map is `SunS`, then each model's block as pysunspec2 encodes it, then the end marker.
Writes land in the map; `point()` decodes a point back through pysunspec2, independently of
the edge controller's own decoding. `broken` marks registers that answer with a Modbus
exception (illegal data address).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sunspec2.device as sunspec
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

BASE = 40000


def model(model_id: int, **values: Any) -> sunspec.Model:
    """A SunSpec model with the given point values (raw, before scale factors)."""
    built = sunspec.Model(model_id)
    for name, value in values.items():
        getattr(built, name).value = value
    return built


class SunSpecServer:
    """A SunSpec device on a pymodbus TCP server, on 127.0.0.1 (port 0: any free port)."""

    def __init__(self, models: list[sunspec.Model], unit: int = 1) -> None:
        self.unit = unit
        self.models = models
        self.registers: list[int] = [0x5375, 0x6E53]
        self.addresses: dict[int, int] = {}
        for m in models:
            self.addresses[m.model_id] = BASE + len(self.registers)
            block = m.get_mb()
            self.registers += [
                int.from_bytes(block[i : i + 2], "big") for i in range(0, len(block), 2)
            ]
            # pysunspec2 leaves L at 0 for a model built from scratch: it is the block's length.
            self.registers[self.addresses[m.model_id] - BASE + 1] = len(block) // 2 - 2
        self.registers += [0xFFFF, 0]
        self.broken: set[int] = set()
        self.writes: list[tuple[int, list[int]]] = []
        self.port = 0
        self._server: ModbusTcpServer | None = None

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        asked = range(address, address + count)
        if any(a in self.broken for a in asked):
            return ExcCodes.ILLEGAL_ADDRESS
        if any(not BASE <= a < BASE + len(self.registers) for a in asked):
            return ExcCodes.ILLEGAL_ADDRESS
        if set_values is not None:
            values = [int(v) for v in set_values]
            self.writes.append((address, values))
            self.registers[address - BASE : address - BASE + len(values)] = values
        for i in range(len(current_registers)):
            at = start_address + i - BASE
            current_registers[i] = self.registers[at] if 0 <= at < len(self.registers) else 0
        return None

    async def start(self) -> int:
        """Serve (on the same port as before after a `stop`); returns the port."""
        device = SimDevice(
            id=self.unit,
            simdata=[
                SimData(BASE, count=len(self.registers) + 8, values=0, datatype=DataType.REGISTERS)
            ],
            action=self._action,
        )
        self._server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
        await self._server.serve_forever(background=True)  # returns once it listens
        assert self._server.transport is not None
        self.port = self._server.transport.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop serving, closing every client connection."""
        if self._server is not None:
            await self._server.shutdown()
        self._server = None

    def point(self, model_id: int, name: str) -> Any:
        """A point's raw value as it stands in the map now, decoded by pysunspec2."""
        fresh = sunspec.Model(model_id)
        start = self.addresses[model_id] - BASE
        length = self.registers[start + 1] + 2
        block = b"".join(r.to_bytes(2, "big") for r in self.registers[start : start + length])
        fresh.set_mb(block)
        return getattr(fresh, name).value

    def set(self, model_id: int, **values: Any) -> None:
        """Change points in the map, as the device would."""
        start = self.addresses[model_id] - BASE
        length = self.registers[start + 1] + 2
        block = b"".join(r.to_bytes(2, "big") for r in self.registers[start : start + length])
        changed = sunspec.Model(model_id)
        changed.set_mb(block)
        for name, value in values.items():
            getattr(changed, name).value = value
        encoded = changed.get_mb()
        words = [int.from_bytes(encoded[i : i + 2], "big") for i in range(0, len(encoded), 2)]
        self.registers[start + 2 : start + length] = words[2:length]

    def address(self, model_id: int) -> int:
        """Where a model's id register is."""
        return self.addresses[model_id]

    def models_present(self) -> Iterator[int]:
        return iter(self.addresses)


def hybrid_inverter() -> list[sunspec.Model]:
    """A hybrid inverter with a battery and a grid meter: models 1, 103, 124, 802 and 203."""
    return [
        model(1, Mn="Fronius", Md="Symo GEN24 10.0 Plus", SN="31234567", Vr="1.28.7-1"),
        model(103, W=2345, W_SF=0, WH=1234567, WH_SF=0, St=4),
        model(
            124,
            WChaMax=5000,
            WChaMax_SF=0,
            StorCtl_Mod=0,
            ChaState=823,
            ChaState_SF=-1,
            InWRte=10000,
            OutWRte=10000,
            InOutWRte_SF=-2,
            InOutWRte_RvrtTms=0,
        ),
        model(802, SoC=82, SoC_SF=0, WHRtg=1000, WHRtg_SF=1, W=-1500, W_SF=0),
        model(203, W=-800, W_SF=0, TotWhImp=250, TotWhExp=4321, TotWh_SF=1),
    ]
