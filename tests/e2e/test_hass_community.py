"""End to end: a new home joins a real community from a real Home Assistant.

Real processes only: the registrar founds "Elm Street" with `energy-p2p-edge community
found` (its home, Sunny House, has a battery), a real Mosquitto runs on the generated TLS
configuration, logins and ACL, and Sunny House runs as `energy-p2p-edge run`. Garden Flat's
edge controller starts with no community. In Home Assistant (2026.10 on Python 3.14,
onboarded with Sunny House's entry as the owner would) Garden Flat is added through the
config-flow REST API: the flow sees a home of no community and takes the invitation's
text. Its membership request shows on Sunny House's entry as a repair, and approving it
through the repairs flow API registers it. Then Garden Flat's event entity and its card
in headless Chromium name Sunny House's offer, and the trade the owner accepts there, by
the display name "Sunny House", never by a hash.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_controller.demo.hass import FALLBACK_DASHBOARD, RunningHass, start_hass
from edge_controller.demo.hass_client import DASHBOARD_PATH, DOMAIN, HassClient, HomeAccess
from edge_controller.processes import (
    CHECKOUT,
    Child,
    EdgeProcess,
    free_port,
    leftovers,
    wait_for_port,
)
from tests.browser import headless_chromium
from tests.e2e.hass_support import eventually, home_api

pytestmark = pytest.mark.slow
TIMEOUT_S = 60
BATTERY = "sunny-house/battery"


def edge(*args: str) -> str:
    """`energy-p2p-edge ARGS` as the registrar types it; its output (it must succeed)."""
    result = subprocess.run(
        [sys.executable, "-m", "edge_controller", *args],
        cwd=CHECKOUT,
        env={"PYTHONPATH": str(CHECKOUT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def write_yaml(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


@dataclass
class Street:
    """The running community: the registrar's home, the newcomer waiting, Home Assistant."""

    sunny: EdgeProcess
    garden: EdgeProcess
    garden_port: int
    invitation: str
    hass: RunningHass


@pytest.fixture
def street(tmp_path: Path) -> Iterator[Street]:
    children: list[Child] = []
    try:
        yield _start_street(tmp_path, children)
    finally:
        for child in reversed(children):
            child.stop()
        left = leftovers(children)
        assert left == [], f"processes left behind by: {left}"


def _start_street(folder: Path, children: list[Child]) -> Street:
    # The registrar's own edge.yaml lists its battery; its edge controller has no real
    # device broker to read it from, which only leaves its charge unknown.
    devices = folder / "sunny-devices.yaml"
    write_yaml(
        devices,
        {
            "device_broker": {"host": "127.0.0.1", "port": free_port()},
            "devices": [
                {
                    "id": "battery",
                    "role": "battery",
                    "profile": {
                        "profile": "generic",
                        "telemetry": {"soc_percent": {"topic": "sunny/bat", "path": "soc"}},
                        "constants": {"capacity_wh": 5000, "power_rating_w": 3000},
                    },
                }
            ],
        },
    )
    broker_port = free_port()
    elm = folder / "elm"
    edge(
        "community", "found", "--name", "Elm Street", "--currency", "ELM",
        "--home", "Sunny House", "--broker-host", "127.0.0.1",
        "--broker-port", str(broker_port), "--block-interval-ms", "1000",
        "--devices-from", str(devices), "--out", str(elm),
    )  # fmt: skip
    broker = Child(
        "mosquitto",
        ["mosquitto", "-c", str(elm / "broker" / "mosquitto.conf")],
        folder / "mosquitto.log",
    ).start()
    children.append(broker)
    wait_for_port(broker_port, 10, broker)

    # The owner's own edit of the founder's edge.yaml: a known API port, no zeroconf.
    sunny_config = elm / "home" / "edge.yaml"
    document = yaml.safe_load(sunny_config.read_text())
    document["api"] = {"port": free_port(), "zeroconf": False}
    write_yaml(sunny_config, document)
    sunny = EdgeProcess(sunny_config, folder / "sunny.log")
    children.append(sunny.child)
    sunny.start(TIMEOUT_S)

    invited = edge("community", "invite", "Garden Flat", "--registrar", str(elm / "registrar"))
    invitation = next(line.split()[-1] for line in invited.splitlines() if "text:" in line)

    # Garden Flat's edge controller, installed but in no community yet: it waits for an
    # invitation on its API (the port Home Assistant is given stays the same after it joins).
    garden_port = free_port()
    garden_config = folder / "garden" / "edge.yaml"
    write_yaml(
        garden_config,
        {
            "name": "Garden Flat",
            "data_dir": str(garden_config.parent / "data"),
            "api": {"port": garden_port, "zeroconf": False},
        },
    )
    garden = EdgeProcess(garden_config, folder / "garden.log").launch()
    children.append(garden.child)
    wait_for_port(garden_port, TIMEOUT_S, garden.child)

    registrar = HomeAccess("Sunny House", "sunny-house", sunny.account, sunny.url, sunny.token)
    hass = start_hass(folder / "home-assistant", [registrar], free_port())
    children.append(hass.child)
    return Street(sunny, garden, garden_port, invitation, hass)


