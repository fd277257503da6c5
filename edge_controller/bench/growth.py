"""The growth benchmark: what a node costs as its chain ages.

`energy-p2p-edge bench growth` builds one chain of the ledger benchmark's workload (a
street of homes trading every 15-minute slot) and, at each size (10 k, 100 k, 300 k, 1 M
records, ... up to `--max-records`), copies it and measures, each in a fresh process so
one measurement's memory does not count in the next:

- `open_s`, `rss_mb`: a node opening the database (resident memory after open);
  `after_start_check_s` the damage check a node runs on a thread right after;
- `live_rss_mb`: the same node after a run of live blocks (`--live-slots` slots of the
  workload, one block at a time, as they arrive from the sealers);
- `verify_s`, `verify_peak_rss_mb`: `energy-p2p-edge ledger verify` on the copy;
- `catchup_records_per_s`: a new, empty node catching up on the whole chain from a node
  serving it, through the sync protocol's messages at the MQTT link's message limit (the
  new node's time only: the serving one is another home);
- `disk_bytes_per_record`: the database's size over its records; `state_rows` and
  `state_mb`: the ledger state it holds (rows, and their keys' and values' bytes), which on
  the latest rules stops growing once closed business is forgotten (`ledger/forget.py`);
- `join_snapshot_s`: a new home joining a chain of that size from a state snapshot
  (`bench/snapshot.py`, on a chain of its own with a checkpoint every hour of chain time,
  built in a fresh process; `--no-join` leaves it null).

`ed25519_verify_per_s` is raw Ed25519 verification measured in the catch-up processes,
interleaved with the catch-up, so load from other processes hits both alike.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_controller.bench.ledger import (
    BenchCommunity,
    RawVerifier,
    _record_message_bytes,
    _run_measured,
    print_status,
    signed_chain,
)
from edge_controller.ledger import (
    DEFAULT_FORGET_AFTER_MS,
    Genesis,
    Ledger,
    SignaturePool,
    SyncNode,
    block_limit,
)

SIZES = (10_000, 100_000, 300_000, 1_000_000, 3_000_000, 10_000_000)
# One slot of the workload is three blocks; a day is 96 slots.
LIVE_SLOTS = 96
# The MQTT link's default message limit (network/settings.py), less a generous envelope.
MESSAGE_LIMIT = 512 * 1024 - 4096
BUILD_BATCH = 32


def sizes_up_to(max_records: int) -> list[int]:
    """The measured sizes: the standard ones up to `max_records`, and `max_records`."""
    sizes = [s for s in SIZES if s < max_records]
    return [*sizes, max_records]


def rss_mb() -> float:
    """This process's resident memory now (MB), after a collection."""
    gc.collect()
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def build(
    directory: Path,
    sizes: list[int],
    live_slots: int,
    say: Callable[[str], None],
    forget_after_ms: int = DEFAULT_FORGET_AFTER_MS,
) -> None:
    """Write the chain, copying it to `chain-N.db` at each size N, and the blocks that
    follow each copy (`live_slots` slots) to `live-N.jsonl`; the street forgets closed
    business after `forget_after_ms`."""
    street = BenchCommunity.create(forget_after_ms=forget_after_ms)
    street.genesis.save(directory / "genesis.json")
    ledger = Ledger.open(directory / "build.db", street.genesis)
    pool = SignaturePool()
    ledger.signature_pool = pool
    live_files: list[tuple[Any, int]] = []
    total = 0
    pending = list(sizes)
    batch: list[dict[str, Any]] = []
    try:
        for block in signed_chain(street, sizes[-1] + 3 * live_slots * 1_000):
            wire = block.to_wire()
            for handle, _ in live_files:
                handle.write(json.dumps(wire) + "\n")
            live_files = [(h, n - 1) for h, n in live_files]
            for handle, left in live_files:
                if left <= 0:
                    handle.close()
            live_files = [(h, n) for h, n in live_files if n > 0]
            batch.append(wire)
            total += len(block.records)
            if len(batch) >= BUILD_BATCH or (pending and total >= pending[0]):
                for outcome in ledger.add_blocks(batch, now=batch[-1]["header"]["time"]):
                    if isinstance(outcome, Exception):
                        raise RuntimeError(f"the ledger refused a benchmark block: {outcome}")
                batch = []
            if pending and total >= pending[0]:
                size = pending.pop(0)
                ledger.close()
                shutil.copy(directory / "build.db", directory / f"chain-{size}.db")
                (directory / f"chain-{size}.records").write_text(str(total))
                ledger = Ledger.open(directory / "build.db", street.genesis)
                ledger.signature_pool = pool
                # Open across many blocks of the loop, closed once it holds its slots.
                handle = open(directory / f"live-{size}.jsonl", "w")  # noqa: SIM115
                live_files.append((handle, 3 * live_slots))
                say(f"built {total:,} records")
            if not pending and not live_files:
                break
    finally:
        pool.close()
        ledger.close()
        for handle, _ in live_files:
            handle.close()
    (directory / "build.db").unlink()


