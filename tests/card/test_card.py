"""The dashboard card in a real browser (headless Chromium), outside Home Assistant.

A harness page loads the card's real module and hands it a `hass` object of the shape
Home Assistant's frontend gives cards: `connection.subscribeMessage` delivers what the
integration's `energy_p2p/subscribe` command sends (payload.json, with its times moved to
now) and `callService` records each action the card calls, or refuses it as Home
Assistant would. The same card inside a running Home Assistant is the end-to-end test's.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from aiohttp import web

from tests.browser import BrowserPage, HeadlessChromium, headless_chromium

CHECKOUT = Path(__file__).resolve().parents[2]
CARD_JS = CHECKOUT / "custom_components" / "energy_p2p" / "frontend" / "energy-p2p-card.js"
PAYLOAD: dict[str, Any] = json.loads((Path(__file__).parent / "payload.json").read_text())
ENTRY_ID = "01JDEMOFLAT3ENTRY0000000000"
NODE_ID = "epdd1f1cd600abe2eb0b23318a2e00e33a44a8eb44"
TIME_FIELDS = {"time", "start", "end", "expires", "started", "ended", "since"}

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Home Assistant's default light theme variables, so the card looks as it will there.
HARNESS = """<!doctype html>
<html><head><meta charset="utf-8"><title>Energy P2P card</title>
<link rel="icon" href="data:,">
<style>
  html { --primary-color: #03a9f4; --text-primary-color: #fff; --primary-text-color: #212121;
    --secondary-text-color: #727272; --divider-color: rgba(0, 0, 0, .12);
    --card-background-color: #fff; --error-color: #db4437; --success-color: #43a047;
    --warning-color: #ffa600; }
  body { margin: 0; padding: 16px; background: #fafafa;
    font-family: Roboto, "Noto Sans", "DejaVu Sans", sans-serif; }
  #dashboard { width: 560px; }
</style>
<script>
  // What the card did, for the test to read.
  window.subscriptions = [];
  window.unsubscribed = 0;
  window.serviceCalls = [];
  // service name -> the error Home Assistant answers with instead of success.
  window.serviceErrors = {};
  window.subscribeError = null;
  const listeners = [];
  window.push = (payload) => listeners.forEach((listener) => listener(payload));
  window.fakeHass = {
    language: "en",
    locale: { language: "en" },
    connection: {
      subscribeMessage(callback, message) {
        window.subscriptions.push(message);
        if (window.subscribeError) return Promise.reject(window.subscribeError);
        listeners.push(callback);
        // As Home Assistant's command does: the current data right after subscribing.
        setTimeout(() => callback(window.payload), 0);
        return Promise.resolve(() => {
          listeners.splice(listeners.indexOf(callback), 1);
          window.unsubscribed += 1;
        });
      },
    },
    callService(domain, service, data, target, notifyOnError) {
      window.serviceCalls.push({ domain, service, data, notifyOnError });
      const error = window.serviceErrors[service];
      return new Promise((resolve, reject) =>
        setTimeout(() => (error ? reject(error) : resolve({ context: {} })), 50));
    },
  };
  window.showCard = (config) => {
    const card = document.createElement("energy-p2p-card");
    card.setConfig(config);
    card.hass = window.fakeHass;
    document.getElementById("dashboard").replaceChildren(card);
    return card.getCardSize();
  };
</script>
<script type="module" src="/energy-p2p-card.js"></script>
</head><body><div id="dashboard"></div></body></html>
"""


def payload_now(**entry_changes: Any) -> dict[str, Any]:
    """payload.json with its times moved so that its newest moment is now."""
    data = copy.deepcopy(PAYLOAD)
    data.pop("_about")
    shift = int(time.time() * 1000) - data["entries"][0]["offers"][-1]["time"]

    def move(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                key: item + shift if key in TIME_FIELDS and isinstance(item, int) else move(item)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [move(item) for item in value]
        return value

    moved: dict[str, Any] = move(data)
    moved["entries"][0].update(entry_changes)
    return moved


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def harness_url() -> AsyncIterator[str]:
    """The harness page and the card's real module, served over loopback."""

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=HARNESS, content_type="text/html")

    async def card(_: web.Request) -> web.FileResponse:
        return web.FileResponse(CARD_JS, headers={"Content-Type": "text/javascript"})

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/energy-p2p-card.js", card)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HeadlessChromium]:
    """One headless Chromium for the module; screenshots go to pytest's tmp path."""
    async with headless_chromium(artifacts=tmp_path_factory.mktemp("card-artifacts")) as browser:
        yield browser


