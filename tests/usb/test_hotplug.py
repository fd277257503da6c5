"""Hot-plug: a meter or hub unplugged mid-session, or missing at start-up, ends what it
must, keeps every port off and the error visible, and is used again once it is back."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge_controller.refusal import Refusal

from .usb_support import UsbRig, new_rig, overshoot_allowed_mwh, phone

REOPEN_S = 10  # UsbSettings.reopen_ms by default
LOGGER = "edge_controller.usb.charging.bus"  # where the hub and meters come and go


@pytest.fixture
async def rig(tmp_path: Path, mosquitto: Any) -> AsyncIterator[UsbRig]:
    rig = new_rig(tmp_path, mosquitto.port)
    await rig.start()
    yield rig
    await rig.stop()


async def plugged_and_paired(rig: UsbRig) -> str:
    rig.world.plug(1, phone())
    await rig.step()
    return await rig.pair(fund=1_000)


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and text in r.getMessage()]


async def charge_one_wh(rig: UsbRig) -> dict[str, Any]:
    session = await rig.usb.purchase(1, energy_wh=1)
    assert session["state"] == "charging" and rig.world.powered(1)
    ended = await rig.until_session_over()
    assert ended["id"] == session["id"] and ended["reason"] == "delivered"
    assert 900 <= ended["delivered_mwh"] <= 1_000 + overshoot_allowed_mwh(1_000)
    assert not rig.world.powered(1)
    return ended


async def test_a_meter_unplugged_mid_session_ends_it_and_is_used_again_once_back(
    rig: UsbRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    await plugged_and_paired(rig)
    session = await rig.usb.purchase(1, energy_wh=5)
    await rig.step(60)
    rig.world.meter.remove()
    await rig.step()
    # At once, not after the watchdog: a new meter would count from zero.
    assert not rig.world.powered(1)
    view = rig.usb.view()
    ended = view["sessions"][0]
    assert ended["id"] == session["id"] and ended["state"] == "failed"
    assert ended["reason"] == "meter_failed" and ended["error"]["code"] == "meter_missing"
    assert 300 < ended["delivered_mwh"] < 500  # 25 W for a minute
    assert view["meter"]["ok"] is False and view["meter"]["error"]["code"] == "meter_missing"
    assert view["ports"][0]["meter_error"]["code"] == "meter_missing"
    assert "FNB58" in view["meter"]["description"]
    await rig.step(2)
    trade = rig.trade(session["trade"])
    assert trade.status == "settled" and trade.delivered_wh == 0  # 0.4 Wh rounds to 0 Wh

    await rig.step(3 * REOPEN_S)  # still away: tried again, the error stays
    with pytest.raises(Refusal) as refused:
        await rig.usb.purchase(1, energy_wh=1)
    assert refused.value.code == "meter_missing"
    assert rig.usb.view()["meter"]["error"]["code"] == "meter_missing"
    assert not rig.world.powered(1)

    rig.world.meter.reconnect()
    await rig.step(REOPEN_S)
    view = rig.usb.view()
    assert view["meter"]["ok"] is True and view["meter"]["error"] is None
    assert view["ports"][0]["meter_error"] is None
    await charge_one_wh(rig)
    assert len(messages(caplog, "is gone")) == 1
    assert len(messages(caplog, "is there")) == 1


async def test_a_hub_unplugged_mid_session_ends_it_and_keeps_ports_off_until_back(
    rig: UsbRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    await plugged_and_paired(rig)
    session = await rig.usb.purchase(1, energy_wh=5)
    await rig.step(60)
    rig.world.hub.present = False  # off the bus: every request to it fails with ENODEV
    await rig.step()
    view = rig.usb.view()
    ended = view["sessions"][0]
    assert ended["id"] == session["id"] and ended["state"] == "failed"
    assert ended["reason"] == "error" and ended["error"]["code"] == "hub_missing"
    assert view["hub"]["error"]["code"] == "hub_missing" and view["hub"]["switchable"] is False
    assert view["ports"][0]["powered"] is False and view["ports"][0]["attached"] is None
    await rig.step(2)
    assert rig.trade(session["trade"]).status == "settled"

    await rig.step(2 * REOPEN_S)
    with pytest.raises(Refusal) as refused:
        await rig.usb.purchase(1, energy_wh=1)
    assert refused.value.code == "hub_missing"

    rig.world.hub.present = True  # back, with port 1 still on as it was left
    assert rig.world.powered(1)
    await rig.step(REOPEN_S)
    assert not rig.world.powered(1), "every port is switched off when the hub returns"
    view = rig.usb.view()
    assert view["hub"]["error"] is None and view["hub"]["switchable"] is True
    attached = view["ports"][0]["attached"]
    assert attached["identity"]["key"] == "18d1:4ee7:PHONE1" and attached["wallet"] is not None
    await charge_one_wh(rig)
    assert len(messages(caplog, "is gone")) == 1
    assert len(messages(caplog, "is there")) == 1


async def test_a_hub_missing_at_start_up_is_reported_and_used_once_it_appears(
    tmp_path: Path, mosquitto: Any
) -> None:
    rig = new_rig(tmp_path, mosquitto.port)
    rig.world.hub.present = False
    try:
        await rig.start()
        rig.world.plug(1, phone())
        await rig.step(3)
        hub = rig.usb.view()["hub"]
        assert (
            hub["error"]["code"] == "hub_missing" and "gone from the bus" in hub["error"]["message"]
        )
        assert hub["description"] == "USB hub"
        with pytest.raises(Refusal) as refused:
            await rig.usb.purchase(1, energy_wh=1)
        assert refused.value.code == "hub_missing"

        rig.world.hub.present = True
        await rig.step(REOPEN_S)
        hub = rig.usb.view()["hub"]
        assert hub["error"] is None and hub["description"].startswith("hub 2109:2817")
        await rig.pair()
        await charge_one_wh(rig)
    finally:
        await rig.stop()


async def test_a_meter_missing_at_start_up_refuses_purchases_until_it_appears(
    tmp_path: Path, mosquitto: Any
) -> None:
    rig = new_rig(tmp_path, mosquitto.port)
    rig.world.meter.remove()
    try:
        await rig.start()
        await plugged_and_paired(rig)
        with pytest.raises(Refusal) as refused:
            await rig.usb.purchase(1, energy_wh=1)
        assert refused.value.code == "meter_missing" and "FNIRSI" in refused.value.message
        assert not rig.world.powered(1)
        rig.world.meter.reconnect()
        await rig.step(REOPEN_S)
        await charge_one_wh(rig)
    finally:
        await rig.stop()
