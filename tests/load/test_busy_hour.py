"""A bounded busy hour on a real Mosquitto with real `energy-p2p-edge run` processes.

Three homes, two sealing 1 s blocks: one home is sent 1,000 energy requests through its
API at 33 a second while another is stopped (SIGTERM, a WebSocket client connected) and
restarted. Blocks hold at most 25 records, so a backlog builds until the sender's own
share of the pool is full; the home then refuses at once (`pool_account_full`) and the
client tries again, rather than a peer dropping an acknowledged request later. Every
acknowledged request ends up in every home's chain or in the sender's refused list with
its reason, none of them refused for its order (`stale_sequence`) or a peer's pool share.
Every 50th request of the second half expires half a second after it is signed: by then
the sealers' backlog holds it back, so it is a genuine refusal after acknowledgement.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp

from edge_controller.ledger import Reason
from tests.edge.support import ApiError, Community, EdgeProcess, wait_until

from .support import bearer, sigterm_and_wait

REQUESTS = 1_000
RATE_PER_S = 33.0
AWAY_AT_S = 6.0
BACK_AT_S = 14.0
MAX_BLOCK_RECORDS = 25
RETRY_S = 0.2


def chain_ids(edge: EdgeProcess) -> set[str]:
    """Ids of every record in the home's best chain."""
    ids: set[str] = set()
    height = edge.get("status")["ledger"]["height"]
    for start in range(1, height + 1, 100):
        for block in edge.get(f"ledger/blocks?from={start}&limit=100")["blocks"]:
            ids.update(r["id"] for r in block["records"])
    return ids


def refused(edge: EdgeProcess) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in edge.get("records/refused?limit=1000")["refused"]}


class Sender(threading.Thread):
    """Posts `REQUESTS` energy requests at `RATE_PER_S`, noting each acknowledgement.

    Faster than blocks hold them, the home's own share of the pool fills: it then refuses
    with `pool_account_full` and the sender tries the same request again a moment later,
    as a client of the API should (`docs/api.md`). Any other refusal is kept."""

    def __init__(self, edge: EdgeProcess) -> None:
        super().__init__(daemon=True)
        self.edge = edge
        self.acknowledged: list[str] = []
        self.refused_at_once: list[Any] = []
        self.held_back = 0
        self.started_at = 0.0
        self.finished_at = 0.0

    def run(self) -> None:
        self.started_at = time.monotonic()
        for n in range(REQUESTS):
            delay = self.started_at + n / RATE_PER_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            while not self.post(n):
                self.held_back += 1
                time.sleep(RETRY_S)
        self.finished_at = time.monotonic()

    def post(self, n: int) -> bool:
        """Post request `n`; False when the home's share of the pool is full for now."""
        body: dict[str, Any] = {"mode": "energy", "quantity": 100 + n % 50, "max_price": 300}
        if n >= REQUESTS // 2 and n % 50 == 0:
            body["expires"] = int(time.time() * 1000) + 500
        try:
            self.acknowledged.append(self.edge.post("requests", body)["request"])
        except ApiError as exc:
            if exc.status == 409 and exc.body["error"]["code"] == Reason.POOL_ACCOUNT_FULL:
                return False
            self.refused_at_once.append(exc.body)
        return True


async def stop_with_a_client(edge: EdgeProcess) -> float:
    """SIGTERM while a WebSocket client follows the events; seconds until the exit."""
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{edge.url}/api/v1/ws", headers=bearer(edge.token)) as ws,
    ):
        hello = await ws.receive_json(timeout=5)
        assert hello["event"] == "hello"
        _, took = await asyncio.to_thread(sigterm_and_wait, edge)
        return took


