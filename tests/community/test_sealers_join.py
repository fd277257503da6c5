"""Sealers added as homes join, on a real Mosquitto with the generated TLS, logins and ACL:
a community founded by the commands has one sealer, the founder's home; approving two homes
adds each to the sealers (the default), they start sealing once their keys are in force,
and when the founder's home stops the community's blocks still come, sealed by the homes.
Nothing here signs anything: every record is made by an `energy-p2p-edge` process.

Why two homes: under proof of authority a sealer may not seal one of the last ⌊n/2⌋ blocks,
so with two sealers one alone seals every other block at best, and finality needs a
majority; a community keeps going without one home from three sealers on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_controller.processes import ApiError, Child, EdgeProcess, free_port, wait_for_port

from .test_found_join_trade import edge, ok, set_api, street, until

__all__ = ["street"]


def sealers_of(home: EdgeProcess) -> set[str]:
    """The accounts `GET members` shows as sealers."""
    return {m["account"] for m in home.get("members")["members"] if m["sealer"]}


def test_homes_approved_as_sealers_keep_the_community_going_without_the_founder(
    tmp_path: Path, street: dict[str, Any]
) -> None:
    broker_port = free_port()
    elm = tmp_path / "elm"
    ok(
        "community", "found", "--name", "Elm Street", "--currency", "ELM",
        "--home", "Registrar House", "--broker-host", "127.0.0.1",
        "--broker-port", str(broker_port), "--block-interval-ms", "500", "--out", str(elm),
    )  # fmt: skip
    broker = Child("mosquitto", ["mosquitto", "-c", str(elm / "broker" / "mosquitto.conf")],
                   tmp_path / "mosquitto.log").start()  # fmt: skip
    street["children"].append(broker)
    wait_for_port(broker_port, 10, broker)
    registrar_config = elm / "home" / "edge.yaml"
    config = str(registrar_config)
    set_api(registrar_config, free_port())
    founder = EdgeProcess(registrar_config, tmp_path / "founder.log").start()
    street["children"].append(founder)
    assert sealers_of(founder) == {founder.account}

    homes: dict[str, EdgeProcess] = {}
    for name in ("Sunny House", "Shady House"):
        login = name.lower().replace(" ", "-")
        ok("community", "invite", name, "--registrar", str(elm / "registrar"))
        invitation = next(
            p
            for p in (elm / "registrar" / "invitations").glob("*.json")
            if f'"{login}"' in p.read_text()
        )
        folder = tmp_path / login
        folder.mkdir()
        (folder / "edge.yaml").write_text(yaml.safe_dump({"name": name}))
        ok("community", "join", str(invitation), "-c", str(folder / "edge.yaml"))
        set_api(folder / "edge.yaml", free_port())
        homes[name] = EdgeProcess(folder / "edge.yaml", tmp_path / f"{login}.log").start()
        street["children"].append(homes[name])

    # The founder's home asks too (its key is a sealer already: nothing to add).
    pending = until(
        "three requests",
        lambda: (r := founder.get("community/requests")["requests"]) and len(r) == 3 and r,
    )
    for request in pending:
        ok("community", "approve", request["id"], "--topup", "1000", "-c", config)
    sunny, shady = homes["Sunny House"], homes["Shady House"]
    everyone = {founder.account, sunny.account, shady.account}
    # A key already a sealer is refused with the ledger's reason; an account nobody knows a
    # key of, and a key that is no sealer, with theirs.
    again = edge("community", "sealer", "add", sunny.account, "-c", config)
    assert again.returncode == 1 and "already_sealer" in again.stderr
    with pytest.raises(ApiError) as unknown:
        founder.post("community/sealers/ep" + "0" * 40 + "/add")
    assert unknown.value.status == 404
    assert unknown.value.body["error"]["code"] == "unknown_member"
    stranger = edge("community", "sealer", "remove", "ab" * 32, "-c", config)
    assert stranger.returncode == 1 and "not_a_sealer" in stranger.stderr

    until(
        "every home sees three sealers in force",
        lambda: all(sealers_of(h) == everyone for h in (founder, sunny, shady)),
    )
    until(
        "the homes seal", lambda: all(h.get("status")["ledger"]["sealer"] for h in homes.values())
    )
    until(
        "blocks sealed by each home",
        lambda: (
            {b["sealer"] for b in founder.get("ledger/blocks?limit=100")["blocks"]}
            >= {sunny.account, shady.account}
        ),
    )

    founder.stop()
    stopped_at = sunny.get("status")["ledger"]["height"]

    def sealed_since_stop() -> set[str]:
        blocks = sunny.get(f"ledger/blocks?from={stopped_at + 1}&limit=100")["blocks"]
        return {b["sealer"] for b in blocks}

    until(
        "blocks from both homes after the founder stopped",
        lambda: sealed_since_stop() == {sunny.account, shady.account},
    )
    # The two homes are a majority of three: what they seal becomes final.
    until(
        "a final block sealed without the founder",
        lambda: shady.get("status")["ledger"]["final_height"] > stopped_at,
    )
    assert founder.account not in sealed_since_stop()