def measure_open(db: Path, genesis_path: Path, live: Path) -> dict[str, Any]:
    """Open `db` as a node does, then take the live blocks one at a time."""
    genesis = Genesis.load(genesis_path)
    started = time.perf_counter()
    ledger = Ledger.open(db, genesis, check_later=True)
    open_s = time.perf_counter() - started
    opened = rss_mb()
    # What a node checks on a thread right after start (the finished rows, signatures).
    started = time.perf_counter()
    ledger.check_after_start()
    check_s = time.perf_counter() - started
    with live.open() as lines:
        for line in lines:
            wire = json.loads(line)
            ledger.add_block(wire, now=wire["header"]["time"])
    live_rss = rss_mb()
    ledger.close()
    return {
        "open_s": round(open_s, 3),
        "after_start_check_s": round(check_s, 3),
        "rss_mb": round(opened, 1),
        "live_rss_mb": round(live_rss, 1),
    }


def measure_catchup(db: Path, genesis_path: Path, directory: Path) -> dict[str, Any]:
    """A new node catching up on `db`'s whole chain from a node serving it, through sync
    messages at the link's message limit; raw Ed25519 measured in between."""
    genesis = Genesis.load(genesis_path)
    raw = RawVerifier(_record_message_bytes(BenchCommunity.create()))
    server = Ledger.open(db, genesis)
    client_db = directory / "catchup.db"
    client = Ledger.open(client_db, genesis)
    serving = SyncNode(server, "server", member=lambda _p: True, message_limit=MESSAGE_LIMIT)
    # As a home's node: signature workers on every core but the one applying the blocks.
    joining = SyncNode(
        client,
        "joining",
        member=lambda _p: True,
        message_limit=MESSAGE_LIMIT,
        catch_up_workers=(os.cpu_count() or 1) - 1,
    )
    client.max_block_wire = block_limit(MESSAGE_LIMIT)
    now = server.head.time + 60_000
    queue: list[tuple[str, dict[str, Any]]] = [("joining", serving.head_message(now))]
    seconds = 0.0
    while queue:
        to, message = queue.pop(0)
        if to == "joining":
            t0 = time.perf_counter()
            replies = joining.handle("server", message, now)
            seconds += time.perf_counter() - t0
            queue.extend(("server", m) for peer, m in replies if peer in (None, "server"))
            if message.get("type") == "blocks":
                count = sum(len(b["records"]) for b in message["blocks"])
                raw.run(min(count, 500))
        else:
            if message.get("type") == "head":
                continue
            # The serving peer is another home in life: its time is not the new home's.
            replies = serving.handle("joining", message, now)
            queue.extend(("joining", m) for peer, m in replies if peer in (None, "joining"))
    joined = client.head.hash == server.head.hash
    joining.stop_workers()
    server.close()
    client.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{client_db}{suffix}").unlink(missing_ok=True)
    return {"joined": joined, "seconds": seconds, "ed25519_verify_per_s": raw.per_s}


