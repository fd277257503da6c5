"""The transport benchmark: one Mosquitto against a three-node NATS cluster, same load.

`energy-p2p-edge bench transport --homes 50 200 1000 --json` runs, for each number of
homes, the same load against one Mosquitto and then against the cluster of
`deploy/nats/` (TLS and one login per home on both runs of NATS; TLS on Mosquitto):

- lightweight simulated homes, each one MQTT 3.1.1 connection as the edge controller
  makes it (persistent session, QoS 1 subscriptions to the records, the presence of
  every home and its own sync inbox), spoken by the bench's own minimal client
  (`mqtt_wire`: a home only parses the fixed header, looks the payload up and reads the
  clock), up to 500 homes per worker process;
- the real record mix of a 15-minute-slot community, signed and wrapped in envelopes
  before the clock starts, so the generator only sends bytes. Per home and slot: one
  offer, one acceptance, two meter readings (its meter's and its neighbour's side), one
  settlement and one retained presence refresh (`PER_SLOT`), each at a random moment of
  the slot, a slot lasting 15 minutes divided by `speed`;
- each message is timed from the moment its home sends it to the moment every home
  receives it (the echo to the sender included: MQTT 3.1.1 has no "no local", so the
  broker does that work too), on this machine's one monotonic clock.

Figures per broker and home count: messages per second published and delivered, the
delivered share, end-to-end delivery p50/p99, the broker's CPU (cores busy) and resident
memory (all three nodes together for NATS), and both per 1,000 homes; and the
generator's own CPU (its processes together, and the busiest one's busiest second) and
the machine's load average, so a reader sees whether the homes or the broker were the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import random
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from edge_controller.bench.brokers import (
    Certificates,
    MosquittoBroker,
    NatsCluster,
    nats_binary,
    write_certificates,
)
from edge_controller.bench.mqtt_wire import Home, open_home
from edge_controller.ledger import Consensus, Genesis, KeyPair, sign_record
from edge_controller.network import CommunityTopics, MessageKind, NodeStatus
from edge_controller.network.envelope import Envelope

SLOT_S = 15 * 60
# What one home publishes in one 15-minute slot: the real record mix of a trading street.
PER_SLOT = {"offer": 1, "acceptance": 1, "meter_reading": 2, "settlement": 1, "status": 1}
HOMES_PER_WORKER = 500
KEEPALIVE_S = 60
CONNECTING_AT_ONCE = 25
# After the last message is sent, deliveries have this long to arrive: longer than NATS's
# `ack_wait` in deploy/nats/node.conf, so a redelivered message is counted, late.
DRAIN_S = 35.0
# Sessions of a thousand homes on a loaded machine take minutes to set up on the cluster.
CONNECT_TIMEOUT_S = 900.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Message:
    """One pre-generated message: who sends it, when (seconds after the start), what."""

    home: int
    at_s: float
    topic: str
    payload: bytes
    retain: bool
    kind: str


@dataclass(frozen=True)
class Load:
    """The homes' logins and the messages they send, ready to go."""

    community_id: str
    node_ids: list[str]
    passwords: list[str]
    messages: list[Message]


