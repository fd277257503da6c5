"""Home Assistant's HTTP and WebSocket APIs, as its frontend uses them: onboarding, config
entries through the config-flow REST API, the dashboard through the WebSocket API."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from edge_controller.processes import Child

DOMAIN = "energy_p2p"
DASHBOARD_PATH = "energy-p2p"
DASHBOARD_TITLE = "Energy P2P"


@dataclass(frozen=True)
class HomeAccess:
    """How Home Assistant reaches one edge controller: its API and token."""

    name: str
    slug: str
    account: str
    url: str
    token: str

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://").rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@dataclass(frozen=True)
class Login:
    """The owner account onboarding creates."""

    username: str
    password: str


class HassError(RuntimeError):
    """Home Assistant refused a set-up step; the message says which and why."""


class HassClient:
    """Home Assistant's HTTP and WebSocket APIs, as the frontend uses them."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.client_id = f"{self.url}/"
        self.token = ""
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HassClient:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use `async with HassClient(url)`"
        return self._session

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def request(
        self, method: str, path: str, body: Any = None, *, step: str, form: bool = False
    ) -> Any:
        """`method path` with a JSON (or form) body; the JSON answer or `HassError`."""
        kwargs: dict[str, Any] = {"headers": self._headers()}
        if body is not None:
            kwargs["data" if form else "json"] = body
        async with self.session.request(method, self.url + path, **kwargs) as response:
            text = await response.text()
            if response.status >= 400:
                raise HassError(f"{step}: HTTP {response.status} from {path}: {text[:500]}")
            return json.loads(text) if text else None

    async def wait_until_up(self, child: Child, within: float = 240) -> None:
        """Until the HTTP API answers (the onboarding status needs no login)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            child.check_alive()
            try:
                # 404 once onboarded: Home Assistant drops the onboarding views then.
                async with self.session.get(f"{self.url}/api/onboarding") as response:
                    if response.status in (200, 404):
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
        raise TimeoutError(f"Home Assistant did not answer within {within:.0f} s")

    async def onboard(self, login: Login, time_zone: str) -> None:
        """Every onboarding step still to do, in the order the frontend takes them. A Home
        Assistant that already has its owner (a kept --state-dir) is logged in to as
        `login` instead."""
        async with self.session.get(f"{self.url}/api/onboarding") as response:
            # 404 once onboarded: Home Assistant drops the onboarding views then.
            status = await response.json() if response.status == 200 else []
        pending = {s["step"] for s in status if not s["done"]}
        if "user" in pending:
            created = await self.request(
                "POST",
                "/api/onboarding/users",
                {
                    "client_id": self.client_id,
                    "name": login.username.title(),
                    "username": login.username,
                    "password": login.password,
                    "language": "en",
                },
                step="onboarding: create the owner",
            )
            await self._token_for(created["auth_code"], step="onboarding: log in")
        else:
            await self.log_in(login)
        if "user" in pending:
            # What the frontend's core-config step sends before it finishes the step (the
            # demo marks that step done itself: demo/hass.py `_skip_default_integrations`).
            await self.ws(
                [
                    {
                        "type": "config/core/update",
                        "country": "DE",
                        "currency": "EUR",
                        "language": "en",
                        "time_zone": time_zone,
                        "unit_system": "metric",
                    }
                ]
            )
        # Home Assistant 2026.10 moves the YAML `http:` settings (our port) into its storage
        # as a trial that reverts in five minutes unless confirmed: confirm it, as the
        # frontend's "Confirm new HTTP server configuration" dialog does (on every start:
        # a kept Home Assistant may be given another port).
        config = (await self.ws([{"type": "http/config"}]))[0]
        if config.get("active_config_type") == "pending":
            await self.ws([{"type": "http/config/promote"}])
        steps = {
            "core_config": ("/api/onboarding/core_config", {}),
            "analytics": ("/api/onboarding/analytics", {}),
            "integration": (
                "/api/onboarding/integration",
                {"client_id": self.client_id, "redirect_uri": f"{self.url}/?auth_callback=1"},
            ),
        }
        for step, (path, body) in steps.items():
            if step in pending:
                await self.request("POST", path, body, step=f"onboarding: {step}")

    async def log_in(self, login: Login) -> None:
        """Log in as the login page does (Home Assistant's own users); refused: HassError."""
        flow = await self.request(
            "POST",
            "/auth/login_flow",
            {
                "client_id": self.client_id,
                "handler": ["homeassistant", None],
                "redirect_uri": f"{self.url}/?auth_callback=1",
            },
            step="log in",
        )
        result = await self.request(
            "POST",
            f"/auth/login_flow/{flow['flow_id']}",
            {"client_id": self.client_id, "username": login.username, "password": login.password},
            step="log in",
        )
        if result.get("type") != "create_entry":
            raise HassError(
                f"log in as {login.username!r}: refused ({result.get('errors')}); this Home "
                "Assistant already has an owner: give its password with --password"
            )
        await self._token_for(result["result"], step="log in")

    async def _token_for(self, code: str, *, step: str) -> None:
        tokens = await self.request(
            "POST",
            "/auth/token",
            {"grant_type": "authorization_code", "code": code, "client_id": self.client_id},
            step=step,
            form=True,
        )
        self.token = tokens["access_token"]

    async def add_home(self, home: HomeAccess) -> dict[str, Any]:
        """One config entry through the config flow the user would fill in."""
        flow = await self.request(
            "POST",
            "/api/config/config_entries/flow",
            {"handler": DOMAIN, "show_advanced_options": False},
            step=f"config flow for {home.name}",
        )
        if flow.get("type") != "form":
            raise HassError(f"config flow for {home.name}: expected a form, got {flow}")
        result: dict[str, Any] = await self.request(
            "POST",
            f"/api/config/config_entries/flow/{flow['flow_id']}",
            {"host": home.host, "port": home.port, "token": home.token},
            step=f"config flow for {home.name}",
        )
        if result.get("type") != "create_entry":
            raise HassError(f"config flow for {home.name}: {result}")
        return result

    async def reconfigure_home(self, entry_id: str, home: HomeAccess) -> None:
        """Point an existing entry at `home`'s address and token (the reconfigure flow)."""
        step = f"reconfigure {home.name}"
        flow = await self.request(
            "POST",
            "/api/config/config_entries/flow",
            {"handler": DOMAIN, "entry_id": entry_id, "show_advanced_options": False},
            step=step,
        )
        result = await self.request(
            "POST",
            f"/api/config/config_entries/flow/{flow['flow_id']}",
            {"host": home.host, "port": home.port, "token": home.token},
            step=step,
        )
        if result.get("reason") != "reconfigure_successful":
            raise HassError(f"{step}: {result}")

    async def entries(self) -> list[dict[str, Any]]:
        """This integration's config entries with their state."""
        found: list[dict[str, Any]] = await self.request(
            "GET", f"/api/config/config_entries/entry?domain={DOMAIN}", step="config entries"
        )
        return found

    async def wait_entries_loaded(self, count: int, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while True:
            states = [e.get("state") for e in await self.entries()]
            if len(states) >= count and all(s == "loaded" for s in states):
                return
            if time.monotonic() > deadline:
                raise HassError(f"config entries not loaded within {within:.0f} s: {states}")
            await asyncio.sleep(0.5)

    async def create_dashboard(self, config: dict[str, Any]) -> None:
        """The Energy P2P dashboard in the sidebar, with its cards."""
        existing = (await self.ws([{"type": "lovelace/dashboards/list"}]))[0]
        if any(d.get("url_path") == DASHBOARD_PATH for d in existing):
            return  # a kept Home Assistant: the dashboard as its owner left it
        messages: list[dict[str, Any]] = [
            {
                "type": "lovelace/dashboards/create",
                "url_path": DASHBOARD_PATH,
                "title": DASHBOARD_TITLE,
                "icon": "mdi:home-lightning-bolt",
                "show_in_sidebar": True,
                "require_admin": False,
                "mode": "storage",
            },
            {"type": "lovelace/config/save", "url_path": DASHBOARD_PATH, "config": config},
        ]
        await self.ws(messages)

    async def configure_energy_dashboard(self) -> dict[str, Any]:
        """The Energy dashboard with each home's peer-to-peer trading: one grid connection
        per home, named after it, importing its *Energy bought* and exporting its *Energy
        sold* (docs/home-assistant.md, "Energy dashboard"). The demo's homes have no
        utility meter in Home Assistant, so nothing else counts the same energy. Kept as
        its owner left it when already configured; the preferences in force."""
        try:
            prefs = (await self.ws([{"type": "energy/get_prefs"}]))[0]
        except HassError:
            prefs = None  # never configured: Home Assistant answers "not found"
        if prefs and prefs.get("energy_sources"):
            return dict(prefs)
        ours: dict[tuple[str, str], str] = {}
        for entity in (await self.ws([{"type": "config/entity_registry/list"}]))[0]:
            unique_id = str(entity.get("unique_id", ""))
            if entity.get("platform") == DOMAIN:
                for kind in ("bought", "sold"):
                    if unique_id.endswith(f"_energy_{kind}"):
                        ours[(entity["config_entry_id"], kind)] = entity["entity_id"]
        sources: list[dict[str, Any]] = []
        for entry in await self.entries():
            bought = ours.get((entry["entry_id"], "bought"))
            sold = ours.get((entry["entry_id"], "sold"))
            if bought is None or sold is None:
                continue
            sources.append(
                {
                    "type": "grid",
                    "name": f"{entry['title']}: peer-to-peer",
                    "stat_energy_from": bought,
                    "stat_energy_to": sold,
                    # Paid in the community's own currency, which Home Assistant (ISO
                    # currencies only) cannot hold: no cost here; the wallet sensors have it.
                    "stat_cost": None,
                    "entity_energy_price": None,
                    "number_energy_price": None,
                    "stat_compensation": None,
                    "entity_energy_price_export": None,
                    "number_energy_price_export": None,
                    "cost_adjustment_day": 0,
                }
            )
        saved = await self.ws(
            [{"type": "energy/save_prefs", "energy_sources": sources, "device_consumption": []}]
        )
        return dict(saved[0])

    async def dismiss_installation_notice(self, within: float = 30) -> None:
        """Dismiss Home Assistant's notice that a Core installation (a Python environment,
        as the demo's) is unsupported since 2025.12: true of the demo, which is not meant to
        be anyone's Home Assistant, and the only repair it would show. Home Assistant raises
        it shortly after it has started; nothing to do where it never does."""
        deadline = time.monotonic() + within
        while True:
            config = (await self.ws([{"type": "get_config"}]))[0]
            issues = (await self.ws([{"type": "repairs/list_issues"}]))[0]["issues"]
            notice = [
                i
                for i in issues
                if i["domain"] == "homeassistant" and i["issue_id"].startswith("deprecated_method")
            ]
            if notice or (config.get("state") == "RUNNING" and time.monotonic() > deadline):
                break
            await asyncio.sleep(1)
        for issue in notice:
            if not issue.get("ignored"):
                await self.ws(
                    [
                        {
                            "type": "repairs/ignore_issue",
                            "domain": issue["domain"],
                            "issue_id": issue["issue_id"],
                            "ignore": True,
                        }
                    ]
                )

    async def call_service(
        self, domain: str, service: str, data: dict[str, Any], response: bool = False
    ) -> Any:
        """An action through the REST API (`?return_response` for actions that answer)."""
        query = "?return_response" if response else ""
        return await self.request(
            "POST", f"/api/services/{domain}/{service}{query}", data, step=f"{domain}.{service}"
        )

    async def ws(self, messages: Sequence[dict[str, Any]]) -> list[Any]:
        """Send each command over one authenticated WebSocket; their results, in order."""
        ws_url = self.url.replace("http", "ws", 1) + "/api/websocket"
        results: list[Any] = []
        async with self.session.ws_connect(ws_url) as ws:
            hello = await ws.receive_json()
            if hello.get("type") != "auth_required":
                raise HassError(f"websocket: unexpected greeting {hello}")
            await ws.send_json({"type": "auth", "access_token": self.token})
            auth = await ws.receive_json()
            if auth.get("type") != "auth_ok":
                raise HassError(f"websocket: authentication refused: {auth}")
            for number, message in enumerate(messages, start=1):
                await ws.send_json({"id": number, **message})
                while True:
                    answer = await ws.receive_json()
                    if answer.get("id") == number and answer.get("type") == "result":
                        break
                if not answer.get("success"):
                    raise HassError(f"websocket {message['type']}: {answer.get('error')}")
                results.append(answer.get("result"))
        return results
