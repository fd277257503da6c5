"""The simulated community the showcase runs: a broker and three (or more) demo homes.

Two layouts of the same homes (`edge_controller.demo.plan_homes`: PV + battery, fuel cell,
consumers):
- `EmbeddedCommunity`: the single `energy-p2p-edge demo` process with its embedded MQTT
  broker (amqtt): what `scripts/demo` runs, nothing else to install.
- `ProcessCommunity`: a Mosquitto broker and one edge controller process per home
  (`python -m demo.home`), the registrar's records submitted through the first home's
  API: what the end-to-end test runs, as homes on separate machines would.
Both give `homes` (each home's API URL and token) and `children` (to stop and to check
that nothing is left behind).
"""

from __future__ import annotations

import getpass
import json
import shutil
import signal
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from edge_controller.demo.community import (
    METER_KEY,
    NODE_KEY,
    TOP_UP,
    DemoDataError,
    invite_new_homes,
    load_or_create_community,
)
from edge_controller.demo.hass_client import HomeAccess
from edge_controller.demo.phones import plug_phones_blocking
from edge_controller.ledger import Genesis, KeyPair, Rejected
from edge_controller.processes import CHECKOUT, Child, checkout_env, free_port, wait_for_port
from edge_controller.simulation.plan import HomePlan, plan_homes


class CommunityFolderError(Exception):
    """The folder holds a community the launcher cannot continue from."""


class Community(Protocol):
    homes: list[HomeAccess]
    children: list[Child]

    def start(self) -> None: ...
    def stop(self) -> None: ...


def _homes_from_state(state: dict[str, Any]) -> list[HomeAccess]:
    return [
        HomeAccess(h["name"], h["slug"], h["account"], h["url"], h["token"]) for h in state["homes"]
    ]


class EmbeddedCommunity:
    """`energy-p2p-edge demo`: every home and an embedded broker in one process."""

    def __init__(self, folder: Path, homes: int = 3) -> None:
        self.folder = folder
        self.count = homes
        self.homes: list[HomeAccess] = []
        self.log = folder / "edge-demo.log"
        state = folder / "demo.json"
        self.state_file = state
        self.children = [
            Child(
                "edge-demo",
                [
                    sys.executable,
                    "-m",
                    "edge_controller",
                    "demo",
                    "--homes",
                    str(homes),
                    "--state-file",
                    str(state),
                    "--data-dir",
                    str(folder / "homes"),
                ],
                self.log,
                cwd=CHECKOUT,
                env=checkout_env(),
                stop_signal=signal.SIGINT,  # as Ctrl-C would: it prints its goodbye
                stdout=None,
            )
        ]

    def start(self, timeout: float = 90) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        # The demo keeps its community in --data-dir; the URLs of an earlier run are stale.
        self.state_file.unlink(missing_ok=True)
        child = self.children[0].start()
        deadline = time.monotonic() + timeout
        while not (self.state_file.exists() and self.state_file.read_text().strip()):
            child.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the demo homes did not start:\n{child.log_tail()}")
            time.sleep(0.2)
        self.homes = _homes_from_state(json.loads(self.state_file.read_text()))

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()


