"""A street founds its community from nothing with the commands and the API alone: found,
a real Mosquitto on the generated TLS configuration, logins and ACL, invitations for two
homes (a file and a pasted text), join, approve, and the homes trade. Nothing here signs
anything: every record is made by an `energy-p2p-edge` process. A home that publishes as
another is refused by the broker."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge_controller.processes import (
    CHECKOUT,
    ApiError,
    Child,
    EdgeProcess,
    free_port,
    wait_for_port,
)

TIMEOUT_S = 60


def edge(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`energy-p2p-edge ARGS` as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "edge_controller", *args],
        cwd=CHECKOUT,
        env={"PYTHONPATH": str(CHECKOUT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        input=stdin,
        timeout=TIMEOUT_S,
        check=False,
    )


def ok(*args: str) -> str:
    result = edge(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def until(what: str, check: Callable[[], Any], timeout: float = TIMEOUT_S) -> Any:
    """Wait until `check()` gives something true; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def call(port: int, token: str, method: str, path: str, body: Any = None) -> Any:
    """`method /api/v1/<path>` on 127.0.0.1:`port`; the JSON answer, an error's too."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def set_api(config: Path, port: int) -> None:
    """The owner's own edit of edge.yaml: this home's API port, no zeroconf in a test."""
    doc = yaml.safe_load(config.read_text())
    doc["api"] = {"port": port, "zeroconf": False}
    config.write_text(yaml.safe_dump(doc, sort_keys=False))


def passwords_of(folder: Path) -> list[str]:
    """A joined home's broker passwords: its own, then its invitation's."""
    return (folder / "community-password").read_text().split()


def broker_answer(
    login: str,
    password: str,
    folder: Path,
    port: int,
    arm: Callable[[mqtt.Client, Callable[[Any], None]], None],
    what: str,
) -> int:
    """The first reason code the broker answers a client of `login` with (MQTT 5); `arm`
    sets the client's callbacks, which pass the awaited answer's code on."""
    done = threading.Event()
    codes: list[int] = []

    def answer(code: Any) -> None:
        codes.append(int(code.value))
        done.set()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"test-{login}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(login, password)
    client.tls_set(ca_certs=str(folder / "community-ca.crt"))
    arm(client, answer)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert done.wait(TIMEOUT_S), f"no {what}"
    finally:
        client.loop_stop()
        client.disconnect()
    return codes[0]


def publish_as(login: str, folder: Path, port: int, topic: str) -> int:
    """Publish with a home's broker login and own password (QoS 1); the PUBACK's code."""

    def arm(client: mqtt.Client, answer: Callable[[Any], None]) -> None:
        client.on_connect = lambda c, *_: c.publish(topic, b'{"online": true}', qos=1)
        client.on_publish = lambda _c, _u, _mid, code, _p: answer(code)

    return broker_answer(login, passwords_of(folder)[0], folder, port, arm, "PUBACK")


def connack_of(login: str, password: str, folder: Path, port: int) -> int:
    """The broker's CONNACK reason code to `login` with `password`."""

    def arm(client: mqtt.Client, answer: Callable[[Any], None]) -> None:
        client.on_connect = lambda _c, _u, _flags, code, _p: answer(code)

    return broker_answer(login, password, folder, port, arm, "CONNACK")