async def test_every_acknowledged_request_of_a_busy_half_minute_reaches_every_ledger(
    tmp_path: Path, mosquitto: Any
) -> None:
    street = Community(tmp_path, ["sender", "sealer", "away"])
    street.genesis = replace(
        street.genesis,
        consensus=replace(
            street.genesis.consensus,
            sealers=(street.keys["sender"].public_hex, street.keys["sealer"].public_hex),
            max_block_records=MAX_BLOCK_RECORDS,
        ),
    )
    street.genesis.save(street.genesis_path)
    homes = {
        name: EdgeProcess(street.config(name, mosquitto.port), tmp_path / f"{name}.log")
        for name in street.homes
    }
    try:
        for edge in homes.values():
            edge.launch()
        for edge in homes.values():
            await asyncio.to_thread(edge.wait_ready)
        await asyncio.to_thread(
            wait_until,
            lambda: all(len(e.get("status")["peers"]) == 2 for e in homes.values()),
            what="every home sees the other two",
        )
        # On the latest rules only a funded account's records count (`min_balance`): the
        # sender's top-up is in every home's chain before its first request.
        homes["sender"].post("records", street.topup("sender", 100_000))
        for edge in homes.values():
            await asyncio.to_thread(
                wait_until,
                lambda e=edge: e.get(f"wallet?account={street.account('sender')}")["balance"],
                what="the sender funded",
            )
        sender = Sender(homes["sender"])
        sender.start()
        await asyncio.sleep(AWAY_AT_S)
        stop_s = await stop_with_a_client(homes["away"])
        await asyncio.sleep(BACK_AT_S - AWAY_AT_S - stop_s)
        await asyncio.to_thread(homes["away"].start)
        back_at = time.monotonic()
        await asyncio.to_thread(sender.join)
        acknowledged = set(sender.acknowledged)

        def settled(edge: EdgeProcess) -> bool:
            return not acknowledged - chain_ids(edge) - refused(homes["sender"]).keys()

        await asyncio.to_thread(
            wait_until, lambda: settled(homes["sender"]), 90, 1.0, "the sender's chain"
        )
        sealed_at = time.monotonic()
        for name in ("sealer", "away"):
            await asyncio.to_thread(
                wait_until, lambda n=name: settled(homes[n]), 60, 1.0, f"{name}'s chain"
            )
        caught_up_at = time.monotonic()

        lost = refused(homes["sender"])
        chains = {name: chain_ids(edge) for name, edge in homes.items()}
        statuses = {name: edge.get("status") for name, edge in homes.items()}
    finally:
        for edge in homes.values():
            edge.stop()

    figures = {
        "acknowledged": len(acknowledged),
        "refused_at_once": len(sender.refused_at_once),
        "held_back": sender.held_back,
        "refused_later": len(lost),
        "acknowledged_per_s": round(
            len(acknowledged) / (sender.finished_at - sender.started_at), 1
        ),
        "sealed_per_s": round((len(acknowledged) - len(lost)) / (sealed_at - sender.started_at), 1),
        "all_ledgers_s": round(caught_up_at - sender.started_at, 1),
        "away_catch_up_s": round(caught_up_at - back_at, 1),
        "stop_with_client_s": round(stop_s, 2),
        "heights": {n: s["ledger"]["height"] for n, s in statuses.items()},
        "transport_rejected": {n: s["rejected"]["transport"] for n, s in statuses.items()},
        "records_rejected": {n: s["rejected"]["records"] for n, s in statuses.items()},
    }
    print("busy hour " + json.dumps(figures))
    for name, chain in chains.items():
        missing = acknowledged - chain - lost.keys()
        assert not missing, f"{name} misses {len(missing)} acknowledged records"
    assert not [r for r in lost.values() if r["code"] == Reason.STALE_SEQUENCE]
    assert all(r["id"] in acknowledged and r["code"] and r["time"] for r in lost.values())
    assert {r["code"] for r in lost.values()} == {Reason.EXPIRED}
    assert stop_s < 2.0
    assert not sender.refused_at_once
    assert len(acknowledged) == REQUESTS
