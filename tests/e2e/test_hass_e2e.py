"""End to end: homes trading inside a real Home Assistant, seen in a real browser.

Mosquitto, three edge controller processes (PV + battery, fuel cell, a consumer) and
Home Assistant 2026.10 (Python 3.14, scripts/ha-python) set up through its own onboarding,
config-flow and WebSocket APIs (edge_controller/demo/hass.py). The flat's phone (plugged
into the consumer's virtual USB hub through the simulation control topics) is paired
through the flat's API and buys a 1 Wh charge through Home Assistant's
`energy_p2p.buy_usb_charge` action; while it charges, headless Chromium logs in on the real
login page, opens the Energy P2P dashboard and accepts an offer there; the trade must reach
the card and every home's ledger. Then the charge is followed to its cut-off in the flat's
API and in the card. Screenshots go to docs/ and the test's folder; at the end no process
may be left behind.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Error as PlaywrightError

from edge_controller.demo.hass_client import DASHBOARD_PATH, HassClient, HassError, HomeAccess
from tests.browser import BrowserPage, headless_chromium
from tests.e2e.hass_support import Showcase, eventually, home_api, start_showcase

DOCS = Path(__file__).resolve().parents[2] / "docs"
pytestmark = pytest.mark.slow


@pytest.fixture
def showcase(tmp_path: Path) -> Iterator[Showcase]:
    running = start_showcase(tmp_path)
    try:
        yield running
    finally:
        left = running.stop()
        assert left == [], f"processes left behind by: {left}"


async def test_trading_and_usb_charging_in_home_assistant(
    showcase: Showcase, tmp_path: Path
) -> None:
    hass = showcase.hass
    solar, hydrogen, flat = (
        showcase.home("solar"),
        showcase.home("hydrogen"),
        showcase.home("consumer"),
    )
    async with HassClient(hass.url) as client:
        client.token = hass.token
        entries = {e["title"]: e["entry_id"] for e in await client.entries()}
        assert set(entries) == {solar.name, hydrogen.name, flat.name}

        async with headless_chromium(artifacts=tmp_path) as browser:
            page = await browser.new_page(width=1280, height=1400)
            # Home Assistant's app script arrives well after the card's module, as on a slow
            # Pi: the card must still be found once the app swaps in its own custom-element
            # registry (it used to show "Configuration error" until a reload).
            await page.delay("**/frontend_latest/app.*.js", 1.5)
            # The real login page: Home Assistant sends an unknown browser there.
            await page.open(f"{hass.url}/{DASHBOARD_PATH}")
            await page.page.wait_for_url("**/auth/authorize**", timeout=30_000)
            await page.fill("input[autocomplete=username]", hass.login.username)
            await page.fill("input[autocomplete=current-password]", hass.login.password)
            await page.find("input[autocomplete=current-password]").first.press("Enter")
            await page.page.wait_for_url(f"**/{DASHBOARD_PATH}/**", timeout=30_000)

            # Wallets of all three homes, and the community's first trades (the battery
            # crossing its threshold, the flat buying automatically).
            await page.wait_for(".wallet .balance", within=60)
            assert len(await page.texts(".wallet .balance")) == 3
            await page.wait_for(".trades .trade", within=120)

            # An open offer to accept: the fuel cell offers Sunny House (who never buys by
            # itself) energy privately, through Home Assistant's action. It delivers
            # tomorrow: the fuel cell's own offers may have committed all its power now.
            tomorrow = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
            await client.call_service(
                "energy_p2p",
                "create_offer",
                {
                    "config_entry_id": entries[hydrogen.name],
                    "quantity": 100,
                    "price": 0.31,
                    "start": tomorrow.isoformat(),
                    "end": (tomorrow + timedelta(hours=1)).isoformat(),
                    "to": [solar.account],
                },
            )

            # Sunny's card may list the fuel cell's public offers too (the flat buys those by
            # itself): accept the private one, found by its addressee.
            async def private_offer() -> str | None:
                offers = home_api(hydrogen, "GET", "offers?mine=1")["offers"]
                return next((o["id"] for o in offers if o["private_to"] == [solar.account]), None)

            offer_id = await eventually(private_offer, 30, "the private offer")
            sunny = f'section.home[data-entry-id="{entries[solar.name]}"]'
            button = await page.wait_for(
                f'{sunny} .offers .offer button.accept[data-offer="{offer_id}"]', within=60
            )
            await button.click()

            def trade_of_offer(trades: list[dict[str, Any]]) -> dict[str, Any] | None:
                return next((t for t in trades if t["offer"] == offer_id), None)

            async def in_every_ledger() -> list[dict[str, Any]] | None:
                found = [
                    trade_of_offer(home_api(h, "GET", "trades?all=1")["trades"])
                    for h in (solar, hydrogen, flat)
                ]
                return [t for t in found if t] if all(found) else None

            trades = await eventually(in_every_ledger, 60, "the accepted trade in every ledger")
            trade = trades[0]
            assert {t["id"] for t in trades} == {trade["id"]}
            assert (trade["seller"], trade["buyer"]) == (hydrogen.account, solar.account)
            await page.wait_for(f'{sunny} .trades .trade[data-trade-id="{trade["id"]}"]', within=30)

            # Then the phone: 1 Wh (the ledger's smallest quantity) takes the demo's 60 W
            # USB-PD phone about a minute; bought now so the browser sees it charging.
            session = await _buy_a_phone_charge(client, flat, entries[flat.name])
            assert session["state"] in ("starting", "charging"), session
            assert session["bought_mwh"] == 1_000, session
            # The flat's port, charging, in the card; the pictures once half of it is in.
            flat_card = f'section.home[data-entry-id="{entries[flat.name]}"]'
            flat_port = f'{flat_card} .usb .port[data-port="1"]'
            await page.wait_for(f'{flat_port} .session[data-state="charging"]', within=30)

            async def half_delivered() -> bool:
                live = home_api(flat, "GET", "usb")["ports"][0]["session"]
                return bool(live and live["delivered_mwh"] >= 500)

            await eventually(half_delivered, 90, "half of the USB charge delivered")
            await page.wait_for(f"{flat_port} .progress-text", text=re.compile(r"0\.[5-9]\d of"))
            await page.screenshot("dashboard.png", also=[DOCS / "dashboard.png"])
            await _card_screenshot(page, flat_card, tmp_path / "usb-session.png", DOCS)

            # The charge runs to its cut-off: the port powers off at the bought energy.
            async def ended() -> dict[str, Any] | None:
                sessions = home_api(flat, "GET", "usb")["sessions"]
                return next(
                    (s for s in sessions if s["id"] == session["id"] and s["state"] == "ended"),
                    None,
                )

            done = await eventually(ended, 90, "the USB charge's cut-off")
            assert done["reason"] == "delivered", done
            # It stops a second's energy early rather than late (edge_controller/usb).
            assert 950 <= done["delivered_mwh"] <= 1_050, done
            assert done["trade"] and done["cost"] > 0, done
            port = home_api(flat, "GET", "usb")["ports"][0]
            assert not port["powered"] and port["session"] is None, port
            # In the card: the port is off, the session's receipt is shown while the phone
            # stays plugged in, and a new charge can be bought.
            await page.wait_for(f"{flat_port} .chip", text=re.compile(r"^off$"), within=30)
            await page.wait_for(
                f'{flat_port} .session[data-state="ended"]',
                text=re.compile("delivered"),
                within=30,
            )
            assert await page.find(f"{flat_port} button.buy").is_enabled()
            await _card_screenshot(page, flat_card, tmp_path / "usb-cut-off.png")
            page.assert_no_console_errors()


async def _card_screenshot(
    page: BrowserPage, section: str, path: Path, also_in: Path | None = None
) -> None:
    """A picture of the card (with its frame) that holds `section`."""
    card = page.find("ha-card").filter(has=page.find(section)).last
    for attempt in range(3):
        try:
            await card.screenshot(path=str(path))
            break
        except PlaywrightError as exc:
            # The card renders itself anew on live events; a picture taken while it did is
            # taken again of the card as it is now.
            if "not attached" not in str(exc) or attempt == 2:
                raise
    if also_in is not None:
        shutil.copyfile(path, also_in / path.name)


async def _buy_a_phone_charge(
    client: HassClient, flat: HomeAccess, entry_id: str
) -> dict[str, Any]:
    """Pair the flat's phone with a funded wallet (its API, as the owner would with the
    code the phone shows), then buy 1 Wh through Home Assistant; the flat's session."""

    async def pairing_code() -> str | None:
        usb = home_api(flat, "GET", "usb")
        port = usb["ports"][0]
        return port["attached"]["pairing_code"] if port["attached"] else None

    code = await eventually(pairing_code, 30, "the phone on the flat's USB port")

    async def paired() -> dict[str, Any] | None:
        # Refused until the registrar's top-up of the flat is in its ledger.
        answer = home_api(flat, "POST", "usb/pair", {"code": code, "fund": 1_000})
        return None if "http_status" in answer else answer

    wallet = (await eventually(paired, 30, "pairing the phone"))["wallet"]

    async def bought() -> bool:
        # Refused (HTTP 400) until the wallet's funding is in the flat's ledger.
        try:
            await client.call_service(
                "energy_p2p",
                "buy_usb_charge",
                {"config_entry_id": entry_id, "port": 1, "energy_wh": 1},
            )
        except HassError as exc:
            if "HTTP 400" not in str(exc):
                raise
            return False
        return True

    await eventually(bought, 30, "buying a charge through Home Assistant")
    session: dict[str, Any] = home_api(flat, "GET", "usb")["ports"][0]["session"]
    assert session["wallet"] == wallet, session
    return session
