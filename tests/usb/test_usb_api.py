"""The USB charging API as Home Assistant and the status page use it: GET usb, purchase,
stop, pair, PUT a port, the documented errors, and the `usb` / `usb_session` events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge_controller.api import ApiServer
from tests.edge.api_support import Client, error_message

from .usb_support import PORT_RESOURCE, PRICE, UsbRig, new_rig, phone


@pytest.fixture
async def api(tmp_path: Path, mosquitto: Any) -> AsyncIterator[tuple[UsbRig, Client]]:
    rig = new_rig(tmp_path, mosquitto.port)
    home = await rig.start()
    server = ApiServer(home, "usb-token")
    await server.start()
    async with aiohttp.ClientSession() as session:
        yield rig, Client(session, server.url, "usb-token")
    await server.stop()
    await rig.stop()


async def test_get_usb_shows_the_hub_meter_ports_and_an_unknown_phones_pairing_code(
    api: tuple[UsbRig, Client],
) -> None:
    rig, client = api
    rig.world.plug(1, phone())
    await rig.step()
    usb = await client.get("usb")
    assert usb["hub"]["switchable"] is True and usb["hub"]["error"] is None
    assert "2109:2817" in usb["hub"]["description"]
    assert usb["meter"]["ok"] is True and "FNIRSI" in usb["meter"]["description"]
    assert usb["price"] == PRICE and usb["free_trickle"] is False
    first, second = usb["ports"]
    assert first["resource"] == PORT_RESOURCE and first["enabled"] and not first["powered"]
    assert first["attached"]["identity"]["serial"] == "PHONE1"
    assert first["attached"]["pairing_code"] and first["attached"]["wallet"] is None
    assert second["attached"] is None and first["session"] is None and usb["sessions"] == []


async def test_a_phone_is_paired_bought_for_and_stopped_through_the_api(
    api: tuple[UsbRig, Client],
) -> None:
    rig, client = api
    rig.world.plug(1, phone())
    await rig.step()
    answer = await client.call("POST", "usb/1/purchase", {"energy_wh": 1})
    assert answer.status == 409 and answer.body["error"]["code"] == "not_paired"
    code = answer.body["error"]["pairing_code"]
    assert code == (await client.get("usb"))["ports"][0]["attached"]["pairing_code"]
    await client.refused("POST", "usb/pair", {"code": "000000x"}, status=404, code="unknown_code")
    paired = await client.post("usb/pair", {"code": code, "fund": 500})
    assert paired["phone"] == "18d1:4ee7:PHONE1" and paired["wallet"].startswith("ep")
    await rig.seal()

    session = await client.post("usb/1/purchase", {"energy_wh": 2})
    assert session["state"] == "charging" and session["wallet"] == paired["wallet"]
    await client.refused(
        "POST", "usb/1/purchase", {"energy_wh": 1}, status=409, code="session_running"
    )
    await rig.step(30)
    port = (await client.get("usb"))["ports"][0]
    assert port["powered"] and port["power_mw"] > 20_000 and port["voltage_mv"] > 4_500
    assert port["session"]["id"] == session["id"] and port["session"]["delivered_mwh"] > 100

    answer = await client.call("POST", "usb/1/stop", {})
    assert answer.status == 200, answer.body
    stopped = answer.body
    assert stopped["state"] == "ended" and stopped["reason"] == "stopped"
    assert stopped["paid"] + stopped["refunded"] == stopped["cost"]
    assert not rig.world.powered(1)
    await client.refused("POST", "usb/1/stop", status=409, code="no_session")

    assert rig.home is not None
    events = [e["event"] for e in rig.home.events.history]
    assert "usb" in events
    phases = [e["data"]["phase"] for e in rig.home.events.history if e["event"] == "usb_session"]
    assert phases == ["started", "ended"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "either"),
        ({"energy_wh": 1, "amount": 5}, "either"),
        ({"energy_wh": 0}, "at least 1"),
        ({"energy_wh": "2"}, "integer"),
        ({"energy_wh": True}, "integer"),
        ({"amount": 1}, "less than 1 Wh"),
        ({"energy_wh": 1, "wallet": "ep-nobody"}, "not kept here"),
    ],
)
async def test_invalid_purchases_are_refused_with_the_field_named(
    api: tuple[UsbRig, Client], body: dict[str, Any], message: str
) -> None:
    rig, client = api
    rig.world.plug(1, phone())
    await rig.step()
    text = await client.refused("POST", "usb/1/purchase", body, status=422, code="invalid_field")
    assert message in text
    assert not rig.world.powered(1)


async def test_ports_that_cannot_sell_say_why(api: tuple[UsbRig, Client]) -> None:
    rig, client = api
    await client.refused(
        "POST", "usb/7/purchase", {"energy_wh": 1}, status=404, code="unknown_port"
    )
    await client.refused("POST", "usb/x/stop", status=404, code="unknown_port")
    # A digit to str.isdigit that int() refuses: a 404, not an internal error.
    await client.refused("POST", "usb/\u00b2/stop", status=404, code="unknown_port")
    await client.refused("POST", "usb/1/purchase", {"energy_wh": 1}, status=409, code="no_device")
    answer = await client.call("PUT", "usb/1", {"enabled": False})
    assert answer.status == 200 and answer.body["enabled"] is False
    rig.world.plug(1, phone())
    await rig.step()
    await client.refused(
        "POST", "usb/1/purchase", {"energy_wh": 1}, status=409, code="port_disabled"
    )
    await client.refused("PUT", "usb/1", {"enabled": "no"}, status=422, code="invalid_field")
    assert (await client.get("usb"))["ports"][0]["enabled"] is False
    # Port 2 is not registered in the ledger: the purchase says so, nothing is powered.
    rig.world.plug(2, phone("PHONE2"))
    await rig.step()
    code = (await client.get("usb"))["ports"][1]["attached"]["pairing_code"]
    await client.post("usb/pair", {"code": code, "fund": 100})
    await rig.seal()
    answer = await client.call("POST", "usb/2/purchase", {"energy_wh": 1})
    assert answer.status == 409, answer.body
    assert error_message(answer, "meter_missing")
    assert not rig.world.powered(2)
