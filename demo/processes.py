"""Child processes the showcase starts, each in its own process group.

Every child (a broker, a home, Home Assistant) runs in a new session, so stopping it
signals the whole group: whatever it started itself (scripts/ha-python's unshare and
chroot, a shell) goes with it and nothing is orphaned. `leftovers()` says which groups
still hold a live process, for the end-to-end test's "nothing left behind".
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO


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
