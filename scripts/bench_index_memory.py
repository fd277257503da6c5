"""What a node's block index holds in memory per 10,000 blocks, measured with tracemalloc.

    PYTHONPATH=. python scripts/bench_index_memory.py [--blocks 10000] [--dir DIR]

Builds (once, in DIR) SQLite ledgers of --blocks and of twice as many empty 5 s blocks
(three sealers taking turns, latest rules), then opens each in a fresh interpreter and
prints, as JSON, the memory Python allocated while `Ledger.open` ran and what remained
after it (tracemalloc), with the index entries and best-chain hashes held in memory, and
what each of 2,000 blocks taken live after the open added (on a copy of each). The
difference between the two sizes is what `--blocks` more blocks cost a node. Run it again
with another tree first on PYTHONPATH (and the same --dir) to open the same databases with
that tree's code: the databases of this tree open in older ones too.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from edge_controller.ledger import Consensus, Genesis, KeyPair, Ledger, Verifier
from edge_controller.ledger.store import SqliteStore

INTERVAL_MS = 5_000
LIVE_BLOCKS = 2_000


def _genesis(sealers: list[KeyPair], blocks: int) -> Genesis:
    return Genesis(
        name="Index Street",
        currency="SUN",
        # Far enough back that every block's time has passed.
        time=int(time.time() * 1000) - (blocks + 10) * INTERVAL_MS,
        registrars=(KeyPair.from_seed(b"index-registrar").public_hex,),
        consensus=Consensus(
            mode="poa",
            block_interval_ms=INTERVAL_MS,
            sealers=tuple(k.public_hex for k in sealers),
            checkpoint_interval=0,
        ),
    )


def build(directory: Path, blocks: int) -> None:
    """Write `chain-<blocks>.db` and `chain-<2 blocks>.db` and their genesis into
    `directory` (kept when already there)."""
    small, large = directory / f"chain-{blocks}.db", directory / f"chain-{2 * blocks}.db"
    if small.exists() and large.exists():
        return
    directory.mkdir(parents=True, exist_ok=True)
    sealers = [KeyPair.from_seed(f"index-sealer-{i}".encode()) for i in range(3)]
    genesis = _genesis(sealers, 2 * blocks)
    genesis.save(directory / "genesis.json")
    building = directory / "building.db"
    building.unlink(missing_ok=True)
    ledger = Ledger(genesis, store=SqliteStore(building, synchronous="OFF"))
    now = genesis.time
    for height in range(1, 2 * blocks + 1):
        now += INTERVAL_MS
        key = next(k for k in sealers if ledger.first_in_line(k))
        block = ledger.build_block(key, now=now)
        assert block is not None, f"no sealer may seal block {height}"
        ledger.add_block(block, now=now)
        if height == blocks:
            with sqlite3.connect(small) as copy:
                ledger.store.db.backup(copy)  # type: ignore[attr-defined]
    ledger.close()
    shutil.move(building, large)


def measure(path: Path, genesis_path: Path) -> dict[str, Any]:
    """Open the ledger at `path` in this process and report what it holds."""
    genesis = Genesis.load(genesis_path)
    tracemalloc.start()
    started = time.perf_counter()
    ledger = Ledger.open(path, genesis)
    opened = time.perf_counter() - started
    current, peak = tracemalloc.get_traced_memory()
    blocks = ledger.height
    index, main = ledger.index, ledger.main
    held = {
        "entries_in_memory": index.in_memory() if hasattr(index, "in_memory") else len(index),
        "hashes_in_memory": main.in_memory() if hasattr(main, "in_memory") else len(main),
    }
    # Then blocks taken live, as a running node takes them (their bodies are bounded),
    # without the signature cache, which fills up to its own bound whatever the index does.
    ledger.verifier = Verifier(cache_size=0)
    sealers = [KeyPair.from_seed(f"index-sealer-{i}".encode()) for i in range(3)]
    now = ledger.head.time
    gc.collect()
    before_live, _ = tracemalloc.get_traced_memory()
    for _ in range(LIVE_BLOCKS):
        now += INTERVAL_MS
        key = next(k for k in sealers if ledger.first_in_line(k))
        block = ledger.build_block(key, now=now)
        assert block is not None
        ledger.add_block(block, now=now)
    gc.collect()
    after_live, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "blocks": blocks,
        "open_s": round(opened, 3),
        "traced_kb": round(current / 1e3),
        "traced_peak_kb": round(peak / 1e3),
        **held,
        "live_bytes_per_block": round((after_live - before_live) / LIVE_BLOCKS),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench-index-memory"))
    parser.add_argument("--open", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.open is not None:
        print(json.dumps(measure(args.open, args.dir / "genesis.json")))
        return 0
    build(args.dir, args.blocks)
    sizes = []
    for blocks in (args.blocks, 2 * args.blocks):
        # A fresh interpreter per size: one measurement's memory does not count in the next.
        path = args.dir / "work.db"
        shutil.copy(args.dir / f"chain-{blocks}.db", path)
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        own = [sys.executable, __file__, "--dir", str(args.dir), "--open", str(path)]
        done = subprocess.run(own, capture_output=True, text=True, check=True)
        sizes.append(json.loads(done.stdout))
    small, large = sizes
    growth = (large["traced_kb"] - small["traced_kb"]) * 1e3 / (large["blocks"] - small["blocks"])
    print(json.dumps({"sizes": sizes, "bytes_per_block": round(growth)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
