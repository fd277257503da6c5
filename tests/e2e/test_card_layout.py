"""The Energy P2P card in a real browser (headless Chromium), on its own: fed what the
integration's `energy_p2p/subscribe` sends, at a phone's width (390 px) and in a 1400 px
window. Nothing reaches past the card's edge or widens the page; parties are named by the
name the edge controller gives them, else by a short form of their account id; a private
offer to another home is shown without Accept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.browser import BrowserPage, headless_chromium

CARD = (
    Path(__file__).resolve().parents[2]
    / "custom_components"
    / "energy_p2p"
    / "frontend"
    / "energy-p2p-card.js"
)
US = "ep" + "a1" * 20
SUNNY = "ep" + "b2" * 20
HYDROGEN = "ep" + "c3" * 20
NAMELESS = "ep" + "d4" * 20
HOUR = 3_600_000
NOW = 1_800_000_000_000


def offer(offer_id: str, seller: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": offer_id,
        "seller": seller,
        "mode": "energy",
        "quantity": 3000,
        "remaining": 1000,
        "unit": "Wh",
        "price": 260,
        "start": NOW + HOUR,
        "end": NOW + 2 * HOUR,
        "expires": NOW + HOUR,
        "status": "open",
        "private_to": [],
        "time": NOW,
        **extra,
    }


def trade(trade_id: str, seller: str, buyer: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": trade_id,
        "offer": "o",
        "seller": seller,
        "buyer": buyer,
        "role": "buyer" if buyer == US else "seller",
        "mode": "energy",
        "energy_wh": 123_456,
        "delivered_wh": 120_001,
        "cost": 98_765_432,
        "paid": 98_000_000,
        "refunded": 765_432,
        "status": "settled",
        "disputed": True,
        "time": NOW,
        **extra,
    }


HOME: dict[str, Any] = {
    "entry_id": "entry-1",
    "title": "Flat 3 with a rather long name for a phone",
    "node_id": US,
    "currency": "DEMO",
    "online": True,
    "wallet": {
        "balance": 123_456_789,
        "escrow": 98_765_432,
        "energy_bought_wh": 1_234_567,
        "energy_sold_wh": 7_654_321,
        "currency": "DEMO",
    },
    "offers": [
        offer("public", SUNNY, seller_name="Sunny House"),
        offer("nameless", NAMELESS),
        offer(
            "to-hydrogen",
            SUNNY,
            seller_name="Sunny House",
            private_to=[HYDROGEN],
            to_names=["Hydrogen House"],
        ),
        offer("to-us", HYDROGEN, seller_name="Hydrogen House", private_to=[US], to_names=[None]),
    ],
    "trades": [
        trade("t-named", SUNNY, US, seller_name="Sunny House", buyer_name="Flat 3"),
        trade("t-nameless", US, NAMELESS, status="active", disputed=False),
    ],
    "usb": {
        "hub": {
            "description": "Virtual 4-port USB-PD hub with a long description",
            "switchable": True,
        },
        "meter": {"description": "Virtual INA219 meter"},
        "price": 300,
        "ports": [
            {
                "port": 1,
                "enabled": True,
                "powered": True,
                "power_mw": 9650,
                "attached": {
                    "identity": {"manufacturer": "Fairphone", "product": "Fairphone 5 (USB-PD)"},
                    "wallet": "ep" + "e5" * 20,
                    "wallet_name": "Anna's phone",
                    "since": NOW,
                },
                "session": None,
            }
        ],
        "sessions": [],
    },
    "market": {
        "trades": 2,
        "volume_wh": 246_912,
        "average_price": 260,
        "last_price": 260,
        "history": [
            {"time": NOW - HOUR, "price": 250, "energy_wh": 1000},
            {"time": NOW, "price": 260, "energy_wh": 2000},
        ],
    },
}

# A page with the card and a stand-in for Home Assistant's `hass` object: its WebSocket
# subscription answers at once with what the integration would send.
PAGE = """<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body { margin: 0; padding: 8px; font-family: sans-serif; }</style></head>
<body><script type="module">%s
const card = document.createElement("energy-p2p-card");
card.setConfig({});
document.body.appendChild(card);
card.hass = {
  language: "en",
  locale: { language: "en", time_format: "24" },
  connection: {
    subscribeMessage(callback) {
      // As Home Assistant's: the first message arrives after the subscription is made.
      setTimeout(() => callback(%s), 0);
      return Promise.resolve(() => undefined);
    },
  },
  callService: () => Promise.resolve(),
};
</script></body></html>"""


async def overflow(page: BrowserPage) -> dict[str, Any]:
    """How far the page and anything inside the card reach past their edges (px)."""
    result: dict[str, Any] = await page.evaluate(
        """() => {
          const card = document.querySelector("energy-p2p-card");
          const box = card.shadowRoot.querySelector("ha-card").getBoundingClientRect();
          const beyond = [];
          for (const el of card.shadowRoot.querySelectorAll("*")) {
            const r = el.getBoundingClientRect();
            if (r.width && r.right > box.right + 0.5) {
              beyond.push(`${el.tagName.toLowerCase()}.${el.className}: ${r.right - box.right}`);
            }
          }
          return {
            page: document.documentElement.scrollWidth - window.innerWidth,
            beyond,
          };
        }"""
    )
    return result


@pytest.mark.parametrize("width", [390, 1400])
async def test_the_card_fits_and_names_parties(width: int, tmp_path: Path) -> None:
    html = PAGE % (CARD.read_text(), json.dumps({"entries": [HOME]}))
    async with headless_chromium(artifacts=tmp_path) as browser:
        page = await browser.new_page(width=width, height=900)
        await page.page.set_content(html)
        await page.wait_for(".trades .trade")

        measured = await overflow(page)
        assert measured["page"] <= 0, f"the page is {measured['page']} px wider than the window"
        assert measured["beyond"] == [], measured["beyond"]

        # Named where the edge controller names them, else a short account id.
        short = f"{NAMELESS[:8]}…{NAMELESS[-6:]}"
        sellers = await page.texts(".offer .seller")
        assert sellers == ["Sunny House", short, "Sunny House", "Hydrogen House"]
        assert await page.texts(".trade .counterparty") == ["Sunny House", short]
        assert await page.texts(".port .paired") == ["paired: Anna's phone"]

        # Accept only where this home may accept: not on its own offers, nor on an offer
        # private to another home.
        accepting = await page.evaluate(
            """() => [...document.querySelector("energy-p2p-card").shadowRoot
                .querySelectorAll(".offer button.accept")].map((b) => b.dataset.offer)"""
        )
        assert accepting == ["public", "nameless", "to-us"]
        assert "to Hydrogen House" in await page.texts(".offer .private")
        assert "to you" in await page.texts(".offer .private")
        await page.screenshot(f"card-{width}.png")
        page.assert_no_console_errors()
