"""`scripts/demo`'s command line, with the standard library only: `scripts/demo --help`
prints it (`python3 -m edge_controller.demo.options --help`) before anything is installed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """\
Three (or more) simulated homes trading energy peer to peer (PV + battery, fuel cell,
a consumer with a phone on USB), inside a real Home Assistant: onboarded with an owner
account, one Energy P2P entry per home, the Energy P2P dashboard in the sidebar and the
Energy dashboard set up with each home's peer-to-peer energy. Prints the URL and the
login, then each trade, settlement and phone charge as it happens. Ctrl-C stops
everything.

The first run installs what it needs (Debian packages, the Python environment, Home
Assistant on Python 3.14); later runs start in seconds."""

EPILOG = """\
scripts/demo --without-hass [ARGS] runs only the homes (energy-p2p-edge demo ARGS)."""


def demo_parser() -> argparse.ArgumentParser:
    """The demo's options."""
    parser = argparse.ArgumentParser(
        prog="scripts/demo",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--homes", type=int, default=3, help="how many homes (3 to 12)")
    parser.add_argument(
        "--layout",
        choices=("embedded", "processes"),
        default="embedded",
        help="embedded: one process with its own MQTT broker (default); "
        "processes: Mosquitto and one edge controller process per home",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8123,
        help="Home Assistant's port (default 8123, or a free one when it is taken)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address Home Assistant listens on (0.0.0.0: the LAN too)",
    )
    parser.add_argument("--password", help="the owner's password (default: a new random one)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="keep everything here, and carry on from it when it is given again "
        "(default: a new folder under /tmp)",
    )
    return parser


if __name__ == "__main__":
    demo_parser().parse_args(sys.argv[1:])
