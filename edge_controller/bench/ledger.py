"""The ledger benchmark: how close a validating node comes to the speed of Ed25519 itself.

Signature checking is the physical limit of a validating node, so the benchmark measures
two rates in the same run, interleaved so that load from other processes hits both alike:

- `ed25519_verify_per_s`: the `cryptography` library verifying Ed25519 signatures on
  messages as long as the benchmark's records, nothing else;
- `ledger_records_per_s`: signed records arriving in PoA blocks as JSON wire dicts, taken
  through `Ledger.add_block` on a `SqliteStore` with a fresh `Verifier` (parse, signature
  checks with a cold cache, rules, SQLite commit).

The chain written by the second measurement is then re-verified from its SQLite file by
`energy-p2p-edge ledger verify` in a subprocess, for its duration and peak memory.

The workload is a small street trading for real: homes with a fuel cell and a battery, each
with its own meter, registered by the registrar and topped up; every 15-minute slot the
homes offer capacity and energy for the next slot, neighbours accept (fuel-cell offers are
split between two buyers, some battery offers are private), the meters report what each
resource exported, the sellers settle against the readings, buyers rate, owners report the
hydrogen and charge left. Records are signed before any timing starts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_controller.ledger import (
    DEFAULT_FORGET_AFTER_MS,
    MAX_BLOCKS,
    Block,
    Consensus,
    Genesis,
    Header,
    KeyPair,
    Ledger,
    Record,
    SignaturePool,
    genesis_entry,
    in_turn_sealer,
    record_root,
    seal,
    sign_record,
    signing_message,
)

SLOT_MS = 15 * 60 * 1000
MINUTE_MS = 60_000
# 2026-01-01 00:00 UTC: a chain in the past, so no block is "too far ahead" when verified.
CHAIN_START_MS = 1_767_225_600_000
HOMES = 16
OFFERS_PER_RESOURCE = 5
FUEL_CELL_W = 10_000
FUEL_CELL_WH = 50_000
BATTERY_W = 5_000
BATTERY_WH = 13_500
FUEL_CELL_OFFER_W = 1_800  # sold as two halves to two neighbours
# Five battery offers share each 15-minute slot: 250 Wh each is 1 kW, 5 kW in all, the
# battery's rating (the ledger books an energy trade at its average power).
BATTERY_OFFER_WH = 250
INITIAL_TOPUP = 5_000_000  # milli-units
# Blocks are timed in small batches, each prepared (generated and signed) just before.
BLOCKS_PER_BATCH = 6


@dataclass(frozen=True)
class Home:
    """A household: its key, its fuel cell and battery, and the meter of each."""

    index: int
    key: KeyPair
    fuel_cell: str
    battery: str
    fuel_cell_meter: KeyPair
    battery_meter: KeyPair


@dataclass
class PendingTrade:
    """A trade waiting for its slot to end, then to be metered, settled and rated."""

    id: str
    seller: Home
    buyer: Home
    resource: str
    agreed_wh: int
    delivered_wh: int


@dataclass
class BenchCommunity:
    """The benchmark's street: deterministic keys, a PoA genesis, per-key sequences."""

    homes: list[Home]
    registrar: KeyPair
    sealers: list[KeyPair]
    genesis: Genesis
    _seq: dict[str, int] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        homes: int = HOMES,
        checkpoint_interval: int = 0,
        forget_after_ms: int = DEFAULT_FORGET_AFTER_MS,
    ) -> BenchCommunity:
        """A community of `homes` homes, one registrar and three sealers; no checkpoints
        unless `checkpoint_interval` asks (`signed_chain` signs blocks without a state to
        take a checkpoint from: `bench/snapshot.py` builds checkpointed chains); closed
        business is forgotten after `forget_after_ms` of chain time (rules 4)."""
        registrar = KeyPair.from_seed(b"bench-registrar")
        sealers = [KeyPair.from_seed(f"bench-sealer-{i}".encode()) for i in range(3)]
        members = [
            Home(
                index=i,
                key=KeyPair.from_seed(f"bench-home-{i}".encode()),
                fuel_cell=f"home{i}/fuel-cell",
                battery=f"home{i}/battery",
                fuel_cell_meter=KeyPair.from_seed(f"bench-meter-fc-{i}".encode()),
                battery_meter=KeyPair.from_seed(f"bench-meter-bat-{i}".encode()),
            )
            for i in range(homes)
        ]
        genesis = Genesis(
            name="Benchmark Street",
            currency="SUN",
            time=CHAIN_START_MS,
            registrars=(registrar.public_hex,),
            consensus=Consensus(
                mode="poa",
                block_interval_ms=5 * MINUTE_MS,
                sealers=tuple(s.public_hex for s in sealers),
                checkpoint_interval=checkpoint_interval,
                forget_after_ms=forget_after_ms,
            ),
        )
        return cls(homes=members, registrar=registrar, sealers=sealers, genesis=genesis)

    def sign(self, key: KeyPair, at: int, body: dict[str, Any]) -> Record:
        """Sign `body` with `key`'s next sequence number, as of `at` (UTC ms)."""
        seq = self._seq.get(key.public_hex, 0) + 1
        self._seq[key.public_hex] = seq
        return sign_record(key, self.genesis.community_id, {**body, "seq": seq, "time": at})