def make_load(homes: int, seconds: float, speed: float, seed: int = 7) -> Load:
    """Sign every record of `seconds` of trading by `homes` homes before anything starts."""
    rng = random.Random(seed)
    registrar = KeyPair.generate()
    keys = [KeyPair.generate() for _ in range(homes)]
    meters = [KeyPair.generate() for _ in range(homes)]
    genesis = Genesis(
        name="Transport Benchmark Street",
        currency="SUN",
        time=int(time.time() * 1000),
        registrars=(registrar.public_hex,),
        consensus=Consensus(mode="poa", block_interval_ms=60_000, sealers=(keys[0].public_hex,)),
    )
    community = genesis.community_id
    topics = CommunityTopics(community)
    seqs: dict[str, int] = {}
    now_ms = int(time.time() * 1000)

    def signed(key: KeyPair, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        seqs[key.public_hex] = seq = seqs.get(key.public_hex, 0) + 1
        made = sign_record(key, community, {**body, "seq": seq, "time": now_ms})
        return made.id, made.to_wire()

    def record(key: KeyPair, body: dict[str, Any]) -> bytes:
        wire = signed(key, body)[1]
        return Envelope.wrap(MessageKind.RECORD, key.account, wire).encode()

    slot_s = SLOT_S / speed
    messages: list[Message] = []
    slots = max(1, math.ceil(seconds / slot_s))
    for slot in range(slots):
        for home in range(homes):
            key, neighbour = keys[home], (home + 1) % homes
            resource = f"home{home}/battery"
            window = {"start": now_ms + 900_000, "end": now_ms + 1_800_000}
            offer_id, offer = signed(
                key,
                {
                    "kind": "offer",
                    "resource": resource,
                    "mode": "energy",
                    "quantity": 500,
                    "price": 210,
                    "expires": now_ms + 600_000,
                    **window,
                },
            )
            made: list[tuple[str, str, bytes, bool]] = [
                (
                    "offer",
                    topics.records,
                    Envelope.wrap(MessageKind.RECORD, key.account, offer).encode(),
                    False,
                ),
                (
                    "acceptance",
                    topics.records,
                    record(key, {"kind": "acceptance", "offer": offer_id, "quantity": 250}),
                    False,
                ),
            ]
            for meter in (meters[home], meters[neighbour]):
                reading = {
                    "kind": "meter_reading",
                    "resource": resource,
                    "start": now_ms - 900_000,
                    "end": now_ms,
                    "export_wh": 250,
                    "import_wh": 0,
                }
                made.append(("meter_reading", topics.records, record(meter, reading), False))
            made.append(
                (
                    "settlement",
                    topics.records,
                    record(key, {"kind": "settlement", "trade": offer_id, "delivered_wh": 250}),
                    False,
                )
            )
            status = NodeStatus(key.account, True, "bench", now_ms + slot * 1000 + home).encode()
            made.append(("status", topics.status(key.account), status, True))
            for kind, topic, payload, retain in made:
                at = (slot + rng.random()) * slot_s
                if at < seconds:
                    messages.append(Message(home, at, topic, payload, retain, kind))
    messages.sort(key=lambda m: m.at_s)
    passwords = [os.urandom(12).hex() for _ in range(homes)]
    return Load(community, [k.account for k in keys], passwords, messages)


@dataclass(frozen=True)
class Target:
    """Where the simulated homes connect, and whether they log in."""

    addresses: list[tuple[str, int]]
    ca_file: Path
    logins: bool


def _worker(
    load: Load, homes: Sequence[int], target: Target, seconds: float, pipe: Connection
) -> None:
    """One worker process: its homes' connections, their sending and their receiving."""
    try:
        pipe.send(asyncio.run(_work(load, homes, target, seconds, pipe)))
    except Exception as error:
        pipe.send({"error": repr(error)})


async def _sample_cpu(samples: list[float], lags: list[float]) -> None:
    """Every second: this process's CPU over it (cores) and how late the loop woke."""
    cpu, wall = time.process_time(), time.monotonic()
    while True:
        await asyncio.sleep(1.0)
        now_cpu, now = time.process_time(), time.monotonic()
        samples.append((now_cpu - cpu) / (now - wall))
        lags.append(now - wall - 1.0)
        cpu, wall = now_cpu, now


async def _work(
    load: Load, homes: Sequence[int], target: Target, seconds: float, pipe: Connection
) -> dict[str, Any]:
    index_of = {m.payload: i for i, m in enumerate(load.messages)}
    topics = CommunityTopics(load.community_id)
    # (message, when) of each message's first arrival at each home of this worker.
    received: list[tuple[int, int]] = []
    context = ssl.create_default_context(cafile=str(target.ca_file))
    connections: dict[int, Home] = {}
    # Homes connect a few at a time, as a community's homes return after an outage.
    gate = asyncio.Semaphore(CONNECTING_AT_ONCE)
    refused: list[int] = []

    async def connect(home: int) -> None:
        async with gate:
            node = load.node_ids[home]
            host, port = target.addresses[home % len(target.addresses)]
            async with asyncio.timeout(60):
                connection = await open_home(host, port, context, index_of, received)
                connections[home] = connection
                refused.append(
                    await connection.session(
                        f"energy-p2p-{node}",
                        (node, load.passwords[home]) if target.logins else None,
                        [(topics.records, 1), (topics.all_statuses, 1), (topics.sync(node), 1)],
                        KEEPALIVE_S,
                    )
                )

    async def keep_alive() -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S / 2)
            for connection in connections.values():
                connection.ping()

    pinger = asyncio.create_task(keep_alive())
    try:
        started = time.monotonic()
        await asyncio.gather(*(connect(home) for home in homes))
        pipe.send({"ready": time.monotonic() - started})
        start_ns = int(pipe.recv())  # the common start, on the shared monotonic clock
        samples: list[float] = []
        lags: list[float] = []
        cpu_before = time.process_time()
        sampler = asyncio.create_task(_sample_cpu(samples, lags))
        sent: dict[int, int] = {}
        mine = set(homes)
        for index, message in enumerate(load.messages):
            if message.home not in mine:
                continue
            due = start_ns + int(message.at_s * 1e9)
            await asyncio.sleep(max(0.0, (due - time.monotonic_ns()) / 1e9))
            sent[index] = time.monotonic_ns()
            connections[message.home].publish(message.topic, message.payload, message.retain)
        # Deliveries still in flight get until the end plus a grace to arrive.
        end_ns = start_ns + int((seconds + DRAIN_S) * 1e9)
        await asyncio.sleep(max(0.0, (end_ns - time.monotonic_ns()) / 1e9))
        cpu_s = time.process_time() - cpu_before
        sampler.cancel()
    finally:
        pinger.cancel()
        for connection in connections.values():
            connection.close()
    lost = sum(1 for c in connections.values() if c.lost.done() and not c.closed_by_us)
    return {
        "sent": sent,
        "received": received,
        "lost": lost,
        "subscriptions_refused": sum(refused),
        "unacknowledged": len(sent) - sum(c.acked for c in connections.values()),
        "cpu_s": cpu_s,
        "peak_cpu": max(samples, default=0.0),
        "max_lag_s": max(lags, default=0.0),
    }


