"""`python tests/load/usb_home.py EDGE_YAML`: an `energy-p2p-edge run` home (the same
`run_home`) whose USB hub and meter are the virtual USB world, a phone plugged into port 1.

On exit it prints one JSON line: whether port 1 is powered, the wall time (s) of its last
switch off, and the energy (mWh) the phone took after that moment and in all."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from edge_controller.config import load_config
from edge_controller.devices import SystemClock
from edge_controller.runner import run_home, setup_logging
from edge_controller.simulation import VirtualPhone, VirtualUsbWorld


class WatchedWorld(VirtualUsbWorld):
    """The virtual world, noting when each port was last switched off."""

    switched_off: dict[int, tuple[float, float]] = {}

    def set_port_power(self, port: int, on: bool) -> None:
        super().set_port_power(port, on)
        phone = self.phone(port)
        if not on:
            delivered = phone.delivered_wh if phone is not None else 0.0
            self.switched_off[port] = (time.time(), delivered)


def main(path: str) -> int:
    config = load_config(Path(path))
    setup_logging(False)
    world = WatchedWorld(SystemClock())
    phone = VirtualPhone(0x18D1, 0x4EE7, "LOAD1", "Google", "Pixel 8", battery_wh=15.0, soc=0.2)
    world.plug(1, phone)
    code = asyncio.run(run_home(config, usb_backend=world.backend))
    world.sync()
    off_at, delivered_then = world.switched_off.get(1, (0.0, 0.0))
    report = {
        "powered": world.powered(1),
        "off_at": off_at,
        "after_off_mwh": round((phone.delivered_wh - delivered_then) * 1000, 3),
        "delivered_mwh": round(phone.delivered_wh * 1000, 3),
    }
    print("usb " + json.dumps(report), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
