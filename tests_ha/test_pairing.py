"""Pairing a phone from Home Assistant: the port's pairing code sensor shows the code of a
phone seen for the first time, and the pair phone action binds it to a wallet (issue 5)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError

from custom_components.energy_p2p.const import DOMAIN

from .edge import EdgeHome, FakeEdge, until
from .entity_support import USB, demo_entry, fake_entry, state_of, with_site_and_usb

pytestmark = pytest.mark.usefixtures("socket_enabled")

PORT_1_CODE = "sensor.flat_3_usb_port_1_pairing_code"
PORT_2_CODE = "sensor.flat_3_usb_port_2_pairing_code"
PHONE = "04e8:6860:RZ8N"
WALLET = "ep" + "5" * 40


def unpaired_phone_on_port_2(edge: FakeEdge, code: str = "042817") -> dict[str, Any]:
    """Port 2 as the edge controller shows it with a new phone plugged in; also served."""
    port: dict[str, Any] = copy.deepcopy(USB["ports"][1])
    port["attached"] = {
        "identity": {
            "vendor_id": 0x04E8,
            "product_id": 0x6860,
            "serial": "RZ8N",
            "manufacturer": "Samsung",
            "product": "Galaxy S23",
            "key": PHONE,
        },
        "wallet": None,
        "pairing_code": code,
        "since": 1795316615000,
    }
    edge.responses["usb"]["ports"][1] = port
    return port


async def pair(hass: HomeAssistant, entry_id: str, **data: Any) -> Any:
    return await hass.services.async_call(
        DOMAIN,
        "pair_phone",
        {"config_entry_id": entry_id, **data},
        blocking=True,
        return_response=True,
    )


async def test_the_pairing_code_shows_while_a_new_phone_waits_to_be_paired(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    edge = with_site_and_usb(fake_edge)
    port = unpaired_phone_on_port_2(edge)
    async with fake_entry(hass, edge, [Platform.SENSOR]):
        assert state_of(hass, PORT_2_CODE) == "042817"
        # Port 1's phone is paired already: there is no code to show.
        assert state_of(hass, PORT_1_CODE) == "unknown"
        # Paired (the edge controller pushes the port without the code): the code goes.
        paired = {**port, "attached": {**port["attached"], "pairing_code": None}}
        await fake_edge.push("usb", {**paired, "attached": {**paired["attached"]}})
        await until(hass, lambda: state_of(hass, PORT_2_CODE) == "unknown")
        # Unplugged, then another new phone: its own code.
        await fake_edge.push("usb", {**port, "attached": None})
        await hass.async_block_till_done()
        assert state_of(hass, PORT_2_CODE) == "unknown"
        await fake_edge.push(
            "usb", {**port, "attached": {**port["attached"], "pairing_code": "913304"}}
        )
        await until(hass, lambda: state_of(hass, PORT_2_CODE) == "913304")


async def test_pairing_a_phone_sends_the_code_and_the_funds_in_milli_units(
    hass: HomeAssistant, fake_edge: FakeEdge
) -> None:
    edge = with_site_and_usb(fake_edge)
    unpaired_phone_on_port_2(edge)
    edge.failures["usb/pair"] = (201, {"phone": PHONE, "wallet": WALLET})
    async with fake_entry(hass, edge, [Platform.SENSOR]) as entry:
        answer = await pair(hass, entry.entry_id, code=" 042817 ", fund=2.5)
        assert answer == {"phone": PHONE, "wallet": WALLET}
        assert ("POST usb/pair", {"code": "042817", "fund": 2500}) in edge.bodies
        # Without funds the wallet starts empty: nothing is moved.
        await pair(hass, entry.entry_id, code="042817")
        assert edge.bodies[-1] == ("POST usb/pair", {"code": "042817"})


async def test_pairing_refusals_are_translated(hass: HomeAssistant, fake_edge: FakeEdge) -> None:
    edge = with_site_and_usb(fake_edge)
    async with fake_entry(hass, edge, [Platform.SENSOR]) as entry:
        edge.failures["usb/pair"] = (
            404,
            {"error": {"code": "unknown_code", "message": "no phone shows that pairing code"}},
        )
        with pytest.raises(ServiceValidationError) as unknown:
            await pair(hass, entry.entry_id, code="111111")
        assert unknown.value.translation_key == "unknown_code"
        assert unknown.value.translation_placeholders == {"code": "111111"}
        assert "111111" in str(unknown.value)
        # The home cannot fund the wallet: the ledger's reason code reaches the user.
        edge.failures["usb/pair"] = (
            409,
            {"error": {"code": "insufficient_funds", "message": "balance 0 < 5000"}},
        )
        with pytest.raises(ServiceValidationError) as refused:
            await pair(hass, entry.entry_id, code="042817", fund=5)
        assert refused.value.translation_key == "refused"
        assert refused.value.translation_placeholders == {
            "code": "insufficient_funds",
            "message": "balance 0 < 5000",
        }
        edge.failures["usb/pair"] = (500, {"error": {"code": "internal", "message": "boom"}})
        with pytest.raises(HomeAssistantError) as failed:
            await pair(hass, entry.entry_id, code="042817")
        assert not isinstance(failed.value, ServiceValidationError)
        assert failed.value.translation_key == "edge_error"


@pytest.mark.parametrize("data", [{"code": ""}, {"code": "   "}, {"code": "1", "fund": 0}, {}])
async def test_pairing_needs_a_code_and_positive_funds(
    hass: HomeAssistant, fake_edge: FakeEdge, data: dict[str, Any]
) -> None:
    async with fake_entry(hass, with_site_and_usb(fake_edge), [Platform.SENSOR]) as entry:
        with pytest.raises(ServiceValidationError, match="Invalid input"):
            await pair(hass, entry.entry_id, **data)
    assert not [b for b in fake_edge.bodies if b[0] == "POST usb/pair"]


async def test_pairing_through_a_real_edge_controller(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    # The demo's Flat 3 has a USB hub; its owner pairs the phone on port 1 at start.
    flat = edge_demo[2]
    async with demo_entry(hass, flat, [Platform.SENSOR]) as entry:
        coordinator = entry.runtime_data.coordinator
        assert coordinator.data.usb is not None
        code = "sensor.flat_3_usb_port_1_pairing_code"

        def phone_paired() -> bool:
            port = coordinator.data.usb["ports"][0] if coordinator.data.usb else {}
            return bool((port.get("attached") or {}).get("wallet"))

        await until(hass, phone_paired, within=60)
        assert state_of(hass, code) == "unknown"
        with pytest.raises(ServiceValidationError) as unknown:
            await pair(hass, entry.entry_id, code="not-a-code")
        assert unknown.value.translation_key == "unknown_code"
