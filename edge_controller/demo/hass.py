"""A real Home Assistant with the Energy P2P integration from this checkout, set up the way
a person would: onboarding through Home Assistant's onboarding HTTP API, one config entry
per home through the config-flow REST API, the Energy P2P dashboard and the Energy
dashboard through the WebSocket API. Two settings are written into Home Assistant's
`.storage` before it starts, where no API can set them in time (see `write_config`).

Home Assistant runs on the Python 3.14 of `scripts/ha-python` (a Debian root with
Home Assistant 2026.10 where the machine has no Python 3.14); its configuration directory
must be under /tmp or the checkout, which that script makes visible at the same path.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edge_controller.demo.hass_client import (
    DASHBOARD_PATH,
    DASHBOARD_TITLE,
    DOMAIN,
    HassClient,
    HassError,
    HomeAccess,
    Login,
)
from edge_controller.processes import CHECKOUT, Child, wait_for_port

# ha-card's ready-made dashboard; when it is missing, the card alone in a panel view.
DASHBOARD_FILES = (
    CHECKOUT / "custom_components" / DOMAIN / "dashboards" / "energy_p2p.yaml",
    CHECKOUT / "dashboards" / "energy_p2p.yaml",
)
FALLBACK_DASHBOARD: dict[str, Any] = {
    "title": DASHBOARD_TITLE,
    "views": [
        {
            "title": "Community",
            "path": "community",
            "icon": "mdi:home-lightning-bolt",
            # A 1 Wh charge: the demo's 60 W USB-PD phone takes it in about a minute.
            "cards": [{"type": "custom:energy-p2p-card", "usb_buy_wh": 1}],
        }
    ],
}

# Only what the dashboard needs, no `default_config` (integrations whose requirements need
# compiling would fail here). `frontend` pulls in its dependencies itself: api, auth,
# config (the config-flow REST API), device_automation, diagnostics, file_upload, http,
# lovelace, map_tiles, onboarding, repairs, search, system_log, websocket_api.
CONFIGURATION = """\
# Written by demo/hass.py for the Energy P2P showcase: a minimal Home Assistant.
homeassistant:
  name: {name}
frontend:
config:
lovelace:
# The Energy dashboard (/config/energy): the homes' peer-to-peer energy (hass_client.py).
energy:
# Every real Home Assistant records history (default_config has it), and the frontend
# asks for it: without it a page can end in an uncaught "unknown command".
recorder:
  commit_interval: 5
logger:
  default: warning
  logs:
    custom_components.energy_p2p: info
"""


def ha_python() -> list[str]:
    """The command that runs Home Assistant's Python (see scripts/ha-python)."""
    return [str(CHECKOUT / "scripts" / "ha-python")]


def write_config(config_dir: Path, port: int, host: str, name: str = "Demo Street") -> None:
    """A fresh configuration directory with the checkout's integration linked in."""
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "configuration.yaml").write_text(CONFIGURATION.format(name=json.dumps(name)))
    _keep_http_on(config_dir, port, host)
    _skip_default_integrations(config_dir)
    custom = config_dir / "custom_components"
    custom.mkdir(exist_ok=True)
    link = custom / DOMAIN
    if link.is_symlink() or link.exists():
        link.unlink()
    # The checkout is mounted at the same path inside scripts/ha-python's root.
    link.symlink_to(CHECKOUT / "custom_components" / DOMAIN)


# Home Assistant's HTTP settings as its storage holds them (2026.10 on: `http` version 2),
# with its defaults; `server_host` and `server_port` are ours.
HTTP_STORAGE: dict[str, Any] = {
    "version": 2,
    "minor_version": 2,
    "key": "http",
    "data": {
        "stable": {
            "cors_allowed_origins": ["https://cast.home-assistant.io"],
            "login_attempts_threshold": -1,
            "ip_ban_enabled": True,
            "ssl_profile": "modern",
            "use_x_frame_options": True,
            "error": None,
            "error_message": None,
        },
        "pending": None,
        "yaml_migration_done": True,
    },
}


def _keep_http_on(config_dir: Path, port: int, host: str) -> None:
    """Make Home Assistant listen on `host:port`.

    Since 2026.10 Home Assistant keeps its HTTP settings in its storage: `http:` in YAML is
    moved there on the first start and raises a repair ("HTTP YAML configuration is
    deprecated"). So no `http:` is written; on a first start its stored settings are
    written with our port and host, and a kept configuration gets them again (it may be
    given another port). Home Assistant is not running here.
    """
    path = config_dir / ".storage" / "http"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        stored = json.loads(json.dumps(HTTP_STORAGE))
        stored["data"]["stable"].update(server_port=port, server_host=[host])
        _write_private(path, stored)
        return
    stored = json.loads(path.read_text())
    stable = stored.get("data", {}).get("stable")
    if not isinstance(stable, dict):
        raise HassError(f"{path}: no stable HTTP settings; start with a new --state-dir")
    if stable.get("server_port") == port and stable.get("server_host") == [host]:
        return
    stable.update(server_port=port, server_host=[host])
    path.write_text(json.dumps(stored, indent=2))


