"""`python -m edge_controller.demo` (what `scripts/demo` runs): simulated homes trading,
inside a real Home Assistant with the Energy P2P dashboard, until Ctrl-C.

Starts the community (`layouts`), then Home Assistant (`hass`): onboarded with
an owner account, one Energy P2P config entry per home, the dashboard in the sidebar.
Prints the URL and the login, then each trade, settlement and phone charge as it happens.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

from edge_controller.demo.hass import start_hass
from edge_controller.demo.hass_client import Login
from edge_controller.demo.layouts import CommunityFolderError, EmbeddedCommunity, make_community
from edge_controller.demo.options import demo_parser
from edge_controller.processes import free_port


class Stop(Exception):
    """Ctrl-C or SIGTERM: stop everything."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise Stop


def _follow(log: Path, done: threading.Event) -> None:
    """Print the demo's trade, settlement and phone-charge lines as they are written."""
    with log.open(errors="replace") as f:
        while not done.is_set():
            line = f.readline()
            if not line:
                time.sleep(0.3)
                continue
            if line.startswith(("trade:", "settled:", "usb:")):
                print(line, end="", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = demo_parser()
    args = parser.parse_args(argv)
    if not 3 <= args.homes <= 12:
        parser.error("--homes must be from 3 to 12")

    # Home Assistant sees /tmp and the checkout at the same paths (scripts/ha-python).
    folder = args.state_dir or Path(tempfile.mkdtemp(prefix="energy-p2p-demo-", dir="/tmp"))
    folder = folder.resolve()
    # Without --password: the login a kept --state-dir was set up with, or a new one.
    login = Login("demo", args.password) if args.password else None
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    started = time.monotonic()
    community = make_community(args.layout, folder / "community", args.homes)
    hass = None
    done = threading.Event()
    try:
        print(f"Starting {args.homes} simulated homes ({args.layout}) ...", flush=True)
        community.start()
        print(
            "Starting Home Assistant and setting it up (onboarding, one entry per home, "
            "the dashboard) ...",
            flush=True,
        )
        port = free_port(args.port)
        hass = start_hass(folder / "home-assistant", community.homes, port, args.host, login)
        took = time.monotonic() - started
        print(
            f"\nEnergy P2P is running (ready in {took:.0f} s). Ctrl-C stops everything.\n\n"
            f"  Home Assistant  {hass.dashboard_url}\n"
            f"  login           {hass.login.username} / {hass.login.password}\n"
        )
        for home in community.homes:
            print(f"  {home.name:<15} {home.url}/  token {home.token}")
        print(f"\n  logs and data   {folder}\n", flush=True)
        if isinstance(community, EmbeddedCommunity):
            threading.Thread(target=_follow, args=(community.log, done), daemon=True).start()
        while True:
            for child in [*community.children, hass.child]:
                child.check_alive()
            time.sleep(1)
    except Stop:
        print("\nstopping ...", flush=True)
        return 0
    except CommunityFolderError as exc:
        print(f"scripts/demo: error: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        # Nothing may interrupt the clean-up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        done.set()
        if hass is not None:
            hass.child.stop()
        community.stop()
        print("stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
