"""A clean join is quiet: the embedded demo's homes send their membership requests over
the broker, the registrar approves them, and nothing in the community's steps or the
homes' links logs a warning (no retained message reaches a client that did not subscribe
to it, an approved home asking again is recognised). A request that is truly refused is
still logged, once per login and reason, however often it comes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import aiomqtt
import pytest

from edge_controller.demo.embedded import Demo
from tests.edge.api_support import eventually

WATCHED = ("edge_controller.community", "edge_controller.network")


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings (and worse) the community's steps and the links logged."""
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith(WATCHED)
    ]


async def test_a_clean_demo_join_logs_no_warning_and_a_refused_request_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    demo = Demo(3, data_dir=tmp_path)
    await demo.start()
    try:
        homes = demo.running

        async def all_joined() -> bool:
            return all(r.community.request_cleared for r in homes)

        # Joined: each home saw its member record and took its request off the broker.
        await eventually(all_joined, "every home's request answered and cleared", within=30)
        approved = [r for r in caplog.records if "waits for approval" in r.getMessage()]
        assert len(approved) == 3
        assert warnings(caplog) == []

        registrar = homes[0].community
        topic = f"energy-p2p/{registrar.community}/join/"
        flat = homes[2].community.own_request()
        assert flat is not None
        async with aiomqtt.Client("127.0.0.1", demo.broker_port, identifier="intruder") as client:
            # An approved request again (as a home sends it until its ledger says member),
            # then a request with no invitation behind it, twice: only that one is refused.
            await client.publish(topic + flat.login, json.dumps(flat.document), qos=1)
            for _ in range(2):
                await client.publish(topic + "intruder", json.dumps({"hello": 1}), qos=1)

        async def both_refused() -> bool:
            return len(registrar.requests()["refused"]) == 2

        await eventually(both_refused, "the intruder's two requests refused")
        refused = registrar.requests()["refused"]
        assert {(r["login"], r["code"]) for r in refused} == {("intruder", "malformed_request")}
        assert warnings(caplog) == [
            "edge_controller.community.service: membership request on intruder refused:"
            " malformed_request: a request has request, signer and sig"
        ]
    finally:
        await demo.stop()
