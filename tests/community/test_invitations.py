"""Invitations and joining, without a broker: an expired, forged, malformed or foreign
invitation is refused with its reason, and a refused join writes nothing."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_controller.app.node import LedgerNode
from edge_controller.community import CommunityError, Problem
from edge_controller.community.book import Registry
from edge_controller.community.broker import PASSWD_ITERATIONS, password_hash
from edge_controller.community.invitation import (
    check_invitation,
    check_request,
    read_invitation_text,
    sign_request,
)
from edge_controller.community.operations import HOUR_MS, REQUEST_FILE, found, invite, join
from edge_controller.community.service import CommunityService
from edge_controller.config import load_config
from edge_controller.devices import SimulatedClock
from edge_controller.ledger import Genesis, KeyPair, Ledger
from edge_controller.network import BrokerSettings
from tests.app.test_rooms_alone import RecordingLink

NOW = 1_800_000_000_000


@pytest.fixture
def community(tmp_path: Path) -> dict[str, Any]:
    return found(
        tmp_path / "elm",
        name="Elm Street",
        currency="ELM",
        home="Registrar House",
        broker_host="127.0.0.1",
        broker_port=8883,
        now=NOW,
    )


def invitation(tmp_path: Path, home: str = "Sunny House", hours: int = 2) -> dict[str, Any]:
    registry = Registry(tmp_path / "elm" / "registrar")
    issued = invite(registry, KeyPair.load(registry.key_file), home, hours, NOW)
    document: dict[str, Any] = json.loads(Path(issued["file"]).read_text())
    return {**issued, "document": document}


def refused(problem: Problem, call: Any) -> CommunityError:
    with pytest.raises(CommunityError) as info:
        call()
    assert info.value.code is problem, info.value
    return info.value


def test_the_text_and_the_file_are_one_invitation(tmp_path: Path, community: Any) -> None:
    issued = invitation(tmp_path)
    assert read_invitation_text(issued["text"]) == issued["document"]
    assert check_invitation(issued["document"], NOW).username == "sunny-house"


def test_an_expired_forged_or_malformed_invitation_is_refused(
    tmp_path: Path, community: Any
) -> None:
    document = invitation(tmp_path, hours=1)["document"]
    refused(Problem.EXPIRED_INVITATION, lambda: check_invitation(document, NOW + HOUR_MS))
    altered = json.loads(json.dumps(document))
    altered["invitation"]["home"] = "Someone Else"
    refused(Problem.FORGED_INVITATION, lambda: check_invitation(altered, NOW))
    foreign = json.loads(json.dumps(document))
    foreign["invitation"]["genesis"]["name"] = "Another Street"
    refused(Problem.FORGED_INVITATION, lambda: check_invitation(foreign, NOW))
    refused(Problem.MALFORMED_INVITATION, lambda: check_invitation({"invitation": 1}, NOW))
    refused(Problem.MALFORMED_INVITATION, lambda: read_invitation_text("EP2P1:@@@"))
    refused(Problem.MALFORMED_INVITATION, lambda: read_invitation_text("hello"))


def test_a_refused_join_writes_nothing(tmp_path: Path, community: Any) -> None:
    document = invitation(tmp_path)["document"]
    home = tmp_path / "sunny"
    home.mkdir()
    config = home / "edge.yaml"
    config.write_text("name: Sunny House\ndevices: 12\n")
    refused(Problem.BAD_INPUT, lambda: join(document, config, now=NOW))
    assert sorted(p.name for p in home.iterdir()) == ["edge.yaml"]
    assert config.read_text() == "name: Sunny House\ndevices: 12\n"
    config.unlink()
    joined = join(document, config, now=NOW, name="Sunny")
    assert joined["name"] == "Sunny"
    request = json.loads((home / "data" / "membership-request.json").read_text())
    assert request["request"]["invitation"] == document["invitation"]["id"]


def test_found_refuses_a_folder_in_use_and_leaves_it_alone(tmp_path: Path) -> None:
    folder = tmp_path / "elm"
    folder.mkdir()
    (folder / "mine.txt").write_text("x")
    refused(
        Problem.ALREADY_EXISTS,
        lambda: found(
            folder, name="E", currency="ELM", home="H", broker_host="h", broker_port=1, now=NOW
        ),
    )
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]


def test_found_registers_the_founders_devices_given_by_devices_from(tmp_path: Path) -> None:
    source = tmp_path / "mine.yaml"
    source.write_text(
        yaml.safe_dump(
            {
                "name": "ignored: the founder's home is named by --home",
                "device_broker": {"host": "127.0.0.1", "port": 1884},
                "devices": [
                    {
                        "id": "battery",
                        "role": "battery",
                        "profile": {
                            "profile": "generic",
                            "telemetry": {"soc_percent": {"topic": "bat", "path": "soc"}},
                            "constants": {"capacity_wh": 5000, "power_rating_w": 3000},
                        },
                    }
                ],
            }
        )
    )
    result = found(
        tmp_path / "elm", name="Elm Street", currency="ELM", home="Registrar House",
        broker_host="127.0.0.1", broker_port=8883, now=NOW, devices_from=source,
    )  # fmt: skip
    battery = {
        "resource": "registrar-house/battery",
        "kind": "battery",
        "power_w": 3000,
        "capacity_wh": 5000,
    }
    assert result["resources"] == [battery]
    config = yaml.safe_load(Path(result["home"]).read_text())
    assert config["name"] == "Registrar House"
    assert config["device_broker"] == {"host": "127.0.0.1", "port": 1884}
    assert [d["resource"] for d in config["devices"]] == ["registrar-house/battery"]
    request = json.loads((tmp_path / "elm" / "home" / "data" / REQUEST_FILE).read_text())
    assert battery.items() <= request["request"]["resources"][0].items(), request
    # An unreadable source is refused and nothing is founded.
    refused(
        Problem.BAD_INPUT,
        lambda: found(
            tmp_path / "oak", name="Oak", currency="OAK", home="H", broker_host="h",
            broker_port=1, now=NOW, devices_from=tmp_path / "missing.yaml",
        ),
    )  # fmt: skip
    assert not (tmp_path / "oak").exists()


def test_a_joining_home_keeps_its_own_broker_password_and_sends_only_its_hash(
    tmp_path: Path, community: Any
) -> None:
    """The invitation's password travels by mail or chat; the home makes its own, keeps it
    first in its password file (the invitation's second, until approval puts its own in
    force) and sends the registrar only the hash the broker's password file keeps."""
    document = invitation(tmp_path)["document"]
    config = tmp_path / "sunny" / "edge.yaml"
    config.parent.mkdir()
    join(document, config, now=NOW)
    own, invited = (config.parent / "community-password").read_text().split()
    assert invited == document["invitation"]["login"]["password"] and own != invited
    settings = load_config(config).community_broker
    assert settings.passwords == (own, invited)

    signed = json.loads((config.parent / "data" / REQUEST_FILE).read_text())
    request = check_request(signed, community["community"])
    assert request.broker_password is not None and own not in json.dumps(signed)
    algorithm, iterations, salt, _digest = request.broker_password.split("$")[1:]
    assert (algorithm, int(iterations)) == ("7", PASSWD_ITERATIONS)
    assert password_hash(own, base64.b64decode(salt)) == request.broker_password
    # A hash that could break the password file's line, or cost the broker more hashing
    # per login than its own do, is refused with the request.
    node = KeyPair.load(config.parent / "data" / "node.key")
    for bad in (
        request.broker_password + "\nintruder:$7$101$x$y",
        request.broker_password.replace("$7$101$", "$7$5000000$"),
    ):
        body = {**signed["request"], "broker_password": bad}
        refused(
            Problem.MALFORMED_REQUEST,
            lambda body=body: check_request(sign_request(node, body), community["community"]),
        )