def _trade_blocks(street: BenchCommunity) -> Iterator[tuple[int, list[Record]]]:
    """(block time, records) of an endless trading day, block after block."""
    homes = street.homes
    n = len(homes)
    start = CHAIN_START_MS + MINUTE_MS
    setup: list[Record] = []
    for home in homes:
        for resource_id, kind, power, capacity, meter in (
            (home.fuel_cell, "fuel_cell", FUEL_CELL_W, FUEL_CELL_WH, home.fuel_cell_meter),
            (home.battery, "battery", BATTERY_W, BATTERY_WH, home.battery_meter),
        ):
            registration = {
                "kind": "registration",
                "resource": resource_id,
                "owner": home.key.account,
                "resource_kind": kind,
                "power_w": power,
                "capacity_wh": capacity,
                "meter": meter.public_hex,
                "location": f"Benchmark Street {home.index + 1}",
            }
            setup.append(street.sign(street.registrar, start - 2000, registration))
        topup = {"kind": "topup", "to": home.key.account, "amount": INITIAL_TOPUP}
        setup.append(street.sign(street.registrar, start - 2000, topup))
    yield start, setup

    pending: dict[int, list[PendingTrade]] = {}
    slot = 0
    while True:
        slot_start = CHAIN_START_MS + slot * SLOT_MS
        window = {"start": slot_start + SLOT_MS, "end": slot_start + 2 * SLOT_MS}
        closing = pending.pop(slot - 1, [])

        # Block 1: meters report the slot that ended, sellers settle, owners report stock.
        at = slot_start + MINUTE_MS
        records: list[Record] = []
        if slot > 0:
            exported: dict[str, int] = {}
            for trade in closing:
                exported[trade.resource] = exported.get(trade.resource, 0) + trade.delivered_wh
            for home in homes:
                for resource_id, meter, imported in (
                    (home.fuel_cell, home.fuel_cell_meter, 0),
                    # What the battery charged in the slot, within its rating's 1,250 Wh.
                    (home.battery, home.battery_meter, 500 + 37 * (home.index % 20)),
                ):
                    reading = {
                        "kind": "meter_reading",
                        "resource": resource_id,
                        "start": slot_start - SLOT_MS,
                        "end": slot_start,
                        "export_wh": exported.get(resource_id, 0),
                        "import_wh": imported,
                    }
                    records.append(street.sign(meter, at - 2000, reading))
            # The ledger shares each resource's export among its trades first-in-first-out
            # (in the order they were made): the sellers claim exactly that.
            unclaimed = dict(exported)
            for trade in closing:
                claim = min(trade.agreed_wh, unclaimed.get(trade.resource, 0))
                unclaimed[trade.resource] = unclaimed.get(trade.resource, 0) - claim
                settlement = {
                    "kind": "settlement",
                    "trade": trade.id,
                    "delivered_wh": claim,
                }
                records.append(street.sign(trade.seller.key, at - 2000, settlement))
            for home in homes:
                left = 9 * FUEL_CELL_WH // 10 - 100 * ((slot + home.index) % 7)
                for resource_id, available in (
                    (home.fuel_cell, left),
                    (home.battery, BATTERY_WH - 250 * ((slot * 3 + home.index) % 5)),
                ):
                    update = {
                        "kind": "resource_update",
                        "resource": resource_id,
                        "available_wh": available,
                    }
                    records.append(street.sign(home.key, at - 2000, update))
            if slot % 8 == 0:
                for home in homes:
                    topup = {"kind": "topup", "to": home.key.account, "amount": 200_000}
                    records.append(street.sign(street.registrar, at - 2000, topup))
            yield at, records

        # Block 2: buyers rate what was settled; homes offer the next slot.
        at = slot_start + 5 * MINUTE_MS
        records = []
        for i, trade in enumerate(closing):
            if i % 2 == 0:
                rating = {"kind": "rating", "trade": trade.id, "score": 6 + i % 5}
                records.append(street.sign(trade.buyer.key, at - 2000, rating))
            if i % 4 == 1:
                rating = {"kind": "rating", "trade": trade.id, "score": 9}
                records.append(street.sign(trade.seller.key, at - 2000, rating))
        offers: list[tuple[Record, Home, list[tuple[Home, int]]]] = []
        for home in homes:
            price = 250 + (home.index * 7 + slot * 3) % 80
            for j in range(OFFERS_PER_RESOURCE):
                first = homes[(home.index + 1 + j) % n]
                second = homes[(home.index + 1 + j + OFFERS_PER_RESOURCE) % n]
                body: dict[str, Any] = {
                    "kind": "offer",
                    "resource": home.fuel_cell,
                    "mode": "capacity",
                    "quantity": FUEL_CELL_OFFER_W,
                    "min_quantity": FUEL_CELL_OFFER_W // 2,
                    "price": price,
                    "expires": window["start"],
                    **window,
                }
                offer = street.sign(home.key, at - 2000, body)
                half = FUEL_CELL_OFFER_W // 2
                offers.append((offer, home, [(first, half), (second, half)]))
                body = {
                    "kind": "offer",
                    "resource": home.battery,
                    "mode": "energy",
                    "quantity": BATTERY_OFFER_WH,
                    "price": price + 20,
                    "expires": window["start"],
                    **window,
                }
                if j == 0:
                    body["to"] = [first.key.account]
                offer = street.sign(home.key, at - 2000, body)
                offers.append((offer, home, [(first, BATTERY_OFFER_WH)]))
        records.extend(offer for offer, _, _ in offers)
        yield at, records

        # Block 3: neighbours accept; the trades wait for the next slot to end.
        at = slot_start + 10 * MINUTE_MS
        records = []
        trades: list[PendingTrade] = []
        for offer, seller, buyers in offers:
            for buyer, quantity in buyers:
                accept = {"kind": "acceptance", "offer": offer.id, "quantity": quantity}
                acceptance = street.sign(buyer.key, at - 2000, accept)
                records.append(acceptance)
                if offer.body["mode"] == "capacity":
                    agreed = quantity * SLOT_MS // 3_600_000
                    delivered = agreed * 97 // 100
                else:
                    agreed = quantity
                    delivered = quantity - 5 * ((seller.index + slot) % 3)
                resource_id = str(offer.body["resource"])
                trades.append(
                    PendingTrade(acceptance.id, seller, buyer, resource_id, agreed, delivered)
                )
        pending[slot + 1] = trades
        yield at, records
        slot += 1


