"""Homes trading over a three-node NATS cluster (deploy/nats/) through its MQTT listener.

Real `nats-server` and `energy-p2p-edge run` processes on loopback: a node is SIGKILLed in
the middle of trading and the homes on it move to the next address; two nodes down (no
JetStream quorum) and the homes keep what they sign in their outboxes and say the community
is unreachable, then everything is delivered when a second node returns.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from edge_controller.processes import EdgeProcess
from tests.edge.support import wait_until

from .conftest import ClusterStreet

pytestmark = pytest.mark.slow

SELLER_POLICY = {
    "sell": {"auto_sell": False, "battery": None, "pv": None, "fuel_cell": None},
    "buy": {"auto_accept": False},
}


def start_homes(street: ClusterStreet) -> dict[str, EdgeProcess]:
    """Start every home, home i first on node i mod 3; register h0's battery, top up all."""
    community = street.community
    for index, name in enumerate(community.homes):
        config = street.config(name, index % 3, policy=SELLER_POLICY)
        street.homes[name] = EdgeProcess(config, street.cluster.folder / f"{name}.log")
    for home in street.homes.values():
        home.launch()
    for home in street.homes.values():
        home.wait_ready(60)
    seller = street.homes["h0"]
    seller.post("records", community.registration("h0", "h0/battery", "battery", 3_000, 50_000))
    for name in community.homes:
        seller.post("records", community.topup(name, 1_000_000))
    homes = street.homes
    wait_until(
        lambda: all(h.get("wallet")["balance"] == 1_000_000 for h in homes.values()),
        timeout=60,
        what="every home's top-up",
    )
    return homes


def trade(homes: dict[str, EdgeProcess], buyer: str, quantity: int = 100) -> str:
    """h0 offers to `buyer` alone and `buyer` accepts; the acceptance's id once acknowledged."""
    return accept(homes, buyer, offer_to(homes, buyer, quantity), quantity)


def offer_to(homes: dict[str, EdgeProcess], buyer: str, quantity: int = 100) -> str:
    """h0 offers to `buyer` alone; the offer's id once h0 acknowledged it."""
    offer: dict[str, Any] = homes["h0"].post(
        "offers",
        {
            "resource": "h0/battery",
            "mode": "energy",
            "quantity": quantity,
            "price": 200,
            "to": [homes[buyer].account],
        },
    )
    return str(offer["id"])


def accept(homes: dict[str, EdgeProcess], buyer: str, offer: str, quantity: int = 100) -> str:
    """`buyer` accepts `offer` once it arrived; the acceptance's id once acknowledged."""
    wait_until(
        lambda: any(o["id"] == offer for o in homes[buyer].get("offers")["offers"]),
        timeout=60,
        what=f"h0's offer to reach {buyer}",
    )
    accepted: dict[str, Any] = homes[buyer].post(f"offers/{offer}/accept", {"quantity": quantity})
    return str(accepted["acceptance"])


def trade_ids(home: EdgeProcess) -> list[str]:
    return [t["id"] for t in home.get("trades?all=1")["trades"]]


def everywhere(homes: dict[str, EdgeProcess], acceptances: list[str]) -> bool:
    """Every acceptance is a trade in every home's ledger, and none is there twice."""
    for home in homes.values():
        ids = trade_ids(home)
        if len(ids) != len(set(ids)) or not set(acceptances) <= set(ids):
            return False
    return True


def heads_equal(homes: dict[str, EdgeProcess]) -> bool:
    return len({h.get("status")["ledger"]["head"] for h in homes.values()}) == 1


def test_a_node_killed_mid_trade_the_homes_trade_on_and_the_node_catches_up(
    nats_street: ClusterStreet,
) -> None:
    homes = start_homes(nats_street)
    cluster = nats_street.cluster
    interval_s = nats_street.community.block_interval_ms / 1000
    acceptances = [trade(homes, "h1")]

    # h0 and h3 are on node 0: it dies between h0's offer and h3's acceptance.
    offer = offer_to(homes, "h3")
    cluster.kill_node(0)
    acceptances.append(accept(homes, "h3", offer))
    acceptances.append(trade(homes, "h4"))
    wait_until(lambda: everywhere(homes, acceptances), timeout=60, what="trades with a node down")
    for name in ("h0", "h3"):
        assert (
            not homes[name]
            .get("status")["broker"]["address"]
            .endswith(f":{cluster.nodes[0].mqtt_port}")
        ), f"{name} is still on the dead node"

    cluster.start_node(0)
    returned = time.monotonic()
    wait_until(lambda: heads_equal(homes), timeout=60, every=0.1, what="equal heads")
    # Polling five APIs costs time of its own on a busy machine: the bound is generous
    # by one interval, the cluster's own part is three.
    assert time.monotonic() - returned <= 4 * interval_s + 5

    # The returned node holds the replicated sessions: with node 1 gone now, it and
    # node 2 carry the community on their own.
    cluster.kill_node(1)
    acceptances.append(trade(homes, "h2"))
    wait_until(lambda: everywhere(homes, acceptances), timeout=60, what="trades after catch-up")
    assert all(h.get("status")["broker"]["outbox_pending"] == 0 for h in homes.values())


def test_without_quorum_the_homes_keep_their_outboxes_and_deliver_when_it_returns(
    nats_street: ClusterStreet,
) -> None:
    homes = start_homes(nats_street)
    cluster = nats_street.cluster
    acceptances = [trade(homes, "h1")]
    wait_until(lambda: everywhere(homes, acceptances), timeout=60, what="the first trade")

    cluster.kill_node(1)
    cluster.kill_node(2)

    def unreachable() -> bool:
        brokers = [h.get("status")["broker"] for h in homes.values()]
        return all(not b["connected"] and b["last_error"] for b in brokers)

    wait_until(unreachable, timeout=60, what="every home to say the community is unreachable")
    # Open long enough to outlive the outage (the default window opens, and the offer
    # expires, a minute after it is made).
    start = int(time.time() * 1000) + 10 * 60_000
    offer = homes["h0"].post(
        "offers",
        {
            "resource": "h0/battery",
            "mode": "energy",
            "quantity": 100,
            "price": 200,
            "start": start,
            "end": start + 3_600_000,
            "expires": start,
        },
    )
    status = homes["h0"].get("status")["broker"]
    assert status["outbox_pending"] >= 1 and not status["connected"]

    cluster.start_node(1)
    wait_until(
        lambda: all(
            any(o["id"] == offer["id"] for o in h.get("offers?all=1")["offers"])
            for h in homes.values()
        ),
        timeout=90,
        what="the offer signed without quorum to reach every home",
    )
    acceptances.append(
        str(homes["h2"].post(f"offers/{offer['id']}/accept", {"quantity": 100})["acceptance"])
    )
    wait_until(lambda: everywhere(homes, acceptances), timeout=60, what="trading after quorum")
    wait_until(
        lambda: all(h.get("status")["broker"]["outbox_pending"] == 0 for h in homes.values()),
        timeout=60,
        what="every outbox delivered",
    )