def _skip_default_integrations(config_dir: Path) -> None:
    """Onboarding's core-config step, marked done before the first start.

    Finishing that step through the API also starts four default integrations (Google
    Translate, Met.no, Radio Browser, Shopping list) that need the internet or packages
    this minimal Home Assistant lacks: they would fail, with errors in the log and a failed
    entry. What the step sets (country, currency, time zone, units) the demo sets through
    `config/core/update` itself (`HassClient.onboard`), as the frontend does before it.
    """
    path = config_dir / ".storage" / "onboarding"
    if path.is_file():
        return  # a kept configuration: onboarded already, or resumed where it was left
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(
        path,
        {"version": 4, "minor_version": 1, "key": "onboarding", "data": {"done": ["core_config"]}},
    )


def _write_private(path: Path, document: dict[str, Any]) -> None:
    """Write a storage file as Home Assistant does its private ones (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(document, f, indent=2)


def hass_child(config_dir: Path, log: Path) -> Child:
    """Home Assistant as a child process (not started)."""
    argv = [
        *ha_python(),
        "-m",
        "homeassistant",
        "--config",
        str(config_dir),
        # Never install packages at run time into the shared environment: what the
        # configuration needs is in tests_ha/requirements.txt (scripts/ha-env).
        "--skip-pip",
        "--log-no-color",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return Child("home-assistant", argv, log, cwd=CHECKOUT, env=env)


def dashboard_config() -> dict[str, Any]:
    """The Lovelace configuration of the Energy P2P dashboard."""
    for path in DASHBOARD_FILES:
        if path.is_file():
            document = yaml.safe_load(path.read_text())
            if isinstance(document, dict) and document.get("views"):
                return document
    return FALLBACK_DASHBOARD


def local_time_zone() -> str:
    """The machine's time zone name (Home Assistant needs one), UTC when unknown."""
    with_name = Path("/etc/timezone")
    if with_name.is_file() and (name := with_name.read_text().strip()):
        return name
    link = Path("/etc/localtime")
    if link.is_symlink() and "zoneinfo/" in (target := os.readlink(link)):
        return target.split("zoneinfo/", 1)[1]
    return "UTC"


def new_login(username: str = "demo") -> Login:
    return Login(username, secrets.token_urlsafe(9))


@dataclass
class RunningHass:
    """A started, onboarded Home Assistant."""

    child: Child
    url: str
    login: Login
    token: str
    config_dir: Path

    @property
    def dashboard_url(self) -> str:
        return f"{self.url}/{DASHBOARD_PATH}"


async def set_up(url: str, child: Child, login: Login, homes: Sequence[HomeAccess]) -> str:
    """Onboard (or log in to a kept Home Assistant), give each home its config entry (or
    point its existing one at the home's address now), create the dashboard unless it is
    there; the owner's token."""
    async with HassClient(url) as client:
        await client.wait_until_up(child)
        await client.onboard(login, local_time_zone())
        existing = {e["title"]: e["entry_id"] for e in await client.entries()}
        for home in homes:
            if home.name in existing:
                await client.reconfigure_home(existing[home.name], home)
            else:
                await client.add_home(home)
        await client.wait_entries_loaded(len(homes))
        await client.create_dashboard(dashboard_config())
        await client.configure_energy_dashboard()
        await client.dismiss_installation_notice()
        return client.token


# The owner's login, kept with Home Assistant's configuration (0600) so that a kept
# --state-dir can be logged in to again on the next start.
LOGIN_FILE = "energy-p2p-demo-login.json"


def stored_login(config_dir: Path) -> Login | None:
    """The login an earlier start of this configuration created, if any."""
    try:
        data = json.loads((config_dir / LOGIN_FILE).read_text())
        return Login(str(data["username"]), str(data["password"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store_login(config_dir: Path, login: Login) -> None:
    path = config_dir / LOGIN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"username": login.username, "password": login.password}, f)


def start_hass(
    config_dir: Path,
    homes: Sequence[HomeAccess],
    port: int,
    host: str = "127.0.0.1",
    login: Login | None = None,
) -> RunningHass:
    """Start Home Assistant and set it up for `homes`; stop its child on any failure.

    `login` is the owner's (default: the one this configuration was set up with, or a new
    one with a random password)."""
    login = login or stored_login(config_dir) or new_login()
    write_config(config_dir, port, host)
    child = hass_child(config_dir, config_dir / "console.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, 240, child)
        token = asyncio.run(set_up(url, child, login, homes))
        store_login(config_dir, login)
    except BaseException:
        child.stop()
        raise
    return RunningHass(child, url, login, token, config_dir)
