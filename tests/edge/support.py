"""Edge controller processes for tests: real `energy-p2p-edge run` processes on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edge_controller.ledger import Consensus, Genesis, KeyPair, sign_record
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


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
        path = self.folder / f"{home}.yaml"
        path.write_text(yaml.safe_dump(document))
        return path


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class EdgeProcess:
    """One `energy-p2p-edge run -c FILE` process and a small client for its API."""

    def __init__(self, config: Path, log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.token = ""
        self.account = ""

    def start(self, timeout: float = 30.0) -> EdgeProcess:
        document = yaml.safe_load(self.config.read_text())
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edge_controller", "run", "-c", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
            cwd=ROOT,
        )
        ready: list[str] = []

        def read_ready() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                if line.startswith("ready "):
                    ready.append(line)
                    break
            # Keep draining so the child never blocks on a full pipe.
            for _ in self.process.stdout:
                pass

        threading.Thread(target=read_ready, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready:
            if self.process.poll() is not None:
                raise RuntimeError(f"edge controller exited: {self.log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"edge controller not ready: {self.log_path.read_text()[-3000:]}"
                )
            time.sleep(0.05)
        _, self.url, self.account = ready[0].split()
        token_file = Path(document["data_dir"]) / "api-token"
        self.token = token_file.read_text().strip()
        return self

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/api/v1/{path}", data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token if token is None else token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, json.loads(exc.read() or b"null")) from None

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, body if body is not None else {})


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