def _answer(pipe: Connection, timeout_s: float) -> dict[str, Any]:
    """A worker's next report, or an error saying it died or went silent."""
    if not pipe.poll(timeout_s):
        return {"error": f"no answer from a worker in {timeout_s:.0f} s"}
    try:
        answer: dict[str, Any] = pipe.recv()
    except EOFError:
        return {"error": "a worker died"}
    return answer


def _cpu_s(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def _rss_mb(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def _percentile(sorted_ms: list[float], fraction: float) -> float | None:
    if not sorted_ms:
        return None
    return round(sorted_ms[min(len(sorted_ms) - 1, int(fraction * len(sorted_ms)))], 2)


def measure(
    load: Load, target: Target, pids: Callable[[], list[int]], seconds: float
) -> dict[str, Any]:
    """Run the load against a running broker; its figures."""
    homes = len(load.node_ids)
    # The broker's own footprint with no home connected; per 1,000 homes is what they add.
    idle_rss = _rss_mb(pids())
    workers = max(1, math.ceil(homes / HOMES_PER_WORKER))
    shares = [list(range(w, homes, workers)) for w in range(workers)]
    context = multiprocessing.get_context("fork")
    pipes, processes = [], []
    for share in shares:
        ours, theirs = context.Pipe()
        process = context.Process(target=_worker, args=(load, share, target, seconds, theirs))
        process.start()
        # Only the worker holds its end now: should it die, our `recv` ends with EOFError.
        theirs.close()
        pipes.append(ours)
        processes.append(process)
    try:
        ready = [_answer(pipe, CONNECT_TIMEOUT_S) for pipe in pipes]
        failed = [r["error"] for r in ready if "error" in r]
        if failed:
            raise RuntimeError(f"a worker failed while connecting: {failed[0]}")
        cpu_before, wall_before = _cpu_s(pids()), time.monotonic()
        start_ns = time.monotonic_ns() + 500_000_000
        for pipe in pipes:
            pipe.send(start_ns)
        results = [_answer(pipe, seconds + DRAIN_S + 120) for pipe in pipes]
        wall = time.monotonic() - wall_before
        cpu = (_cpu_s(pids()) - cpu_before) / wall
        rss = _rss_mb(pids())
        load_average = os.getloadavg()
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    failed = [r["error"] for r in results if "error" in r]
    if failed:
        raise RuntimeError(f"a worker failed: {failed[0]}")
    sent: dict[int, int] = {}
    for result in results:
        sent.update(result["sent"])
    latencies = sorted(
        (at - sent[index]) / 1e6
        for result in results
        for index, at in result["received"]
        if index in sent
    )
    # Every home subscribes to the records and to every presence: each message goes to all.
    expected = len(sent) * homes
    arrivals = Counter(index for result in results for index, _ in result["received"])
    missing: Counter[str] = Counter()
    for index in sent:
        missing[load.messages[index].kind] += homes - arrivals[index]
    per_thousand = 1000 / homes
    return {
        "homes": homes,
        "connect_s": round(max(r["ready"] for r in ready), 1),
        "published": len(sent),
        "published_per_s": round(len(sent) / seconds, 2),
        "delivered": len(latencies),
        "delivered_per_s": round(len(latencies) / seconds, 1),
        "delivered_share": round(len(latencies) / expected, 4) if expected else None,
        "undelivered": {kind: count for kind, count in sorted(missing.items()) if count},
        "connections_closed_by_broker": sum(result["lost"] for result in results),
        "delivery_ms": {"p50": _percentile(latencies, 0.5), "p99": _percentile(latencies, 0.99)},
        "broker_cpu_cores": round(cpu, 3),
        "broker_rss_mb": round(rss, 1),
        "broker_idle_rss_mb": round(idle_rss, 1),
        "per_1000_homes": {
            "cpu_cores": round(cpu * per_thousand, 3),
            "rss_mb": round(max(0.0, rss - idle_rss) * per_thousand, 1),
        },
        "subscriptions_refused": sum(result["subscriptions_refused"] for result in results),
        "unacknowledged_publishes": sum(result["unacknowledged"] for result in results),
        # The simulated homes' own cost: far from a core each, so the broker is measured.
        "generator": {
            "processes": len(results),
            "cpu_cores": round(sum(result["cpu_s"] for result in results) / wall, 3),
            "busiest_process_peak_cpu_cores": round(max(r["peak_cpu"] for r in results), 3),
            "event_loop_max_lag_ms": round(max(r["max_lag_s"] for r in results) * 1000, 1),
        },
        "load_average_1_5_15": [round(value, 2) for value in load_average],
    }


def run_transport_benchmark(
    homes: Sequence[int],
    seconds: float = 60.0,
    speed: float = 1.0,
    show_progress: bool = True,
    folder: Path | None = None,
) -> dict[str, Any]:
    """Both brokers for each number of homes; the figures as one JSON-ready object."""
    runs: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        base = folder or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-transport-"))
        )
        certificates = write_certificates(base / "certs")
        for count in homes:
            load = make_load(count, seconds, speed)
            _progress(show_progress, f"{count} homes: {len(load.messages)} messages signed")
            runs.append(_one_count(base / f"h{count}", load, certificates, seconds, show_progress))
    return {
        "benchmark": "transport",
        "seconds": seconds,
        "speed": speed,
        "per_home_per_slot": PER_SLOT,
        "slot_s": SLOT_S,
        "nats_version": _nats_version(),
        "runs": runs,
    }


def _one_count(
    folder: Path, load: Load, certificates: Certificates, seconds: float, show: bool
) -> dict[str, Any]:
    figures: dict[str, Any] = {"homes": len(load.node_ids)}
    mosquitto = MosquittoBroker(folder / "mosquitto", certificates)
    try:
        mosquitto.start()
        target = Target(mosquitto.addresses, certificates.ca_file, logins=False)
        figures["mosquitto"] = measure(load, target, mosquitto.pids, seconds)
    finally:
        mosquitto.stop()
    _progress(show, f"  mosquitto: {figures['mosquitto']}")
    logins = dict(zip(load.node_ids, load.passwords, strict=True))
    cluster = NatsCluster(folder / "nats", load.community_id, logins, certificates=certificates)
    try:
        cluster.start()
        target = Target(cluster.addresses, certificates.ca_file, logins=True)
        figures["nats_cluster"] = measure(load, target, cluster.pids, seconds)
    finally:
        cluster.stop()
    _progress(show, f"  nats cluster: {figures['nats_cluster']}")
    return figures


def _nats_version() -> str:
    out = subprocess.run([nats_binary(), "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or out.stderr.strip()


def _progress(show: bool, line: str) -> None:
    if show:
        print(line, file=sys.stderr, flush=True)