async def open_card(
    chromium: HeadlessChromium,
    url: str,
    config: dict[str, Any] | None = None,
    payload: dict[str, Any] | None = None,
    frozen_at: float | None = None,
) -> BrowserPage:
    """A new tab showing the card with `config`, fed `payload` (default: payload.json)."""
    page = await chromium.new_page(
        width=600, height=1200, scale=2, frozen_at=frozen_at, timezone="UTC"
    )
    await page.open(url)
    await page.evaluate("payload => { window.payload = payload; }", payload or payload_now())
    await page.evaluate(
        "config => window.showCard(config)", config or {"type": "custom:energy-p2p-card"}
    )
    return page


async def service_calls(page: BrowserPage) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = await page.evaluate("window.serviceCalls")
    return calls


async def test_card_shows_wallet_offers_trades_usb_and_market(
    chromium: HeadlessChromium, harness_url: str
) -> None:
    # payload.json as it is, seen at its own time: the screenshot is the same on every run.
    as_recorded = {key: value for key, value in PAYLOAD.items() if key != "_about"}
    recorded_now = as_recorded["entries"][0]["offers"][-1]["time"] / 1000
    page = await open_card(
        chromium, harness_url, {"type": "custom:energy-p2p-card"}, as_recorded, recorded_now
    )

    balance = await page.wait_for(".wallet .balance")
    assert await balance.inner_text() == "187.42 DEMO"
    assert await page.texts(".wallet .escrow") == ["1.25 DEMO"]
    assert await page.texts(".wallet .bought") == ["2.35 kWh"]
    assert await page.texts(".card-header") == ["Flat 3 online"]

    offers = await page.texts(".offers .offer")
    assert len(offers) == 2
    # The fuel cell's capacity offer: seller by its name, what is left, its price per kWh.
    assert "from Hydrogen House" in offers[0] and "ep5c0fdc" not in offers[0]
    # A seller the registrar has not named is told apart by its account's short form.
    assert "from epf7e7d1…ef9156" in offers[1]
    assert await page.count(".offers .offer .seller.mono") == 1
    assert "3.00 of 5.00 kW" in offers[0]
    assert "0.32 DEMO/kWh" in offers[0]
    assert "1.50 of 1.50 kWh" in offers[1]
    assert await page.count(".offers .offer button.accept:enabled") == 2

    statuses = await page.find(".trades .trade").evaluate_all(
        "rows => rows.map(row => row.dataset.status)"
    )
    assert statuses == ["active", "settled", "terminated"]
    trades = await page.texts(".trades .trade")
    assert "Bought 1.20 kWh from Sunny House" in trades[1]
    assert await page.find(".trades .trade .counterparty").evaluate_all(
        "spans => spans.map(span => span.title)"
    ) == [t["seller"] for t in as_recorded["entries"][0]["trades"]]
    assert "1.15 kWh delivered" in trades[1]
    assert "paid 0.35 DEMO, refunded 0.02 DEMO" in trades[1]

    ports = await page.texts(".usb .port")
    assert len(ports) == 3
    assert "Google Pixel 8" in ports[0]
    assert "2.14 of 5.00 Wh" in ports[0]  # the running session's progress
    assert "7.5 W" in ports[0]
    # Only the attached phone with no session running can buy.
    assert await page.count(".usb .port button.buy:enabled") == 1
    assert await page.count('.usb .port[data-port="2"] button.buy:enabled') == 1

    chart = page.find(".market svg")
    assert await chart.count() == 1
    assert await page.count(".market svg rect.volume") == 8
    points = await page.find(".market svg polyline.price").get_attribute("points")
    assert points is not None
    assert len(points.split()) == 8
    assert await page.texts(".market .last-price") == ["0.285 DEMO/kWh"]

    await page.screenshot(
        "card.png", selector="energy-p2p-card", also=[CHECKOUT / "docs" / "card.png"]
    )
    assert await page.evaluate("window.subscriptions") == [{"type": "energy_p2p/subscribe"}]
    page.assert_no_console_errors()


