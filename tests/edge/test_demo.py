"""The newcomer's main job: `energy-p2p-edge demo` trades within the first minute and
delivers and settles its first trade within three; the flat's phone buys a charge over
USB within the first minute and it is metered and settled in the ledger."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .support import ROOT, wait_until

pytestmark = pytest.mark.slow


def get(url: str, token: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_the_demo_homes_trade_at_once_and_settle_within_three_minutes(tmp_path: Path) -> None:
    state_file = tmp_path / "demo.json"
    started = time.monotonic()
    started_ms = int(time.time() * 1000)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_controller",
            "demo",
            "--homes",
            "3",
            "--state-file",
            str(state_file),
            "--data-dir",
            str(tmp_path / "homes"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        wait_until(state_file.exists, timeout=30, what="the demo's state file")
        homes = json.loads(state_file.read_text())["homes"]
        assert [h["name"] for h in homes] == ["Sunny House", "Hydrogen House", "Flat 3"]
        flat = homes[2]

        # The flat buys from its neighbours (and sells USB charge to the phone's wallet).
        trades = wait_until(
            lambda: [
                t
                for t in get(f"{flat['url']}/api/v1/trades", flat["token"])["trades"]
                if t["role"] == "buyer"
            ],
            timeout=60,
            what="the consumer's first trade",
        )
        assert time.monotonic() - started < 75
        sellers = {h["account"]: h["name"] for h in homes}
        assert sellers[trades[0]["seller"]] in ("Sunny House", "Hydrogen House")
        for home in homes:
            status = get(f"{home['url']}/api/v1/status", home["token"])
            assert status["community"]["name"] == "Demo Street"
        page = urllib.request.urlopen(homes[0]["url"] + "/", timeout=10).read().decode()
        assert "Energy P2P" in page and "/api/v1/ws" in page

        # Delivered and settled within three minutes: the seller's device was driven
        # during the window, its meter readings signed, the export allocated to the trade.
        settled = wait_until(
            lambda: get(f"{flat['url']}/api/v1/settlements", flat["token"])["settlements"],
            timeout=180 - (time.monotonic() - started),
            what="the first settlement",
        )[0]
        assert settled["energy_wh"] > 0 and settled["delivered_wh"] > 0
        assert settled["paid"] + settled["refunded"] == settled["cost"]

        # The flat's phone was plugged in, paired and bought a charge in the first minute:
        # GET usb shows the session and its trade; readings and settlement reach the ledger.
        usb = get(f"{flat['url']}/api/v1/usb", flat["token"])
        assert usb["hub"]["switchable"] and usb["meter"]["ok"], usb
        session = usb["sessions"][0]
        assert session["started"] - started_ms < 60_000, session
        assert session["trade"] and session["bought_mwh"] == 1_000
        assert usb["ports"][0]["attached"]["wallet"] == session["wallet"]

        def phone_settled() -> dict | None:
            usb = get(f"{flat['url']}/api/v1/usb", flat["token"])
            done = usb["sessions"][0]
            return done if done["settled"] else None

        receipt = wait_until(phone_settled, timeout=240 - (time.monotonic() - started),
                             what="the phone's charge settled")  # fmt: skip
        assert receipt["reason"] == "delivered" and receipt["state"] == "ended"
        assert 900 <= receipt["delivered_mwh"] <= 1_500
        assert receipt["paid"] + receipt["refunded"] == receipt["cost"] > 0
        assert not get(f"{flat['url']}/api/v1/usb", flat["token"])["ports"][0]["powered"]
        trades = get(f"{flat['url']}/api/v1/trades?all=1", flat["token"])["trades"]
        usb_trade = next(t for t in trades if t["id"] == receipt["trade"])
        assert usb_trade["status"] == "settled" and usb_trade["delivered_wh"] == 1
        assert usb_trade["resource"] == usb["ports"][0]["resource"]

        # Sunny House is also a small building: its landlord and two tenants are settled
        # each minute, and each has a statement of the month.
        sunny = homes[0]

        def building_settled() -> dict | None:
            # The first whole minute measured after start-up is the first one settled.
            shown = get(f"{sunny['url']}/api/v1/building", sunny["token"])
            return shown if shown["settled_until"] is not None else None

        left = max(150.0, 300 - (time.monotonic() - started))
        building = wait_until(building_settled, timeout=left, what="the building settled")
        assert [o["id"] for o in building["owners"]] == ["landlord", "tenant-a", "tenant-b"]
        month = time.strftime("%Y-%m", time.gmtime(building["settled_until"] / 1000 - 1))
        statement = get(
            f"{sunny['url']}/api/v1/statements?owner=tenant-a&month={month}", sunny["token"]
        )
        assert statement["building"]["periods"] > 0 and statement["building"]["import_wh"] > 0
        landlord = get(
            f"{sunny['url']}/api/v1/statements?owner=landlord&month={month}", sunny["token"]
        )
        assert landlord["account"] == sunny["account"] and landlord["p2p"] is not None
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output[-3000:]
    assert "trade:" in output and "settled:" in output and "stopping the demo" in output
    assert "usb: a phone on Flat 3's port 1 buys 1 Wh" in output