class ProcessCommunity:
    """Mosquitto and one edge controller process per home, as separate machines would be."""

    def __init__(
        self,
        folder: Path,
        homes: int = 3,
        block_interval_ms: int = 2_000,
        phone_buys: bool = False,
    ) -> None:
        self.folder = folder
        self.count = homes
        self.phone_buys = phone_buys
        self.block_interval_ms = block_interval_ms
        self.homes: list[HomeAccess] = []
        self.children: list[Child] = []
        self.registrar = KeyPair.generate()
        self._seq = 0
        self._new_homes: set[str] = set()
        self._plans: list[HomePlan] = []

    def _mosquitto(self, port: int) -> Child:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise FileNotFoundError(
                "mosquitto is not installed: run scripts/ensure-system-packages"
            )
        config = self.folder / "mosquitto.conf"
        config.write_text(
            f"listener {port} 127.0.0.1\n"
            # Run as root, mosquitto would drop to its own user, who cannot write here.
            f"user {getpass.getuser()}\n"
            "allow_anonymous true\n"
            "max_inflight_messages 1000\n"
            "set_tcp_nodelay true\n"
        )
        return Child("mosquitto", [binary, "-c", str(config)], self.folder / "mosquitto.log")

    def _write_community(self, broker_port: int) -> Path:
        """The genesis, each home's keys and API port, and when the homes were planned.
        The genesis, registrar and keys of an earlier start in this folder are kept, so a
        restart continues the same community."""
        planned = int(time.time() * 1000)
        self._plans = plan_homes(self.count, planned)
        genesis_file = self.folder / "genesis.json"
        community = self.folder / "community.json"
        genesis: Genesis | None = None
        if genesis_file.exists():
            try:
                self._seq = int(json.loads(community.read_text())["registrar_seq"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise CommunityFolderError(f"{self.folder}: no demo community: {exc!r}") from None
            try:
                genesis = Genesis.load(genesis_file)
            except (OSError, ValueError, Rejected) as exc:
                raise CommunityFolderError(f"{genesis_file}: {exc}") from None
        try:
            self.genesis, self.registrar, self._new_homes = load_or_create_community(
                self.folder,
                self._plans,
                planned,
                genesis,
                genesis_file,
                block_interval_ms=self.block_interval_ms,
            )
        except DemoDataError as exc:
            raise CommunityFolderError(str(exc)) from None
        if genesis is None:
            self.genesis.save(genesis_file)
        invite_new_homes(
            self.folder,
            self.genesis,
            self.registrar,
            self._plans,
            self._new_homes,
            broker_port,
            planned,
        )
        self._community = {
            "homes": self.count,
            "planned_ms": planned,
            "genesis": str(genesis_file),
            "broker": {"host": "127.0.0.1", "port": broker_port},
            "keys": {
                p.slug: {
                    "node": str(self.folder / p.slug / NODE_KEY),
                    "meter": str(self.folder / p.slug / METER_KEY),
                    "api_port": free_port(),
                }
                for p in self._plans
            },
            "registrar_seq": self._seq,
            # The first home keeps the registrar's key: membership requests come to it.
            "registrar": {"home": self._plans[0].slug, "directory": str(self.folder)},
        }
        community.write_text(json.dumps(self._community, indent=2))
        self._slugs = [p.slug for p in self._plans]
        return community

    def start(self, timeout: float = 60) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        broker_port = free_port()
        broker = self._mosquitto(broker_port).start()
        self.children.append(broker)
        wait_for_port(broker_port, 10, broker)
        community = self._write_community(broker_port)
        for slug in self._slugs:
            # A home's state file of an earlier run names its old port and token.
            (self.folder / f"{slug}.json").unlink(missing_ok=True)
            self.children.append(
                Child(
                    f"home {slug}",
                    [
                        sys.executable,
                        "-m",
                        "edge_controller.demo.home",
                        str(community),
                        slug,
                        *(["--phone-buys"] if self.phone_buys else []),
                    ],
                    self.folder / f"{slug}.log",
                    cwd=CHECKOUT,
                    env=checkout_env(),
                ).start()
            )
        deadline = time.monotonic() + timeout
        for slug, child in zip(self._slugs, self.children[1:], strict=True):
            state = self.folder / f"{slug}.json"
            while not state.exists():
                child.check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"home {slug} did not start:\n{child.log_tail()}")
                time.sleep(0.1)
            h = json.loads(state.read_text())
            self.homes.append(HomeAccess(h["name"], h["slug"], h["account"], h["url"], h["token"]))
        # Each home is on the broker with its simulated world: a person plugs the phones in.
        for plan in self._plans:
            plug_phones_blocking("127.0.0.1", broker_port, plan)
        self._register()

    def _register(self, timeout_s: float = 60.0) -> None:
        """The registrar's home approves, with an opening top-up, each membership request
        the new homes sent it over the broker (`POST community/requests/{id}/approve`,
        what `energy-p2p-edge community approve` calls): the path every street walks. The
        homes of an earlier start in this folder are members already."""
        registrar = self.homes[0]
        expected = {h.account for h in self.homes if h.slug in self._new_homes}
        deadline = time.monotonic() + timeout_s
        while True:
            pending = _call(registrar, "GET", "community/requests")["requests"]
            if expected <= {r["account"] for r in pending} or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for request in pending:
            path = f"community/requests/{request['id']}/approve"
            _call(registrar, "POST", path, {"topup": TOP_UP})
        # Ready means able to trade: each admitted home sees its top-up in a block.
        admitted = {r["account"] for r in pending}
        for home in self.homes:
            if home.account not in admitted:
                continue
            while _call(home, "GET", "wallet")["balance"] <= 0 and time.monotonic() < deadline:
                time.sleep(0.1)

    def stop(self) -> None:
        # The homes first, so none of them reconnects in a loop to a vanished broker.
        for child in reversed(self.children):
            child.stop()


def _call(home: HomeAccess, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        f"{home.url}/api/v1/{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {home.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def make_community(layout: str, folder: Path, homes: int = 3) -> Community:
    """`embedded` (one demo process, amqtt) or `processes` (Mosquitto, a process per home)."""
    if layout == "embedded":
        return EmbeddedCommunity(folder, homes)
    if layout == "processes":
        # As in the one-process demo, the flat's phone buys a charge by itself.
        return ProcessCommunity(folder, homes, phone_buys=True)
    raise ValueError(f"unknown layout {layout!r}: expected embedded or processes")


def all_children(*groups: Sequence[Child]) -> list[Child]:
    return [c for group in groups for c in group]