async def test_accept_calls_the_accept_offer_action_for_that_offer(
    chromium: HeadlessChromium, harness_url: str
) -> None:
    page = await open_card(chromium, harness_url)
    await page.click(".offers .offer button.accept")

    await page.wait_for(".offers .message.done", text="Accepted")
    assert await service_calls(page) == [
        {
            "domain": "energy_p2p",
            "service": "accept_offer",
            "data": {
                "config_entry_id": ENTRY_ID,
                "offer_id": "6f5356cda661f2cb2b6102e8018599dc505a9db8c87ec50dfe8bec73805cf658",
            },
            "notifyOnError": False,
        }
    ]
    page.assert_no_console_errors()


async def test_a_refused_accept_shows_home_assistants_reason_at_the_offer(
    chromium: HeadlessChromium, harness_url: str
) -> None:
    page = await open_card(chromium, harness_url)
    await page.evaluate(
        """() => { window.serviceErrors.accept_offer = {
            code: "service_validation_error",
            message: "The ledger refused the acceptance: insufficient_funds" }; }"""
    )
    await page.click(".offers .offer button.accept")

    error = await page.wait_for(".offers .message.error")
    assert await error.inner_text() == "The ledger refused the acceptance: insufficient_funds"
    # The offer can be tried again, and the other offer is untouched.
    assert await page.count(".offers .offer button.accept:enabled") == 2
    assert await page.count(".offers .message") == 1
    page.assert_no_console_errors()


async def test_buy_calls_buy_usb_charge_with_the_configured_energy(
    chromium: HeadlessChromium, harness_url: str
) -> None:
    page = await open_card(
        chromium, harness_url, {"type": "custom:energy-p2p-card", "usb_buy_wh": 10}
    )
    await page.click('.usb .port[data-port="2"] button.buy', text="Buy 10 Wh")

    await page.wait_for('.usb .port[data-port="2"] .message.done')
    calls = await service_calls(page)
    assert [(c["service"], c["data"]) for c in calls] == [
        ("buy_usb_charge", {"config_entry_id": ENTRY_ID, "port": 2, "energy_wh": 10})
    ]
    page.assert_no_console_errors()


async def test_pushed_updates_redraw_the_card_and_offline_disables_actions(
    chromium: HeadlessChromium, harness_url: str
) -> None:
    page = await open_card(chromium, harness_url)
    await page.wait_for(".trades .trade")
    update = payload_now()
    entry = update["entries"][0]
    new_trade = {
        **entry["trades"][0],
        "id": "f" * 64,
        "status": "settled",
        "time": entry["trades"][0]["time"] + 60_000,
    }
    entry["trades"].insert(0, new_trade)
    entry["offers"].append({**entry["offers"][0], "id": "e" * 64, "seller": NODE_ID})
    await page.evaluate("payload => window.push(payload)", update)

    await page.wait_for(f'.trades .trade[data-trade-id="{"f" * 64}"]')
    assert await page.count(".trades .trade") == 4
    # Our own offer cannot be accepted by us.
    assert await page.count(f'.offers .offer[data-offer-id="{"e" * 64}"] button.accept') == 0
    assert await page.texts(f'.offers .offer[data-offer-id="{"e" * 64}"] .chip') == [
        "open",
        "yours",
    ]

    entry["online"] = False
    await page.evaluate("payload => window.push(payload)", update)
    await page.wait_for(".chip.offline")
    assert await page.count("button.accept:enabled, button.buy:enabled") == 0
    # The last data stays on show.
    assert await page.texts(".wallet .balance") == ["187.42 DEMO"]
    page.assert_no_console_errors()