def signed_chain(street: BenchCommunity, records: int) -> Iterator[Block]:
    """Sealed PoA blocks of the trading workload until at least `records` records."""
    genesis = street.genesis
    _, parent = genesis_entry(genesis)
    prev, total = parent.hash, 0
    by_public = {s.public_hex: s for s in street.sealers}
    for height, (at, block_records) in enumerate(_trade_blocks(street), start=1):
        sealer = by_public[in_turn_sealer(genesis, height)]
        header = Header(
            height=height,
            prev=prev,
            root=record_root([r.id for r in block_records]),
            time=at,
            difficulty=2,  # the in-turn sealer's weight
            nonce=0,
            sealer=sealer.public_hex,
        )
        block = seal(header, tuple(block_records), sealer)
        prev = block.hash
        total += len(block_records)
        yield block
        if total >= records:
            return


@dataclass
class RawVerifier:
    """Times bare Ed25519 verification on messages of a given length."""

    message_bytes: int
    count: int = 0
    seconds: float = 0.0
    _samples: list[tuple[bytes, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        key = Ed25519PrivateKey.generate()
        self._public = key.public_key()
        for i in range(256):
            message = (i.to_bytes(4, "big") * self.message_bytes)[: self.message_bytes]
            self._samples.append((key.sign(message), message))

    def run(self, count: int) -> None:
        """Verify `count` signatures and add their time to the total."""
        verify = self._public.verify
        samples = self._samples
        started = time.perf_counter()
        for i in range(count):
            sig, message = samples[i & 255]
            verify(sig, message)
        self.seconds += time.perf_counter() - started
        self.count += count

    @property
    def per_s(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


def _as_arriving(block: Block) -> dict[str, Any]:
    # A fresh object tree, as if the block had just been decoded from the network.
    loaded: dict[str, Any] = json.loads(json.dumps(block.to_wire()))
    return loaded


def _record_message_bytes(street: BenchCommunity) -> int:
    """Mean length of the signed messages of a sample of the workload's records."""
    sample = BenchCommunity.create(len(street.homes))
    lengths = [
        len(signing_message(sample.genesis.community_id, r.signer, r.body_bytes))
        for block in signed_chain(sample, 2_000)
        for r in block.records
    ]
    return sum(lengths) // len(lengths)


def _timed_pass(
    records: int,
    directory: Path,
    name: str,
    raw: RawVerifier,
    pool: SignaturePool | None,
    say: Callable[[str], None],
) -> tuple[int, int, float]:
    """Write a fresh chain of `records` records into `directory`/`name` through the ledger;
    returns (records, blocks, seconds spent in the ledger)."""
    street = BenchCommunity.create()
    street.genesis.save(directory / f"{name}.genesis.json")
    ledger = Ledger.open(directory / name, street.genesis, signature_pool=pool)
    blocks = ledger_records = 0
    seconds = 0.0
    chain = signed_chain(street, records)
    label = f"{pool.workers} signature workers" if pool else "one core"
    # One block at a time as blocks arrive live; with workers, batches as sync fetches them.
    per_batch = MAX_BLOCKS if pool else BLOCKS_PER_BATCH
    while True:
        batch = [_as_arriving(b) for _, b in zip(range(per_batch), chain, strict=False)]
        if not batch:
            break
        batch_records = sum(len(b["records"]) for b in batch)
        started = time.perf_counter()
        if pool is None:
            for wire in batch:
                ledger.add_block(wire, now=wire["header"]["time"])
        else:
            for outcome in ledger.add_blocks(batch, now=batch[-1]["header"]["time"]):
                if isinstance(outcome, Exception):
                    raise RuntimeError(f"the ledger refused a benchmark block: {outcome}")
        seconds += time.perf_counter() - started
        blocks += len(batch)
        ledger_records += batch_records
        raw.run(min(batch_records, 1_000))
        say(f"ledger ({label}): {ledger_records:,} of {records:,} records added")
    if ledger.height != blocks:
        raise RuntimeError(f"the ledger followed {ledger.height} of {blocks} blocks")
    ledger.close()
    return ledger_records, blocks, seconds


def measure_ledger(
    records: int, directory: Path, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Write a chain of `records` records into `directory`/chain.db through
    `Ledger.add_block` on one core, then another through `Ledger.add_blocks` with
    signature workers on every core (as a node catching up runs), timing both against
    raw Ed25519 verification measured in between."""
    say = progress or (lambda _line: None)
    raw = RawVerifier(_record_message_bytes(BenchCommunity.create()))
    one_core, blocks, one_core_s = _timed_pass(records, directory, "chain.db", raw, None, say)
    pool = SignaturePool()
    try:
        pool.submit([("00" * 32, b"\0" * 64, b"warm-up")])[0][1].result()  # start workers
        parallel, _, parallel_s = _timed_pass(
            records, directory, "chain-parallel.db", raw, pool, say
        )
    finally:
        pool.close()
    (directory / "chain-parallel.db").unlink()
    per_s = parallel / parallel_s
    one_core_per_s = one_core / one_core_s
    return {
        "ed25519_verify_per_s": round(raw.per_s),
        "ledger_records_per_s": round(per_s),
        "ratio": round(per_s / raw.per_s, 3),
        "ledger_records_per_s_one_core": round(one_core_per_s),
        "ratio_one_core": round(one_core_per_s / raw.per_s, 3),
        "signature_workers": pool.workers,
        "record_message_bytes": raw.message_bytes,
        "records": one_core,
        "blocks": blocks,
        "db_mb": round((directory / "chain.db").stat().st_size / 1e6, 1),
    }


def run_ledger_benchmark(
    records: int = 100_000, workdir: Path | None = None, show_progress: bool = False
) -> dict[str, Any]:
    """Run the whole benchmark and return its figures (the JSON `bench ledger` prints).

    Each phase runs in its own process, started from this small one: a child's peak RSS
    counts the memory of the process it was started from, so the verifier must not be
    started from the process that just held the whole chain's state. `show_progress`
    redraws a status line on stderr (the default run takes minutes).
    """
    python = [sys.executable, "-m"]
    with tempfile.TemporaryDirectory(prefix="energy-p2p-bench-", dir=workdir) as tmp:
        directory = Path(tmp)
        command = [*python, __name__, str(directory), str(records)]
        output, _, _ = _run_measured([*command, "--progress"] if show_progress else command)
        figures: dict[str, Any] = json.loads(output)
        if show_progress:
            print_status(f"verifying the stored chain ({figures['db_mb']:.0f} MB)")
        command = [*python, "edge_controller", "ledger", "verify", "--json", "--quiet"]
        command += ["--genesis", str(directory / "chain.db.genesis.json")]
        command += ["--db", str(directory / "chain.db")]
        output, verify_s, peak_kib = _run_measured(command)
        verified = json.loads(output)
        if not verified["ok"]:
            raise RuntimeError(f"ledger verify refused the benchmark's chain: {output}")
    if show_progress:
        sys.stderr.write("\n")
    return {
        **figures,
        "verify_s": round(verify_s, 2),
        "verify_records_per_s": round(verified["records"] / verify_s),
        "verify_peak_rss_mb": round(peak_kib / 1024, 1),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }


# Starts the measured command and writes its peak RSS (KiB) to the file named first. A
# process forked from a large one starts with the large one's high-water mark in its
# maximum RSS (Linux keeps it across exec): forked from this small launcher, the command's
# figure is its own, not the benchmark's.
_LAUNCHER = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "with open(sys.argv[1], 'w') as peak:\n"
    "    peak.write(str(usage.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def _run_measured(command: list[str]) -> tuple[str, float, int]:
    """Run `command`; return its stdout, its wall time and its own peak RSS in KiB (its
    worker processes' included: wait4 gives the largest of a process and its children)."""
    with tempfile.TemporaryDirectory() as scratch:
        peak = Path(scratch) / "peak"
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, str(peak), *command],
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed with exit code {result.returncode}")
        return result.stdout, elapsed, int(peak.read_text())


def print_status(line: str) -> None:
    """Redraw a one-line status in place on stderr."""
    sys.stderr.write(f"\r{line:<60}")
    sys.stderr.flush()


def format_report(figures: dict[str, Any]) -> str:
    """The benchmark's figures as a few lines a person reads."""
    return "\n".join(
        [
            f"Ed25519 verification (raw):  {figures['ed25519_verify_per_s']:>9,} /s"
            f"  on {figures['record_message_bytes']}-byte messages",
            f"ledger records (add_blocks): {figures['ledger_records_per_s']:>9,} /s"
            f"  ratio {figures['ratio']:.2f} (goal 0.80),"
            f" {figures['signature_workers']} signature workers",
            f"ledger records (one core):   {figures['ledger_records_per_s_one_core']:>9,} /s"
            f"  ratio {figures['ratio_one_core']:.2f}",
            f"verify {figures['records']:,} records in {figures['blocks']} blocks:"
            f"  {figures['verify_s']:.1f} s, peak RSS {figures['verify_peak_rss_mb']:.0f} MB"
            " (goal < 100 MB)",
        ]
    )


def _main() -> None:
    """`python -m edge_controller.bench.ledger DIR RECORDS [--progress]`: the chain-writing
    phase, run by `run_ledger_benchmark` in a process of its own."""
    parser = argparse.ArgumentParser(description=_main.__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("records", type=int)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()
    figures = measure_ledger(args.records, args.directory, print_status if args.progress else None)
    print(json.dumps(figures))


if __name__ == "__main__":
    _main()
