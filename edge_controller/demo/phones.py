"""The demo's phones: plugged into a home's virtual hub through the simulation control
topics, as a person plugs one in, then paired and charged as the owner would."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiomqtt

from edge_controller.app.home import Home
from edge_controller.refusal import Refusal
from edge_controller.simulation.control import plug_topic, send_control
from edge_controller.simulation.plan import TOPIC_PREFIX, HomePlan

log = logging.getLogger(__name__)

# The consumer's phone buys 1 Wh, paid from a wallet the flat funds when the phone is paired.
USB_CHARGE_WH = 1
USB_WALLET_FUND = 1_000


def plug_messages(plan: HomePlan) -> list[tuple[str, Any]]:
    """The control messages that plug `plan`'s phones into its home's virtual hub."""
    return [(plug_topic(TOPIC_PREFIX, plan.slug, port), phone) for port, phone in plan.phones]


async def plug_phones(host: str, port: int, plan: HomePlan) -> None:
    """Plug `plan`'s phones in, over the device broker at `host`:`port`."""
    messages = plug_messages(plan)
    if messages:
        async with aiomqtt.Client(host, port) as client:
            for topic, payload in messages:
                await client.publish(topic, json.dumps(payload).encode(), qos=1)


def plug_phones_blocking(host: str, port: int, plan: HomePlan) -> None:
    """`plug_phones` for callers without an event loop."""
    messages = plug_messages(plan)
    if messages:
        send_control(host, port, messages)


async def phone_buys_a_charge(home: Home) -> None:
    """The owner pairs the phone that was plugged in (funding its wallet from the home)
    and it buys a charge, as soon as the port's registration and the top-up are in."""
    usb = home.usb
    assert usb is not None
    for _ in range(240):
        await asyncio.sleep(0.5)
        port = usb.ports[1]
        try:
            if port.pairing_code is not None:
                paired = await usb.pair(port.pairing_code, USB_WALLET_FUND)
                log.info("%s: phone %s paired with wallet %s", home.name, *paired.values())
            if port.device is not None and port.pairing_code is None:
                session = await usb.purchase(1, energy_wh=USB_CHARGE_WH)
                print(
                    f"usb: a phone on {home.name}'s port 1 buys {USB_CHARGE_WH} Wh"
                    f" (trade {str(session['trade'])[:10]})",
                    flush=True,
                )
                return
        except Refusal as exc:
            # Registration or top-up not in the ledger yet: try again shortly.
            log.debug("%s: phone cannot buy yet: %s", home.name, exc.message)