async def test_one_home_shows_only_its_sections_and_unsubscribes_when_removed(
    chromium: HeadlessChromium, harness_url: str
) -> None:
    page = await open_card(
        chromium,
        harness_url,
        {"type": "custom:energy-p2p-card", "entry_id": ENTRY_ID, "show": ["wallet", "trades"]},
    )
    await page.wait_for(".wallet .balance")
    assert await page.evaluate("window.subscriptions") == [
        {"type": "energy_p2p/subscribe", "entry_id": ENTRY_ID}
    ]
    assert await page.count(".offers, .usb, .market") == 0
    assert await page.count(".trades .trade") == 3

    await page.evaluate("document.getElementById('dashboard').replaceChildren()")
    await page.page.wait_for_function("window.unsubscribed === 1")
    page.assert_no_console_errors()


async def test_several_homes_each_get_their_part_or_one_is_chosen_by_name(
    chromium: HeadlessChromium, harness_url: str
) -> None:
    payload = payload_now()
    flat = payload["entries"][0]
    sunny = {
        **flat,
        "entry_id": "01JDEMOSUNNYENTRY000000000",
        "title": "Sunny House",
        "node_id": "epf7e7d1ce13f8e8827dad23ca5c1a794f0aef9156",
        "online": False,
        "usb": None,
    }
    payload["entries"].append(sunny)

    both = await open_card(chromium, harness_url, payload=payload)
    await both.wait_for(".home .wallet .balance")
    assert await both.texts(".card-header") == ["Energy P2P"]
    assert await both.texts(".home .home-header") == ["Flat 3 online", "Sunny House offline"]
    assert await both.count(".usb") == 1

    one = await open_card(
        chromium, harness_url, {"type": "custom:energy-p2p-card", "home": "sunny house"}, payload
    )
    await one.wait_for(".wallet .balance")
    assert await one.texts(".card-header") == ["Sunny House offline"]
    assert await one.count(".home") == 1
    assert await one.count(".usb") == 0

    none = await open_card(
        chromium, harness_url, {"type": "custom:energy-p2p-card", "home": "Attic"}, payload
    )
    await none.wait_for(".empty", text="No Energy P2P home is called Attic.")
    for page in (both, one, none):
        page.assert_no_console_errors()


async def test_a_refused_subscription_is_shown_in_the_card(
    chromium: HeadlessChromium, harness_url: str
) -> None:
    page = await chromium.new_page()
    await page.open(harness_url)
    await page.evaluate(
        """() => { window.subscribeError = {code: "not_found",
            message: "No Energy P2P entry 01GONE"}; }"""
    )
    await page.evaluate("config => window.showCard(config)", {"entry_id": "01GONE"})

    error = await page.wait_for(".card-error")
    assert await error.inner_text() == "Energy P2P: No Energy P2P entry 01GONE"
    page.assert_no_console_errors()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"entry_id": 5}, "entry_id must be the config entry id of an Energy P2P home"),
        ({"show": ["wallet", "charts"]}, "Unknown section charts in show"),
        ({"show": []}, "show must be a list of sections"),
        ({"home": ""}, "home must be the name or node id of an Energy P2P home"),
        ({"usb_buy_wh": 0}, "usb_buy_wh must be a whole number of Wh from 1 to 100000"),
        ({"usb_buy_wh": 2.5}, "usb_buy_wh must be a whole number of Wh"),
        ({"colour": "red"}, "Unknown option colour"),
    ],
)
async def test_a_wrong_configuration_is_refused_with_the_reason(
    chromium: HeadlessChromium, harness_url: str, config: dict[str, Any], message: str
) -> None:
    page = await chromium.new_page()
    await page.open(harness_url)
    error = await page.evaluate(
        """config => { try { window.showCard({type: "custom:energy-p2p-card", ...config}); }
                       catch (error) { return error.message; } return null; }""",
        config,
    )
    assert error is not None
    assert error.startswith(message)