@pytest.fixture
def street(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Processes started by the test, stopped at its end whatever happens."""
    started: dict[str, Any] = {"children": []}
    try:
        yield started
    finally:
        for child in reversed(started["children"]):
            child.stop()


def test_a_street_founds_invites_joins_approves_and_trades(
    tmp_path: Path, street: dict[str, Any]
) -> None:
    broker_port = free_port()
    elm = tmp_path / "elm"
    ok(
        "community", "found", "--name", "Elm Street", "--currency", "ELM",
        "--home", "Registrar House", "--broker-host", "127.0.0.1",
        "--broker-port", str(broker_port), "--block-interval-ms", "1000", "--out", str(elm),
    )  # fmt: skip
    # Nothing half-written: a second found into the same folder is refused, and changes nothing.
    again = edge("community", "found", "--name", "X", "--currency", "XX", "--home", "Y",
                 "--broker-host", "h", "--out", str(elm))  # fmt: skip
    assert again.returncode == 1 and "already_exists" in again.stderr

    broker = Child("mosquitto", ["mosquitto", "-c", str(elm / "broker" / "mosquitto.conf")],
                   tmp_path / "mosquitto.log").start()  # fmt: skip
    street["children"].append(broker)
    wait_for_port(broker_port, 10, broker)

    registrar_config = elm / "home" / "edge.yaml"
    set_api(registrar_config, free_port())
    registrar = EdgeProcess(registrar_config, tmp_path / "registrar.log").start()
    street["children"].append(registrar)

    # Invitations: Sunny House by file, Flat 3 by the text a person pastes.
    ok("community", "invite", "Sunny House", "--registrar", str(elm / "registrar"))
    flat_text = ok("community", "invite", "Flat 3", "--registrar", str(elm / "registrar"))
    text = next(line.split()[-1] for line in flat_text.splitlines() if "text:" in line)
    sunny_file = next(
        p
        for p in (elm / "registrar" / "invitations").glob("*.json")
        if "sunny-house" in p.read_text()
    )
    assert sunny_file.with_suffix(".png").read_bytes().startswith(b"\x89PNG")

    sunny_dir, flat_dir = tmp_path / "sunny", tmp_path / "flat"
    sunny_dir.mkdir()
    (sunny_dir / "edge.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "Sunny House",
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
            }
        )
    )
    # A forged invitation (one character of its text changed) is refused, nothing written.
    elsewhere = tmp_path / "elsewhere" / "edge.yaml"
    forged = edge("community", "join", text[:-8] + ("A" if text[-8] != "A" else "B") + text[-7:],
                  "-c", str(elsewhere))  # fmt: skip
    assert forged.returncode == 1 and "invitation" in forged.stderr
    assert list(elsewhere.parent.iterdir()) == []

    ok("community", "join", str(sunny_file), "-c", str(sunny_dir / "edge.yaml"))
    set_api(sunny_dir / "edge.yaml", free_port())
    sunny = EdgeProcess(sunny_dir / "edge.yaml", tmp_path / "sunny.log").start()
    street["children"].append(sunny)

    # Flat 3 joins through its edge controller's API (as Home Assistant does): started with
    # no community, it waits for the invitation, joins with it, and runs.
    flat_dir.mkdir()
    flat_api = free_port()
    (flat_dir / "edge.yaml").write_text(
        yaml.safe_dump(
            {"name": "Flat 3", "data_dir": str(flat_dir / "data"),
             "api": {"port": flat_api, "zeroconf": False}}
        )
    )  # fmt: skip
    flat = EdgeProcess(flat_dir / "edge.yaml", tmp_path / "flat.log").launch()
    street["children"].append(flat)
    wait_for_port(flat_api, TIMEOUT_S, flat.child)
    token = (flat_dir / "data" / "api-token").read_text().strip()
    status = call(flat_api, token, "GET", "status")
    assert (status["joined"], status["community"]) == (False, None)
    forged_text = text[:-8] + ("A" if text[-8] != "A" else "B") + text[-7:]
    assert call(flat_api, token, "POST", "community/join", {"invitation": forged_text})["error"][
        "code"
    ] in ("forged_invitation", "malformed_invitation")
    joined = call(flat_api, token, "POST", "community/join", {"invitation": text})
    assert joined["restarting"] and joined["login"] == "flat-3"
    flat.wait_ready(TIMEOUT_S)

    # Before approval, nothing is registered: the homes' requests wait in the inbox.
    pending = until(
        "three requests",
        lambda: (r := registrar.get("community/requests")["requests"]) and len(r) == 3 and r,
    )
    by_name = {r["name"]: r for r in pending}
    assert by_name["Sunny House"]["resources"] == [
        {"resource": "sunny-house/battery", "kind": "battery", "power_w": 3000, "capacity_wh": 5000}
    ]
    assert sunny.get("community/membership")["status"] == "requested"
    # Only a registrar's home approves.
    with pytest.raises(ApiError) as refused:
        sunny.post(f"community/requests/{by_name['Flat 3']['id']}/approve")
    assert refused.value.status == 404 and refused.value.body["error"]["code"] == "not_registrar"

    for request in by_name.values():
        ok("community", "approve", request["id"], "--topup", "100000", "-c", str(registrar_config))
    again = edge("community", "approve", by_name["Flat 3"]["id"], "-c", str(registrar_config))
    assert again.returncode == 1 and "unknown_request" in again.stderr

    def named(home: EdgeProcess) -> bool:
        members = {m["name"]: m for m in home.get("members")["members"] if m["name"]}
        return set(members) == {"Registrar House", "Sunny House", "Flat 3"}

    until(
        "every home knows every member by name",
        lambda: all(named(h) for h in (registrar, sunny, flat)),
    )

    offer = sunny.post(
        "offers",
        {"resource": "sunny-house/battery", "mode": "energy", "quantity": 500, "price": 250},
    )
    assert offer["seller_name"] == "Sunny House"
    until(
        "the offer reaches Flat 3",
        lambda: any(o["id"] == offer["id"] for o in flat.get("offers")["offers"]),
    )
    flat.post(f"offers/{offer['id']}/accept")
    trade = until("the trade in Sunny House's ledger", lambda: sunny.get("trades")["trades"])[0]
    assert (trade["seller_name"], trade["buyer_name"]) == ("Sunny House", "Flat 3")
    battery = until(
        "the commitment",
        lambda: (r := sunny.get("resources/sunny-house/battery"))["committed"] and r,
    )
    assert battery["owner_name"] == "Sunny House" and battery["committed_wh"] == 500
    assert battery["committed"][0]["energy_wh"] == 500

    # Running the community: a top-up, a member's new resource, a member leaving.
    config = str(registrar_config)
    ok("community", "topup", flat.account, "5000", "--memo", "welcome", "-c", config)
    ok("community", "resource", "sunny-house/pv", "--owner", sunny.account, "--kind", "pv",
       "--power-w", "2000", "-c", config)  # fmt: skip
    until(
        "the new resource",
        lambda: any(
            (r["id"], r["power_w"], r["owner_name"]) == ("sunny-house/pv", 2000, "Sunny House")
            for r in sunny.get("resources")["resources"]
        ),
    )
    until("the top-up", lambda: flat.get("wallet")["balance"] >= 100_000 + 5_000 - trade["cost"])

    def flat_seals() -> bool:
        return bool(
            {m["account"]: m for m in sunny.get("members")["members"]}[flat.account]["sealer"]
        )

    # Approved as a sealer (the default), Flat 3 seals; as it leaves, it is removed.
    until("Flat 3 seals", flat_seals)
    ok("community", "leave", flat.account, "-c", config)

    def left() -> bool:
        members = {m["account"]: m for m in sunny.get("members")["members"]}
        return bool(members[flat.account]["status"] == "left")

    until("Flat 3 has left", left)
    # Approved as a sealer (the default), it was removed from the sealers as it left.
    until(
        "Flat 3 seals no more",
        lambda: (
            not {m["account"]: m for m in sunny.get("members")["members"]}[flat.account]["sealer"]
        ),
    )
    until(
        "Flat 3's ledger knows it left",
        lambda: flat.get("community/membership")["status"] == "left",
    )
    with pytest.raises(ApiError) as gone:
        flat.post("requests", {"mode": "energy", "quantity": 100, "max_price": 300})
    assert gone.value.body["error"]["code"] == "member_left"

    # The broker lets a home say its own presence and nobody else's.
    community = registrar.get("status")["community"]["id"]
    status = f"energy-p2p/{community}/status/"
    assert publish_as("flat-3", flat_dir, broker_port, status + flat.account) == 0
    assert publish_as("flat-3", flat_dir, broker_port, status + sunny.account) == 135
    assert (
        publish_as("flat-3", flat_dir, broker_port, f"energy-p2p/{community}/join/sunny-house")
        == 135
    )
    assert json.loads((elm / "registrar" / "book.json").read_text())["pending"] == {}
    # The invitation's password, which travelled by mail or chat, opens nothing once the
    # home is approved: the broker takes only the home's own, which never left it.
    own, invited = passwords_of(sunny_dir)
    assert own != invited
    assert connack_of("sunny-house", invited, sunny_dir, broker_port) == 135  # not authorised
    assert connack_of("sunny-house", own, sunny_dir, broker_port) == 0
