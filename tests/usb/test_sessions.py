"""Phones buy charge over USB: sessions against the virtual USB world, with a real ledger
(SQLite, Ed25519), a real broker, and the production hub and meter code on a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge_controller.config import ConfigError, parse_config
from edge_controller.ledger import cost_of
from edge_controller.refusal import Refusal, Why

from .usb_support import PORT_RESOURCE, PRICE, UsbRig, new_rig, overshoot_allowed_mwh, phone


@pytest.fixture
async def rig(tmp_path: Path, mosquitto: Any) -> AsyncIterator[UsbRig]:
    rig = new_rig(tmp_path, mosquitto.port)
    await rig.start()
    yield rig
    await rig.stop()


async def plugged_and_paired(rig: UsbRig, fund: int = 1_000, **kind: Any) -> str:
    rig.world.plug(1, phone(**kind))
    await rig.step()
    return await rig.pair(fund=fund)


async def test_every_port_is_off_at_start_up(tmp_path: Path, mosquitto: Any) -> None:
    rig = new_rig(tmp_path, mosquitto.port)
    rig.world.set_port_power(1, True)
    rig.world.set_port_power(2, True)
    try:
        await rig.start()
        assert not rig.world.powered(1) and not rig.world.powered(2)
    finally:
        await rig.stop()


async def test_an_unknown_phone_stays_unpowered_and_shows_a_pairing_code(rig: UsbRig) -> None:
    rig.world.plug(1, phone())
    await rig.step(3)
    port = rig.usb.view()["ports"][0]
    assert port["attached"]["identity"]["key"] == "18d1:4ee7:PHONE1"
    assert port["attached"]["wallet"] is None
    code = port["attached"]["pairing_code"]
    assert len(code) == 6 and code.isdigit()
    assert not port["powered"] and not rig.world.powered(1)
    with pytest.raises(Refusal) as refused:
        await rig.usb.purchase(1, energy_wh=1)
    assert refused.value.code == "not_paired" and refused.value.details["pairing_code"] == code


@pytest.mark.parametrize(
    "kind",
    [{}, {"max_power_w": 60.0, "pd_voltage_mv": 20_000}],
    ids=["25W-at-5V", "60W-at-20V"],
)
async def test_a_full_purchase_stops_within_the_overshoot_bound_and_settles(
    rig: UsbRig, kind: dict[str, Any]
) -> None:
    wallet = await plugged_and_paired(rig, fund=1_000, **kind)
    assert rig.home is not None
    assert rig.home.queries.wallet(wallet)["balance"] == 1_000
    session = await rig.usb.purchase(1, energy_wh=2)
    assert session["state"] == "charging" and session["bought_mwh"] == 2_000
    assert rig.world.powered(1)
    truth_before = rig.world.phone(1).delivered_wh  # type: ignore[union-attr]

    ended = await rig.until_session_over()
    assert ended["state"] == "ended" and ended["reason"] == "delivered"
    assert not rig.world.powered(1)
    # What the phone really took, and what the meter says, are both within the bound.
    truth_mwh = (rig.world.phone(1).delivered_wh - truth_before) * 1000  # type: ignore[union-attr]
    assert truth_mwh - 2_000 <= overshoot_allowed_mwh(2_000)
    assert abs(ended["delivered_mwh"] - 2_000) <= overshoot_allowed_mwh(2_000)
    assert 1_900 <= ended["delivered_mwh"] <= 2_000 + overshoot_allowed_mwh(2_000)
    await rig.step(2)

    # The ledger holds the whole trade: offer, acceptance, readings, termination, settlement.
    trade = rig.trade(ended["trade"])
    assert trade.status == "settled" and trade.buyer == wallet and trade.resource == PORT_RESOURCE
    assert trade.delivered_wh == 2 and trade.paid == cost_of(2, PRICE) and trade.refunded == 0
    offer = rig.chain_records(kind="offer", resource=PORT_RESOURCE)
    assert offer and offer[0]["to"] == [wallet] and offer[0]["signer"] == rig.key.public_hex
    acceptance = rig.chain_records(kind="acceptance", offer=ended["offer"])
    assert acceptance[0]["signer"] != rig.key.public_hex  # the phone wallet's own key
    readings = rig.chain_records(kind="meter_reading", resource=PORT_RESOURCE)
    assert sum(r["export_wh"] for r in readings) == 2
    assert all(r["signer"] == rig.meter.public_hex for r in readings)
    assert len(readings) >= 2  # a reading per settlement period, and the session's end
    assert rig.chain_records(kind="termination", trade=ended["trade"])
    assert rig.chain_records(kind="settlement", trade=ended["trade"])
    assert rig.home.queries.wallet(wallet)["balance"] == 1_000 - cost_of(2, PRICE)
    receipt = rig.usb.view()["sessions"][0]
    assert receipt["settled"] and receipt["paid"] == trade.paid and receipt["refunded"] == 0


async def test_unplugging_mid_session_settles_what_was_delivered(rig: UsbRig) -> None:
    wallet = await plugged_and_paired(rig)
    session = await rig.usb.purchase(1, energy_wh=5)
    await rig.step(300)  # 25 W for 5 minutes: about 2.1 Wh
    rig.world.unplug(1)
    await rig.step()
    ended = rig.usb.view()["sessions"][0]
    assert ended["id"] == session["id"] and ended["reason"] == "unplugged"
    assert not rig.world.powered(1)
    assert 1_800 < ended["delivered_mwh"] < 2_400
    await rig.step(2)
    trade = rig.trade(session["trade"])
    delivered = (ended["delivered_mwh"] + 500) // 1000
    assert trade.status == "settled" and trade.delivered_wh == delivered
    assert trade.paid == cost_of(delivered, PRICE) and trade.refunded == trade.cost - trade.paid
    assert rig.home is not None and rig.home.queries.wallet(wallet)["balance"] == 1_000 - trade.paid
    assert rig.usb.view()["ports"][0]["attached"] is None


async def test_a_purchase_by_money_is_cut_off_when_the_prepaid_money_is_spent(rig: UsbRig) -> None:
    wallet = await plugged_and_paired(rig, fund=3)
    session = await rig.usb.purchase(1, amount=3)  # 3 milli-units buy 1 Wh at 2 000/kWh
    assert session["bought_mwh"] == 1_000 and session["cost"] == 2
    ended = await rig.until_session_over()
    assert ended["reason"] == "balance" and not rig.world.powered(1)
    assert ended["delivered_mwh"] <= 1_000 + overshoot_allowed_mwh(1_000)
    await rig.step(2)
    assert rig.trade(session["trade"]).status == "settled"
    assert rig.home is not None and rig.home.queries.wallet(wallet)["balance"] == 1


async def test_a_purchase_the_wallet_cannot_pay_is_refused_and_the_port_stays_off(
    rig: UsbRig,
) -> None:
    await plugged_and_paired(rig, fund=3)
    with pytest.raises(Refusal) as refused:
        await rig.usb.purchase(1, energy_wh=10)  # costs 20
    assert refused.value.code == "insufficient_funds"
    assert not rig.world.powered(1) and rig.usb.view()["ports"][0]["session"] is None
    await rig.step(2)
    assert not rig.world.powered(1)


async def test_a_purchase_on_a_port_not_registered_is_refused_and_leaves_no_session(
    tmp_path: Path, mosquitto: Any
) -> None:
    rig = new_rig(tmp_path, mosquitto.port)
    # The registrar certifies test/usb-1; this home's port 1 is other/usb-1.
    rig.settings = rig.settings.__class__(ports=(1,), price=PRICE, resource_prefix="other")
    try:
        await rig.start()
        await plugged_and_paired(rig)
        with pytest.raises(Refusal) as refused:
            await rig.usb.purchase(1, energy_wh=1)
        assert refused.value.code == "port_not_registered" and refused.value.why is Why.CONFLICT
        assert "ask the registrar to register it" in refused.value.message
        assert not rig.world.powered(1) and rig.usb.view()["sessions"] == []
    finally:
        await rig.stop()


@pytest.mark.parametrize(
    ("breakdown", "code"), [("fail", "meter_failed"), ("absurd", "meter_absurd")]
)
async def test_a_meter_that_stops_or_talks_nonsense_turns_the_port_off(
    rig: UsbRig, breakdown: str, code: str
) -> None:
    await plugged_and_paired(rig)
    session = await rig.usb.purchase(1, energy_wh=5)
    await rig.step(60)
    getattr(rig.world.meter, breakdown)()
    await rig.step(4)
    assert rig.world.powered(1), "the watchdog waits its 5 s"
    await rig.step(2)
    assert not rig.world.powered(1)
    view = rig.usb.view()
    ended = view["sessions"][0]
    assert ended["id"] == session["id"] and ended["state"] == "failed"
    assert ended["reason"] == "meter_failed" and ended["error"]["code"] == code
    assert view["meter"]["ok"] is False and view["meter"]["error"]["code"] == code
    # What was metered before the failure (25 W for a minute, 0.4 Wh) is settled.
    await rig.step(2)
    trade = rig.trade(session["trade"])
    assert (
        trade.status == "settled" and trade.delivered_wh == (ended["delivered_mwh"] + 500) // 1000
    )


async def test_a_hub_without_per_port_power_is_reported_and_sells_nothing(
    tmp_path: Path, mosquitto: Any
) -> None:
    rig = new_rig(tmp_path, mosquitto.port)
    rig.world.hub_without_port_power()
    try:
        await rig.start()
        rig.world.plug(1, phone())
        hub = rig.usb.view()["hub"]
        assert hub["switchable"] is False and hub["error"]["code"] == "no_port_power"
        assert "port" in hub["error"]["message"]
        with pytest.raises(Refusal) as refused:
            await rig.usb.purchase(1, energy_wh=1)
        assert refused.value.code == "no_port_power"
    finally:
        await rig.stop()


async def test_a_restart_mid_session_turns_the_port_off_and_settles_the_delivered_part(
    rig: UsbRig,
) -> None:
    wallet = await plugged_and_paired(rig)
    session = await rig.usb.purchase(1, energy_wh=5)
    await rig.step(200)  # about 1.4 Wh, some of it in signed readings already
    delivered_before = rig.usb.ports[1].session.delivered_mwh  # type: ignore[union-attr]
    await rig.crash()
    assert rig.world.powered(1)  # a crash switches nothing off

    await rig.start(register=False)
    assert not rig.world.powered(1)
    ended = next(s for s in rig.usb.view()["sessions"] if s["id"] == session["id"])
    assert ended["state"] == "ended" and ended["reason"] == "restart"
    assert ended["delivered_mwh"] == delivered_before
    await rig.step(2)
    trade = rig.trade(session["trade"])
    assert trade.status == "settled" and trade.delivered_wh == (delivered_before + 500) // 1000
    assert rig.home is not None
    assert rig.home.queries.wallet(wallet)["balance"] == 1_000 - trade.paid
    # The phone is still there, recognised: it can buy again at once.
    again = await rig.usb.purchase(1, energy_wh=1)
    assert again["state"] == "charging" and rig.world.powered(1)


async def test_a_free_trickle_powers_an_unknown_phone_at_its_average_power(
    tmp_path: Path, mosquitto: Any
) -> None:
    rig = new_rig(tmp_path, mosquitto.port)
    rig.settings = rig.settings.__class__(
        ports=(1,), price=PRICE, resource_prefix="test", free_trickle_mw=2_500
    )
    try:
        await rig.start()
        rig.world.plug(1, phone())
        await rig.step(600)
        truth_wh = rig.world.phone(1).delivered_wh  # type: ignore[union-attr]
        # 2.5 W on average for ten minutes is about 0.42 Wh, for a 25 W phone.
        assert 0.2 < truth_wh < 0.7
        assert rig.usb.view()["ports"][0]["attached"]["pairing_code"] is not None
        assert not rig.chain_records(kind="offer")
    finally:
        await rig.stop()


def test_the_usb_section_of_edge_yaml_is_checked_with_every_mistake_named(
    tmp_path: Path,
) -> None:
    genesis = tmp_path / "genesis.json"
    genesis.write_text("{}")
    base = {"name": "Flat 3", "genesis": str(genesis), "community_broker": {"port": 1883}}
    config = parse_config(
        {
            **base,
            "usb": {
                "hub": {"vendor_id": 0x2109, "product_id": 0x2817, "location": "1-1.3"},
                "meter": {"type": "fnirsi", "port": 2},
                "ports": [1, 2],
                "price": 1_500,
                "free_trickle": 2_500,
                "max_session_s": 7_200,
                "watchdog_s": 8,
            },
        },
        "edge.yaml",
        tmp_path,
    )
    assert config.usb is not None and config.usb.hub_location == "1-1.3"
    assert config.usb.meter_port == 2 and dict(config.usb.meter) == {"type": "fnirsi"}
    settings = config.usb.settings
    assert settings.ports == (1, 2) and settings.price == 1_500
    assert settings.free_trickle_mw == 2_500 and settings.watchdog_ms == 8_000
    assert settings.resource(1) == "flat-3/usb-1"
    with pytest.raises(ConfigError) as mistakes:
        parse_config(
            {
                **base,
                "usb": {
                    "hub": "virtual",
                    "meter": {"type": "usb-c"},
                    "ports": [1, 1],
                    "free_trickle": "a little",
                    "watchdog_s": 0,
                    "colour": "blue",
                },
            },
            "edge.yaml",
            tmp_path,
        )
    problems = "\n".join(mistakes.value.problems)
    for path in ("usb.colour", "usb.ports", "usb.meter.type", "usb.free_trickle", "usb.watchdog_s"):
        assert path in problems, problems
