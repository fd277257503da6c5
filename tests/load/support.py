"""Load tests: real `energy-p2p-edge run` processes (or the same `run_home` with the
virtual USB world) on a real Mosquitto, and what they need around them."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from edge_controller.processes import EdgeProcess

USB_HOME = Path(__file__).with_name("usb_home.py")


class UsbEdgeProcess(EdgeProcess):
    """`tests/load/usb_home.py EDGE_YAML`: a home run by `run_home` with the virtual USB
    world; its last line says whether port 1 was off at exit (`usb_report`)."""

    def __init__(self, config: Path, log_path: Path) -> None:
        super().__init__(config, log_path)
        self.child.argv = [sys.executable, str(USB_HOME), str(config)]
        self.lines: list[str] = []

    def _read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode(errors="replace").strip()
            self.lines.append(line)
            if line.startswith("ready ") and not self._ready:
                self._ready.append(line)

    def usb_report(self) -> dict[str, Any]:
        """What the process said about port 1 as it exited."""
        for line in self.lines:
            if line.startswith("usb "):
                return dict(json.loads(line[4:]))
        raise AssertionError(f"no usb report; log:\n{self.child.log_tail(3000)}")


def bearer(token: str) -> dict[str, str]:
    """The header a WebSocket client authenticates with (a token in the URL is refused)."""
    return {"Authorization": f"Bearer {token}"}


def sigterm_and_wait(edge: EdgeProcess, limit_s: float = 10.0) -> tuple[float, float]:
    """Send SIGTERM (wall time returned) and wait for the exit; (sent_at, seconds taken)."""
    assert edge.process is not None
    sent_at = time.time()
    started = time.monotonic()
    os.killpg(edge.process.pid, signal.SIGTERM)
    edge.process.wait(timeout=limit_s)
    return sent_at, time.monotonic() - started


def add_usb(config: Path, **usb: Any) -> None:
    """Give the home in `config` a `usb:` section (ports 1 and 2, prefix "test")."""
    document = yaml.safe_load(config.read_text())
    document["usb"] = {"ports": [1, 2], "price": 2_000, "resource_prefix": "test", **usb}
    config.write_text(yaml.safe_dump(document))