def broker_logins(tmp_path: Path) -> set[str]:
    """The logins the community broker's password file lets in."""
    lines = (tmp_path / "elm" / "broker" / "passwd").read_text().splitlines()
    return {line.split(":", 1)[0] for line in lines}


def test_an_invitation_that_expired_unused_opens_nothing_on_the_broker(
    tmp_path: Path, community: Any
) -> None:
    """Its password was for its login: once it can bring no home in, the login goes from the
    broker's password file (at the next invitation, or within 30 s on the registrar's
    running home), so an invitation found in a mailbox later opens nothing."""
    registry = Registry(tmp_path / "elm" / "registrar")
    key = KeyPair.load(registry.key_file)
    invite(registry, key, "Oak House", 1, NOW)
    assert "oak-house" in broker_logins(tmp_path)
    invite(registry, key, "Ash House", 2, NOW + HOUR_MS - 1)
    assert {"oak-house", "ash-house"} <= broker_logins(tmp_path)
    invite(registry, key, "Elm Flat", 2, NOW + HOUR_MS)
    assert "oak-house" not in broker_logins(tmp_path)
    assert {"ash-house", "elm-flat", "registrar-house"} <= broker_logins(tmp_path)
    states = {i["login"]: i["state"] for i in registry.read().invitations.values()}
    assert states["oak-house"] == "expired" and states["ash-house"] == "issued"


