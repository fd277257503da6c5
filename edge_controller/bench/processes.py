"""Edge controller processes on loopback, for the benchmarks and the process tests.

`EdgeProcess` runs `energy-p2p-edge run -c FILE`, waits for the line the command prints
when its API is up (`ready <url> <account>`), reads the API token from the home's data
directory, and talks to the API with the standard library only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

CHECKOUT = Path(__file__).resolve().parents[2]


def free_port(preferred: int = 0) -> int:
    """`preferred` when nothing listens on it (and it can be bound), else any free port."""
    if preferred:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0", preferred))
            except OSError:
                pass
            else:
                return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ApiError(Exception):
    """The API answered with an error: its HTTP status and the `{"error": ...}` body."""

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
        self._ready: list[str] = []

    def launch(self) -> EdgeProcess:
        """Start the process (without waiting for it: see `wait_ready`)."""
        env = {**os.environ, "PYTHONPATH": str(CHECKOUT)}
        self._ready = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edge_controller", "run", "-c", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=self.log_path.open("a"),
            text=True,
            env=env,
            cwd=CHECKOUT,
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        return self

    def _read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("ready ") and not self._ready:
                self._ready.append(line)
            # Keep draining so the child never blocks on a full pipe.

    def wait_ready(self, timeout: float = 30.0) -> EdgeProcess:
        """Wait until the API is up; read its URL, the home's account and the token."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while not self._ready:
            if self.process.poll() is not None:
                raise RuntimeError(f"edge controller exited: {self._log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"edge controller not ready: {self._log_tail()}")
            time.sleep(0.05)
        _, self.url, self.account = self._ready[0].split()
        document = yaml.safe_load(self.config.read_text())
        self.token = (Path(document["data_dir"]) / "api-token").read_text().strip()
        return self

    def start(self, timeout: float = 30.0) -> EdgeProcess:
        return self.launch().wait_ready(timeout)

    def _log_tail(self) -> str:
        return self.log_path.read_text()[-3000:] if self.log_path.exists() else ""

    def kill9(self) -> None:
        """Kill the process as a power cut would (SIGKILL: no clean-up at all)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop it cleanly (SIGTERM), killing it only if it does not stop in time."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def rss_mb(self) -> float:
        """The process's resident memory now, MB (Linux)."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        """`method /api/v1/<path>` with a JSON body; the JSON answer, or `ApiError`."""
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