async def test_a_home_joins_and_is_approved_in_home_assistant(
    street: Street, tmp_path: Path
) -> None:
    sunny, garden = street.sunny, street.garden
    async with HassClient(street.hass.url) as client:
        client.token = street.hass.token
        [registrar_entry] = await client.entries()
        assert registrar_entry["title"] == "Sunny House"

        garden_entry = await _add_by_invitation(client, street)
        garden.wait_ready(TIMEOUT_S)
        status = home_api(_access(garden, "Garden Flat"), "GET", "status")
        assert status["community"]["name"] == "Elm Street", status

        # Sunny House's Home Assistant: each waiting request is a repair, the founder's own
        # home's too (found gave it an invitation it took at once); approving one (with an
        # opening top-up) registers that home by its name.
        for name, topup in (("Sunny House", 10), ("Garden Flat", 100)):
            issue = await _waiting_repair(client, name)
            await _approve(client, issue["issue_id"], topup=topup)

        async def named() -> bool:
            members = home_api(_access(garden, "Garden Flat"), "GET", "members")["members"]
            return {m["name"] for m in members} >= {"Sunny House", "Garden Flat"}

        await eventually(named, TIMEOUT_S, "both homes named in Garden Flat's ledger")
        garden_wallet = await eventually(
            lambda: _funded(garden), TIMEOUT_S, "the opening top-up in Garden Flat's wallet"
        )
        assert garden_wallet["account_name"] == "Garden Flat"
        # Decided requests leave no repair behind.
        [listed] = await client.ws([{"type": "repairs/list_issues"}])
        assert [i["issue_id"] for i in listed["issues"] if i["domain"] == DOMAIN] == []

        # Sunny House offers its battery's energy to the street (refused until the block
        # with the battery's registration is in its own ledger).
        async def offered() -> dict[str, Any] | None:
            answer: dict[str, Any] = home_api(
                _access(sunny, "Sunny House"),
                "POST",
                "offers",
                {"resource": BATTERY, "mode": "energy", "quantity": 500, "price": 250},
            )
            if answer.get("error", {}).get("code") == "unknown_resource":
                return None
            return answer

        offer = await eventually(offered, TIMEOUT_S, "Sunny House's offer")
        assert offer.get("seller_name") == "Sunny House", offer

        # Garden Flat's offer event names the seller.
        async def offer_event() -> dict[str, Any] | None:
            states = await client.request("GET", "/api/states", step="states")
            return next(
                (
                    s["attributes"]
                    for s in states
                    if s["entity_id"].startswith("event.garden_flat")
                    and s["attributes"].get("offer_id") == offer["id"]
                ),
                None,
            )

        event = await eventually(offer_event, TIMEOUT_S, "Garden Flat's offer_received event")
        assert (event["seller"], event["seller_name"]) == (sunny.account, "Sunny House")

        # The owner's dashboard: the card without `home:`, every home of this Home
        # Assistant in it (the ready-made one names the demo's homes).
        await client.ws(
            [
                {
                    "type": "lovelace/config/save",
                    "url_path": DASHBOARD_PATH,
                    "config": FALLBACK_DASHBOARD,
                }
            ]
        )
        async with headless_chromium(artifacts=tmp_path) as browser:
            page = await browser.new_page(width=1280, height=1400)
            await page.open(f"{street.hass.url}/{DASHBOARD_PATH}")
            await page.page.wait_for_url("**/auth/authorize**", timeout=30_000)
            login = street.hass.login
            await page.fill("input[autocomplete=username]", login.username)
            await page.fill("input[autocomplete=current-password]", login.password)
            await page.find("input[autocomplete=current-password]").first.press("Enter")
            await page.page.wait_for_url(f"**/{DASHBOARD_PATH}/**", timeout=30_000)

            flat = f'section.home[data-entry-id="{garden_entry}"]'
            row = await page.wait_for(
                f'{flat} .offers .offer[data-offer-id="{offer["id"]}"]', within=TIMEOUT_S
            )
            shown = await row.inner_text()
            assert "from Sunny House" in shown and sunny.account[:8] not in shown, shown

            await page.click(f'{flat} .offers button.accept[data-offer="{offer["id"]}"]')
            trade = await page.wait_for(
                f"{flat} .trades .trade", text=re.compile("Sunny House"), within=TIMEOUT_S
            )
            shown = await trade.inner_text()
            assert re.search(r"Bought\s+0\.5\d* kWh\s+from\s+Sunny House", shown), shown
            assert sunny.account[:8] not in shown, shown
            # The registrar's home, in the same card, names its buyer too.
            sold = await page.wait_for(
                f'section.home[data-entry-id="{registrar_entry["entry_id"]}"] .trades .trade',
                text=re.compile("Garden Flat"),
                within=TIMEOUT_S,
            )
            assert re.search(r"Sold\s+0\.5\d* kWh\s+to\s+Garden Flat", await sold.inner_text())
            await page.screenshot("community-card.png")
            page.assert_no_console_errors()

        [made] = home_api(_access(garden, "Garden Flat"), "GET", "trades")["trades"]
        assert (made["seller_name"], made["buyer_name"]) == ("Sunny House", "Garden Flat")