async def test_a_denied_home_and_an_expired_invitation_lose_their_broker_login(
    tmp_path: Path, community: Any
) -> None:
    """The registrar's running home closes a denied request's login at once and an expired
    invitation's in its membership loop; a request still waiting keeps its login past its
    invitation's expiry, until the registrar decides."""
    elm = tmp_path / "elm"
    genesis = Genesis.load(elm / "genesis.json")
    clock = SimulatedClock(NOW)
    node = LedgerNode(
        ledger=Ledger(genesis, clock=clock.now_ms),
        link=RecordingLink(),
        genesis=genesis,
        key=KeyPair.load(elm / "home" / "data" / "node.key"),
        meter_key=None,
        clock=clock,
        sealer=False,
    )
    service = CommunityService(
        node=node,
        data_dir=elm / "home" / "data",
        broker=BrokerSettings(host="127.0.0.1"),
        registrar_dir=elm / "registrar",
    )
    waiting = {}
    for home in ("Sunny House", "Shady House"):
        document = invitation(tmp_path, home, hours=1)["document"]
        config = tmp_path / document["invitation"]["login"]["username"] / "edge.yaml"
        config.parent.mkdir()
        join(document, config, now=NOW)
        payload = (config.parent / "data" / REQUEST_FILE).read_bytes()
        login = document["invitation"]["login"]["username"]
        service.receive(login, payload)
        waiting[login] = document["invitation"]["id"]
    unused = invitation(tmp_path, "Oak House", hours=1)["document"]
    assert {"sunny-house", "shady-house", "oak-house"} <= broker_logins(tmp_path)

    await service.deny(waiting["sunny-house"], "not our street")
    assert "sunny-house" not in broker_logins(tmp_path)
    clock.advance(HOUR_MS)
    service.close_expired()
    assert "oak-house" not in broker_logins(tmp_path)
    assert "shady-house" in broker_logins(tmp_path), "a waiting request keeps its login"
    assert unused["invitation"]["id"] not in registry_pending(tmp_path)

    # The founder's own invitation never leaves the founder's folder, so it does not
    # expire: the founder may start the home days after `community found` (before, its
    # request was refused `expired_invitation` after an hour, and the founder was stuck).
    clock.advance(3 * 24 * HOUR_MS)
    service.close_expired()
    assert "registrar-house" in broker_logins(tmp_path)
    service.receive("registrar-house", (elm / "home" / "data" / REQUEST_FILE).read_bytes())
    assert len(registry_pending(tmp_path)) == 2


def registry_pending(tmp_path: Path) -> set[str]:
    return set(Registry(tmp_path / "elm" / "registrar").read().pending)
