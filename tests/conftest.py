"""Fixtures shared by the whole suite: real services started on free loopback ports."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_controller import processes


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, outside the ephemeral range."""
    return processes.free_port()


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Mosquitto:
    """A real Mosquitto broker process on a loopback port, restartable mid-test."""

    port: int
    config: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen(
            [binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh Mosquitto broker for one test (anonymous, loopback only, persistence on)."""
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.fail("mosquitto is not installed: run scripts/ensure-system-packages")
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\n"
        # Run as root, mosquitto drops to its own user, which cannot write pytest's tmp dir.
        f"user {getpass.getuser()}\n"
        "allow_anonymous true\n"
        "persistence true\n"
        f"persistence_location {tmp_path}/\n"
        "max_inflight_messages 1000\n"
        "set_tcp_nodelay true\n"
    )
    broker = Mosquitto(port=port, config=config)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def community_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto that queues for its clients as deploy/mosquitto/community.conf does: a
    flood the homes take a while to read waits at the broker rather than vanishing there,
    so every message of it is judged by the homes."""
    port = free_port()
    config = tmp_path / "community.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nuser {getpass.getuser()}\nallow_anonymous true\n"
        "max_queued_messages 100000\nmax_inflight_messages 100\nset_tcp_nodelay true\n"
    )
    broker = Mosquitto(port=port, config=config)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