def _access(home: EdgeProcess, name: str) -> HomeAccess:
    return HomeAccess(name, "", home.account, home.url, home.token)


async def _add_by_invitation(client: HassClient, street: Street) -> str:
    """Add Garden Flat as its owner does: host, port and token, then the invitation's text
    in the "join a community" step; the new entry's id."""
    step = "add Garden Flat"
    flow = await client.request(
        "POST",
        "/api/config/config_entries/flow",
        {"handler": DOMAIN, "show_advanced_options": False},
        step=step,
    )
    flow_url = f"/api/config/config_entries/flow/{flow['flow_id']}"
    token_file = street.garden.config.parent / "data" / "api-token"
    form = await client.request(
        "POST",
        flow_url,
        {"host": "127.0.0.1", "port": street.garden_port, "token": token_file.read_text().strip()},
        step=step,
    )
    assert (form["type"], form["step_id"]) == ("form", "join"), form
    # A mistyped invitation is refused with a reason and the form stays open.
    wrong = await client.request("POST", flow_url, {"invitation": "EP2P1:nonsense"}, step=step)
    assert wrong["errors"] == {"base": "malformed_invitation"}, wrong
    created = await client.request("POST", flow_url, {"invitation": street.invitation}, step=step)
    assert (created["type"], created["title"]) == ("create_entry", "Garden Flat"), created
    await client.wait_entries_loaded(2)
    return str(created["result"]["entry_id"])


async def _membership_issue(client: HassClient, name: str) -> dict[str, Any] | None:
    """The repair issue of `name`'s waiting membership request, if Home Assistant has one."""
    [listed] = await client.ws([{"type": "repairs/list_issues"}])
    return next(
        (
            issue
            for issue in listed["issues"]
            if issue["domain"] == DOMAIN
            and issue["translation_key"] == "membership_request"
            and (issue["translation_placeholders"] or {}).get("name") == name
        ),
        None,
    )


async def _waiting_repair(client: HassClient, name: str) -> dict[str, Any]:
    """The membership repair of `name` once the entry's poll (every 30 s) has found it."""

    async def found() -> dict[str, Any] | None:
        return await _membership_issue(client, name)

    return await eventually(found, 90, f"the membership repair of {name}")


async def _approve(client: HassClient, issue_id: str, topup: float) -> None:
    """The repair's fix flow as Settings → Repairs runs it: Approve, then the top-up."""
    step = "approve the membership request"
    flow = await client.request(
        "POST", "/api/repairs/issues/fix", {"handler": DOMAIN, "issue_id": issue_id}, step=step
    )
    assert flow["type"] == "menu" and "approve" in flow["menu_options"], flow
    url = f"/api/repairs/issues/fix/{flow['flow_id']}"
    form = await client.request("POST", url, {"next_step_id": "approve"}, step=step)
    assert (form["type"], form["step_id"]) == ("form", "approve"), form
    done = await client.request("POST", url, {"topup": topup}, step=step)
    assert done["type"] == "create_entry", done


async def _funded(home: EdgeProcess) -> dict[str, Any] | None:
    wallet: dict[str, Any] = home_api(_access(home, ""), "GET", "wallet")
    return wallet if wallet.get("balance") == 100_000 else None
