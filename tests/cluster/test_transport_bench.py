"""`energy-p2p-edge bench transport` on a bounded slice: 20 homes, a few seconds of slots
sped up, through one Mosquitto and the three-node cluster, printed as JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edge_controller.bench.brokers import BrokerMissing, nats_binary
from edge_controller.processes import CHECKOUT, checkout_env

pytestmark = pytest.mark.slow


def test_the_transport_benchmark_carries_every_message_through_both_brokers() -> None:
    try:
        nats_binary()
    except BrokerMissing as missing:
        pytest.skip(str(missing))
    command = [sys.executable, "-m", "edge_controller", "bench", "transport"]
    done = subprocess.run(
        [*command, "--homes", "20", "--seconds", "4", "--speed", "60", "--json"],
        cwd=CHECKOUT,
        env=checkout_env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)
    assert figures["nats_version"].startswith("nats-server: v2.")
    (run,) = figures["runs"]
    for broker in ("mosquitto", "nats_cluster"):
        result = run[broker]
        assert result["homes"] == 20 and result["published"] > 0
        assert result["connections_closed_by_broker"] == 0
        assert 0 < result["delivery_ms"]["p50"] <= result["delivery_ms"]["p99"]
        assert result["broker_rss_mb"] > 0 and result["per_1000_homes"]["cpu_cores"] >= 0
    # Every message reached every home through Mosquitto (the sender's echo included).
    mosquitto = run["mosquitto"]
    assert mosquitto["delivered"] == mosquitto["published"] * 20
    # NATS 2.9.10 misses a few QoS 1 deliveries to persistent sessions (0.1 to 1.3 % in
    # docs/benchmarks.md), which homes make up by syncing blocks; the benchmark counts them.
    nats = run["nats_cluster"]
    missed = sum(nats["undelivered"].values())
    assert nats["delivered"] + missed == nats["published"] * 20
    assert nats["delivered_share"] >= 0.9


def test_the_transport_benchmark_refuses_a_count_out_of_range() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edge_controller", "bench", "transport", "--homes", "1"],
        cwd=CHECKOUT,
        env=checkout_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--homes: 1 is not from 2 to 5000" in done.stderr