def run_growth(
    max_records: int = 1_000_000,
    live_slots: int = LIVE_SLOTS,
    workdir: Path | None = None,
    show_progress: bool = False,
    join: bool = True,
    forget_after_ms: int = DEFAULT_FORGET_AFTER_MS,
) -> dict[str, Any]:
    """Build the chain and measure each size (the JSON `bench growth` prints)."""
    say: Callable[[str], None] = print_status if show_progress else (lambda _line: None)
    python = [sys.executable, "-m", __name__]
    sizes = sizes_up_to(max_records)
    results: list[dict[str, Any]] = []
    raw_rates: list[float] = []
    with tempfile.TemporaryDirectory(prefix="energy-p2p-growth-", dir=workdir) as tmp:
        directory = Path(tmp)
        build_command = [*python, "build", str(directory), str(live_slots), str(forget_after_ms)]
        _run_measured([*build_command, *map(str, sizes)])
        genesis = directory / "genesis.json"
        for size in sizes:
            chain = directory / f"chain-{size}.db"
            records = int((directory / f"chain-{size}.records").read_text())
            disk = chain.stat().st_size
            state_rows, state_bytes = _state_size(chain)
            say(f"{records:,} records: opening")
            work = directory / "work.db"
            shutil.copy(chain, work)
            live = directory / f"live-{size}.jsonl"
            output, _, _ = _run_measured([*python, "open", str(work), str(genesis), str(live)])
            opened = json.loads(output)
            work.unlink()
            for suffix in ("-wal", "-shm"):
                Path(f"{work}{suffix}").unlink(missing_ok=True)
            say(f"{records:,} records: verifying")
            command = [sys.executable, "-m", "edge_controller", "ledger", "verify", "--json"]
            command += ["--quiet", "--genesis", str(genesis), "--db", str(chain)]
            output, verify_s, peak_kib = _run_measured(command)
            if not json.loads(output)["ok"]:
                raise RuntimeError(f"ledger verify refused the benchmark's chain: {output}")
            say(f"{records:,} records: catching up")
            output, _, _ = _run_measured(
                [*python, "catchup", str(chain), str(genesis), str(directory)]
            )
            caught = json.loads(output)
            if not caught["joined"]:
                raise RuntimeError(f"the new node did not reach the head of {size:,} records")
            raw_rates.append(caught["ed25519_verify_per_s"])
            join_s = None
            if join:
                say(f"{records:,} records: joining from a snapshot")
                snapshot = [sys.executable, "-m", "edge_controller.bench.snapshot", "--no-replay"]
                output, _, _ = _run_measured([*snapshot, "--json", "--records", str(records)])
                join_s = json.loads(output)[0]["join_snapshot_s"]
            results.append(
                {
                    "records": records,
                    **opened,
                    "verify_s": round(verify_s, 2),
                    "verify_peak_rss_mb": round(peak_kib / 1024, 1),
                    "join_snapshot_s": join_s,
                    "catchup_records_per_s": round(records / caught["seconds"]),
                    "disk_bytes_per_record": round(disk / records),
                    "state_rows": state_rows,
                    "state_mb": round(state_bytes / 1e6, 1),
                }
            )
            chain.unlink()
            live.unlink()
    if show_progress:
        sys.stderr.write("\n")
    return {
        "ed25519_verify_per_s": round(sum(raw_rates) / len(raw_rates)),
        "live_slots": live_slots,
        "forget_after_ms": forget_after_ms,
        "sizes": results,
        "machine": f"{os.uname().sysname} {os.uname().machine}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }


def _state_size(db: Path) -> tuple[int, int]:
    """The rows of a database's ledger state and the bytes of their keys and values."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows, size = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(tbl) + LENGTH(key) + LENGTH(value)), 0)"
            " FROM state"
        ).fetchone()
    return int(rows), int(size)


def format_report(figures: dict[str, Any]) -> str:
    """The figures as a table a person reads."""
    lines = [
        f"Ed25519 verification (raw): {figures['ed25519_verify_per_s']:,} /s",
        "records  open s  RSS MB  live RSS MB  verify s  verify peak MB"
        "  catch-up rec/s  disk B/rec  join s  state rows  state MB",
    ]
    for s in figures["sizes"]:
        join = "-" if s["join_snapshot_s"] is None else f"{s['join_snapshot_s']:.1f}"
        lines.append(
            f"{s['records']:>7,}  {s['open_s']:>6.2f}  {s['rss_mb']:>6.0f}"
            f"  {s['live_rss_mb']:>11.0f}"
            f"  {s['verify_s']:>8.1f}  {s['verify_peak_rss_mb']:>14.0f}"
            f"  {s['catchup_records_per_s']:>14,}  {s['disk_bytes_per_record']:>10,}  {join:>6}"
            f"  {s['state_rows']:>10,}  {s['state_mb']:>8.1f}"
        )
    return "\n".join(lines)


def _main() -> None:
    """The phases `run_growth` runs each in a process of its own."""
    parser = argparse.ArgumentParser(description=_main.__doc__)
    parser.add_argument("phase", choices=("build", "open", "catchup"))
    parser.add_argument("args", nargs="+")
    ns = parser.parse_args()
    if ns.phase == "build":
        directory, live_slots, forget_after_ms, *sizes = ns.args
        build(
            Path(directory),
            [int(s) for s in sizes],
            int(live_slots),
            lambda _line: None,
            int(forget_after_ms),
        )
        print("{}")
    elif ns.phase == "open":
        db, genesis, live = ns.args
        print(json.dumps(measure_open(Path(db), Path(genesis), Path(live))))
    else:
        db, genesis, directory = ns.args
        print(json.dumps(measure_catchup(Path(db), Path(genesis), Path(directory))))


if __name__ == "__main__":
    _main()
