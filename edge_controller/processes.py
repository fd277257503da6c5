"""Child processes on loopback: what the demo, the benchmarks and the process tests start.

Every child (a broker, an edge controller, Home Assistant) runs in a new session, so
stopping it signals the whole group: whatever it started itself (scripts/ha-python's
unshare and chroot, a shell) goes with it and nothing is orphaned. `leftovers()` says which
groups still hold a live process, for the end-to-end test's "nothing left behind".
`EdgeProcess` is one `energy-p2p-edge run -c FILE` child with a small client for its API.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import yaml

CHECKOUT = Path(__file__).resolve().parents[1]


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
    return _unused_port()


# Ports the kernel hands out for outgoing connections (and for bind to port 0) come from the
# ephemeral range; a port chosen there can be taken by any client's connection before the
# process it was chosen for binds it. Below that range only listeners that ask for a port
# by number take one, and a random choice among thousands makes two callers meet rarely.
_LISTEN_PORTS = range(20000, 32000)


# Ports already handed out by this process. A caller often chooses several ports before it
# starts anything (a broker, then each home's API), so nothing listens on the first port
# yet when the second is chosen: without this memory, the same port could be chosen twice.
_handed_out: set[int] = set()


def _unused_port() -> int:
    for _ in range(200):
        port = random.choice(_LISTEN_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def checkout_env() -> dict[str, str]:
    """This environment, with the checkout's code on the path whatever snapshot is installed."""
    return {**os.environ, "PYTHONPATH": str(CHECKOUT), "PYTHONUNBUFFERED": "1"}


def wait_for_port(port: int, timeout: float, process: Child | None = None) -> None:
    """Until something accepts connections on 127.0.0.1:`port` (or `process` exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None:
            process.check_alive()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


class ChildFailed(RuntimeError):
    """A child process exited when it should be running; the message ends with its log."""


class Child:
    """One child process in its own process group, its output in a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log: Path,
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        stop_signal: int = signal.SIGTERM,
        stdout: int | IO[bytes] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.cwd = cwd
        self.env = env
        self.stop_signal = stop_signal
        self._stdout = stdout
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> Child:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._stdout if self._stdout is not None else log,
                stderr=log,
                cwd=self.cwd,
                env=self.env,
                # Its own process group: one signal reaches everything it starts.
                start_new_session=True,
            )
        return self

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def check_alive(self) -> None:
        """Raise `ChildFailed` (with the end of its log) if it has exited."""
        if self.process is not None and (code := self.process.poll()) is not None:
            raise ChildFailed(
                f"{self.name} exited with status {code}; the end of {self.log}:\n" + self.log_tail()
            )

    def stop(self, timeout: float = 20.0) -> None:
        """Signal its group (SIGTERM or the configured signal), then SIGKILL what remains."""
        if self.process is None:
            return
        pgid = self.process.pid  # the session leader: its pid is the group's id
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, self.stop_signal)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.process.wait(timeout=10)
        # Members of the group that outlive the leader (none should) go too.
        deadline = time.monotonic() + 5
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if group_alive(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)


def group_alive(pgid: int) -> bool:
    """Whether any process is left in process group `pgid` (zombies excepted)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command name (which may contain spaces) in ")": state, ppid, pgrp.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def leftovers(children: Sequence[Child]) -> list[str]:
    """The children whose process group still has a live process."""
    return [c.name for c in children if c.process is not None and group_alive(c.pid)]


class ApiError(Exception):
    """The API answered with an error: its HTTP status and the `{"error": ...}` body."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class EdgeProcess:
    """One `energy-p2p-edge run -c FILE` child and a small client for its API.

    It waits for the line the command prints when its API is up (`ready <url> <account>`),
    reads the API token from the home's data directory, and talks to the API with the
    standard library only."""

    def __init__(self, config: Path, log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        self.child = Child(
            f"edge controller {config.stem}",
            [sys.executable, "-m", "edge_controller", "run", "-c", str(config)],
            log_path,
            cwd=CHECKOUT,
            env={**os.environ, "PYTHONPATH": str(CHECKOUT)},
            stdout=subprocess.PIPE,
        )
        self.url = ""
        self.token = ""
        self.account = ""
        self._ready: list[str] = []

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The running (or last) process, None before the first launch."""
        return self.child.process

    def launch(self) -> EdgeProcess:
        """Start the process (without waiting for it: see `wait_ready`)."""
        self._ready = []
        self.child.start()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        return self

    def _read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode(errors="replace")
            if line.startswith("ready ") and not self._ready:
                self._ready.append(line)
            # Keep draining so the child never blocks on a full pipe.

    def wait_ready(self, timeout: float = 30.0) -> EdgeProcess:
        """Wait until the API is up; read its URL, the home's account and the token."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while not self._ready:
            if self.process.poll() is not None:
                raise RuntimeError(f"edge controller exited: {self.child.log_tail(3000)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"edge controller not ready: {self.child.log_tail(3000)}")
            time.sleep(0.05)
        _, self.url, self.account = self._ready[0].split()
        document = yaml.safe_load(self.config.read_text())
        self.token = (Path(document["data_dir"]) / "api-token").read_text().strip()
        return self

    def start(self, timeout: float = 30.0) -> EdgeProcess:
        """Launch and wait until the API is up."""
        return self.launch().wait_ready(timeout)

    def kill9(self) -> None:
        """Kill the process as a power cut would (SIGKILL: no clean-up at all)."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop it cleanly (SIGTERM), killing it only if it does not stop in time."""
        if self.process is not None and self.process.poll() is None:
            self.child.stop(timeout=20)

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
        """`GET /api/v1/<path>`."""
        return self.call("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        """`POST /api/v1/<path>` with `body` (an empty object when None)."""
        return self.call("POST", path, body if body is not None else {})