def dashboard_cards(node: Any) -> list[dict[str, Any]]:
    """Every Energy P2P card configuration in a dashboard."""
    if isinstance(node, dict):
        found = [node] if node.get("type") == "custom:energy-p2p-card" else []
        return found + [card for value in node.values() for card in dashboard_cards(value)]
    if isinstance(node, list):
        return [card for item in node for card in dashboard_cards(item)]
    return []


async def test_the_ready_dashboards_cards_are_valid_and_show_their_home(
    chromium: HeadlessChromium, harness_url: str
) -> None:
    dashboard = yaml.safe_load((CHECKOUT / "dashboards" / "energy_p2p.yaml").read_text())
    cards = dashboard_cards(dashboard)
    assert len(cards) == 4
    payload = payload_now()
    flat = payload["entries"][0]
    payload["entries"] = [
        {**flat, "entry_id": f"01{name}", "title": name}
        for name in ("Sunny House", "Hydrogen House", "Flat 3")
    ]
    page = await chromium.new_page()
    await page.open(harness_url)
    await page.evaluate("payload => { window.payload = payload; }", payload)
    for config in cards:
        await page.evaluate("config => window.showCard(config)", config)
        await page.wait_for(".card-header", text=config["home"])
        assert await page.count(".home") == 1
    page.assert_no_console_errors()


async def test_the_card_is_offered_in_the_card_picker(
    chromium: HeadlessChromium, harness_url: str
) -> None:
    page = await chromium.new_page()
    await page.open(harness_url)
    picker = await page.evaluate("window.customCards")
    assert [card["type"] for card in picker] == ["energy-p2p-card"]
    assert picker[0]["name"] == "Energy P2P"
    stub = await page.evaluate("customElements.get('energy-p2p-card').getStubConfig()")
    assert stub == {"usb_buy_wh": 5}
    page.assert_no_console_errors()


async def test_counter_offers_on_our_offer_are_confirmed_or_declined_from_the_card(
    chromium: HeadlessChromium, harness_url: str
) -> None:
    payload = payload_now()
    entry = payload["entries"][0]
    ours = {**entry["offers"][1], "id": "e" * 64, "seller": NODE_ID, "price": 300}
    counter = {
        "offer": ours["id"],
        "buyer": "ep5c0fdc0000000000000000000000000000a0ea79",
        "quantity": 400,
        "unit": "Wh",
        "price": 285,
        "asking_price": 300,
        "cost": 114,
        "expires": ours["expires"],
        "open": True,
    }
    ours["counter_offers"] = [
        {**counter, "id": "c" * 64, "buyer_name": "Hydrogen House"},
        {**counter, "id": "d" * 64, "buyer_name": None},
    ]
    entry["offers"].append(ours)
    page = await open_card(chromium, harness_url, payload=payload)

    rows = await page.texts(".offers .counter-offer")
    assert len(rows) == 2
    assert "Counter-offer: 0.40 kWh at 0.285 DEMO/kWh" in rows[0]
    assert "you asked 0.30 DEMO/kWh" in rows[0]
    assert "from Hydrogen House" in rows[0] and "from ep5c0fdc…a0ea79" in rows[1]
    # Only our own offer has counter-offers to answer, and ours cannot be accepted.
    assert await page.count(".offers .offer button.accept:enabled") == 2
    await page.click(f'.counter-offer[data-counter-id="{"c" * 64}"] button.confirm-counter')
    await page.wait_for(".offers .counter-offer .message.done", text="Confirmed")
    await page.click(f'.counter-offer[data-counter-id="{"d" * 64}"] button.decline-counter')
    await page.wait_for(".offers .counter-offer .message.done", text="Declined")
    calls = await service_calls(page)
    assert [(c["service"], c["data"]) for c in calls] == [
        (
            "answer_counter_offer",
            {"config_entry_id": ENTRY_ID, "counter_offer_id": "c" * 64, "answer": "confirm"},
        ),
        (
            "answer_counter_offer",
            {"config_entry_id": ENTRY_ID, "counter_offer_id": "d" * 64, "answer": "decline"},
        ),
    ]
    page.assert_no_console_errors()
