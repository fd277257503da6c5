"""Black box: a running demo (`energy-p2p-edge demo`, its embedded broker) driven only the
way a person drives real hardware and its owner drives a home: messages on the simulation
control topics of the device broker, and the homes' API. A phone plugged by a message shows
up on the flat's USB port; less sunshine on the Sunny House's panels shows in its PV
reading; a battery drained elsewhere shows in its state of charge."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from edge_controller.simulation.control import plug_topic, send_control, set_topic, unplug_topic
from tests.edge.support import ROOT, wait_until

pytestmark = pytest.mark.slow


def get(home: dict[str, Any], path: str) -> Any:
    request = urllib.request.Request(
        f"{home['url']}/api/v1/{path}", headers={"Authorization": f"Bearer {home['token']}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def reading(home: dict[str, Any], device_id: str, quantity: str) -> Any:
    """The value of `quantity` in `GET devices` (each reading beside the device's id)."""
    found = next(d for d in get(home, "devices")["devices"] if d["id"] == device_id)
    return found[quantity]["value"] if quantity in found else None


def test_a_running_demo_is_acted_on_through_its_control_topics(tmp_path: Path) -> None:
    state_file = tmp_path / "demo.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_controller",
            "demo",
            "--state-file",
            str(state_file),
            "--data-dir",
            str(tmp_path / "homes"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        wait_until(state_file.exists, 30, what="the demo's state file")
        state = json.loads(state_file.read_text())
        broker = state["broker"]
        sunny, flat = state["homes"][0], state["homes"][2]

        def send(topic: str, payload: Any = None) -> None:
            send_control(broker["host"], broker["port"], [(topic, payload)])

        # Clouds over the Sunny House: its PV reading falls to nothing, then the sun is back.
        wait_until(lambda: (reading(sunny, "pv", "power_w") or 0) > 0, 30, what="sunshine on PV")
        send(set_topic("demo", sunny["slug"], "site"), {"irradiance_percent": 0})
        wait_until(lambda: reading(sunny, "pv", "power_w") == 0, 15, what="PV without sunshine")
        send(set_topic("demo", sunny["slug"], "site"), {"irradiance_percent": 100})
        wait_until(lambda: reading(sunny, "pv", "power_w") > 0, 15, what="PV in the sun again")
        # Its battery drained elsewhere: the reading says so.
        send(set_topic("demo", sunny["slug"], "site"), {"soc_percent": 30})
        wait_until(lambda: reading(sunny, "battery", "soc_percent") == 30, 15, what="SoC at 30 %")

        # The demo's own phone (plugged by the demo through the same topic) has bought its
        # charge; the owner pulls it out and plugs in a new phone.
        wait_until(lambda: get(flat, "usb")["sessions"], 90, what="the demo phone's charge")
        send(unplug_topic("demo", flat["slug"], 1))
        wait_until(
            lambda: get(flat, "usb")["ports"][0]["attached"] is None, 15, what="the port empty"
        )
        send(plug_topic("demo", flat["slug"], 1), {"serial": "BLACKBOX1", "product": "Pixel 9"})

        def new_phone() -> dict[str, Any] | None:
            attached: dict[str, Any] | None = get(flat, "usb")["ports"][0]["attached"]
            return attached if attached and attached["identity"]["serial"] == "BLACKBOX1" else None

        attached = wait_until(new_phone, 15, what="the new phone on the port")
        assert attached["identity"]["key"] == "18d1:4ee7:BLACKBOX1"
        assert attached["identity"]["product"] == "Pixel 9"
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output[-3000:]
