"""Edge controller processes for tests: real `energy-p2p-edge run` processes on loopback.

`EdgeProcess` and `ApiError` come from `edge_controller.processes`, which the market
benchmark and the demo use too; re-exported here for the tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edge_controller.ledger import Consensus, Genesis, KeyPair, sign_record
from edge_controller.processes import ApiError, EdgeProcess
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
__all__ = ["ROOT", "ApiError", "Community", "EdgeProcess", "wait_until"]


@dataclass
class Community:
    """A community for process tests: its genesis file, registrar and the homes' keys."""

    folder: Path
    homes: list[str]
    block_interval_ms: int = 1_000
    registrar: KeyPair = field(default_factory=KeyPair.generate)
    keys: dict[str, KeyPair] = field(default_factory=dict)
    meters: dict[str, KeyPair] = field(default_factory=dict)
    _seq: int = 0

    def __post_init__(self) -> None:
        for name in self.homes:
            self.keys[name] = KeyPair.generate()
            self.meters[name] = KeyPair.generate()
            data = self.folder / name
            data.mkdir(parents=True, exist_ok=True)
            self.keys[name].save(data / "node.key")
            self.meters[name].save(data / "meter.key")
        self.genesis = Genesis(
            name="Test Street",
            currency="TST",
            time=int(time.time() * 1000) - 1_000,
            registrars=(self.registrar.public_hex,),
            consensus=Consensus(
                mode="poa",
                block_interval_ms=self.block_interval_ms,
                sealers=tuple(self.keys[n].public_hex for n in self.homes),
                confirmations=2,
            ),
        )
        self.genesis_path = self.folder / "genesis.json"
        self.genesis.save(self.genesis_path)

    def account(self, home: str) -> str:
        return self.keys[home].account

    def registrar_record(self, **body: Any) -> dict[str, Any]:
        self._seq += 1
        full = {"seq": self._seq, "time": int(time.time() * 1000), **body}
        return sign_record(self.registrar, self.genesis.community_id, full).to_wire()

    def registration(
        self,
        home: str,
        resource: str,
        kind: str,
        power_w: int,
        capacity_wh: int,
        available_wh: int | None = None,
    ) -> dict[str, Any]:
        return self.registrar_record(
            kind="registration",
            resource=resource,
            owner=self.account(home),
            resource_kind=kind,
            power_w=power_w,
            capacity_wh=capacity_wh,
            available_wh=capacity_wh if available_wh is None else available_wh,
            meter=self.meters[home].public_hex,
        )

    def topup(self, home: str, amount: int) -> dict[str, Any]:
        return self.registrar_record(kind="topup", to=self.account(home), amount=amount)

    def config(
        self,
        home: str,
        broker_port: int,
        devices: list[dict[str, Any]] | None = None,
        policy: dict[str, Any] | None = None,
        settlement_period_s: int | None = None,
        rating_grace_s: int | None = None,
    ) -> Path:
        """Write the home's edge.yaml and return its path."""
        document: dict[str, Any] = {
            "name": home,
            "data_dir": str(self.folder / home),
            "genesis": str(self.genesis_path),
            "community_broker": {"host": "127.0.0.1", "port": broker_port},
            "api": {"host": "127.0.0.1", "port": free_port(), "zeroconf": False},
            "control_interval_s": 1,
            "devices": devices or [],
        }
        if policy is not None:
            document["policy"] = policy
        if settlement_period_s is not None:
            document["settlement_period_s"] = settlement_period_s
        if rating_grace_s is not None:
            document["rating_grace_s"] = rating_grace_s
        path = self.folder / f"{home}.yaml"
        path.write_text(yaml.safe_dump(document))
        return path


def wait_until(
    check: Callable[[], Any], timeout: float = 30.0, every: float = 0.2, what: str = "condition"
) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (ApiError, OSError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
