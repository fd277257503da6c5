"""The snapshot benchmark: how long a new home takes to join from a checkpoint's snapshot,
against replaying every block, and what a home keeps on disk with pruning.

It builds the ledger benchmark's trading street (`bench/ledger.py`) into a server ledger on
SQLite, with a checkpoint every `CHECKPOINT_EVERY` blocks (an hour of its 5-minute blocks),
then has two empty ledgers catch up through the real sync protocol, every message through
JSON and paged to the transport's message size, the server answering in the same process:

- `join_snapshot_s`: an empty home joining from the snapshot (headers checked, snapshot
  fetched and checked against the checkpoint, installed, the blocks after it verified);
- `replay_s`: an empty home replaying every block from genesis (`join: replay`).

Disk: the server's database and snapshot files, the joined home's, and the server's after
pruning every body a zero history allows (VACUUMed, so the file shows what is left: headers,
state, the bodies above the final height).

`python -m edge_controller.bench.snapshot --records 10000 100000 [--json] [--no-replay]`
(`replay_s` is -1 without the replay).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_controller.ledger import (
    TRANSPORT_MESSAGE_BYTES,
    Header,
    Ledger,
    SnapshotJoin,
    SqliteStore,
    SyncNode,
    in_turn_sealer,
    keep_snapshots,
    prune_history,
    record_root,
    seal,
    state_digest,
)
from edge_controller.ledger.chain import now_ms
from edge_controller.ledger.checkpoint import CheckpointJob

from .ledger import BenchCommunity, _trade_blocks

CHECKPOINT_EVERY = 12
# What a sync message body may take on the transport: the message less the signed envelope.
MESSAGE_LIMIT = TRANSPORT_MESSAGE_BYTES - 374


def build_server(records: int, directory: Path) -> tuple[Ledger, BenchCommunity, int]:
    """The benchmark street's chain of at least `records` records, checkpointed, on SQLite
    at `directory`/server.sqlite3; returns the ledger, the street and its record count."""
    street = BenchCommunity.create(checkpoint_interval=CHECKPOINT_EVERY)
    genesis = street.genesis
    server = Ledger.open(directory / "server.sqlite3", genesis)
    by_public = {s.public_hex: s for s in street.sealers}
    total = 0
    for height, (at, block_records) in enumerate(_trade_blocks(street), start=1):
        sealer = by_public[in_turn_sealer(genesis, height)]
        header = Header(
            height=height,
            prev=server.head.hash,
            root=record_root([r.id for r in block_records]),
            time=at,
            difficulty=2,
            nonce=0,
            sealer=sealer.public_hex,
            checkpoint=server.checkpoint_for(height),
        )
        block = seal(header, tuple(block_records), sealer)
        if server.add_block(block, now=at).status != "connected":
            raise RuntimeError(f"the server refused benchmark block {height}")
        keep_snapshots(server)  # as a node's sync tick does: the latest final and newer
        total += len(block_records)
        if total >= records:
            break
    return server, street, total


def _pump(nodes: dict[str, SyncNode], done: Callable[[], bool], limit_s: float = 3_600) -> None:
    """Deliver messages between `nodes` (through JSON) and tick them until `done`."""
    started = time.perf_counter()
    queue: list[tuple[str, str, Any]] = []

    def send(source: str, outgoing: list[tuple[str | None, Any]]) -> None:
        for peer, message in outgoing:
            wire = json.loads(json.dumps(message))
            for target in [peer] if peer is not None else list(nodes):
                if target != source:
                    queue.append((source, target, wire))

    while not done():
        if time.perf_counter() - started > limit_s:
            raise RuntimeError("the catch-up did not finish")
        for node_id, sync in nodes.items():
            send(node_id, sync.tick(now_ms()))
        while queue and not done():
            source, target, message = queue.pop(0)
            send(target, nodes[target].handle(source, message, now_ms()))


def _catch_up(server: Ledger, folder: Path, name: str, snapshot: bool) -> tuple[Ledger, float]:
    """An empty home catching up with `server`; returns it and the seconds it took."""
    started = time.perf_counter()
    ledger = Ledger.open(folder / f"{name}.sqlite3", server.genesis)
    nodes = {
        "server": SyncNode(server, "server", lambda _p: True, MESSAGE_LIMIT),
        name: SyncNode(ledger, name, lambda _p: True, MESSAGE_LIMIT),
    }
    if snapshot:
        assert ledger.checkpoints.folder is not None
        nodes[name].joiner = SnapshotJoin(ledger, ledger.checkpoints.folder, now_ms())
    _pump(nodes, lambda: ledger.head.hash == server.head.hash)
    return ledger, time.perf_counter() - started


def _bytes(path: Path) -> tuple[int, int]:
    """The bytes of a ledger database (with its WAL) and of its snapshot files."""
    folder = path.with_suffix(".snapshots")
    snapshots = list(folder.glob("*")) if folder.is_dir() else []

    def size(files: list[Path]) -> int:
        return sum(f.stat().st_size for f in files if f.is_file())

    return size([path, Path(f"{path}-wal")]), size(snapshots)


def _state_rows(path: Path) -> int:
    """The rows of the state a database keeps (in memory a node holds only the live ones)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT COUNT(*) FROM state").fetchone()[0])


def _pruned_bytes(server: Ledger, folder: Path) -> int:
    """The server's database after pruning every body a zero history allows, VACUUMed."""
    copy = folder / "pruned.sqlite3"
    db = sqlite3.connect(folder / "server.sqlite3")
    db.execute("VACUUM INTO ?", (str(copy),))
    db.close()
    ledger = Ledger.open(copy, server.genesis)
    prune_history(ledger, 0)
    ledger.close()
    db = sqlite3.connect(copy)
    db.execute("VACUUM")
    db.close()
    return copy.stat().st_size


def measure_snapshot_join(
    records: int, directory: Path | None = None, replay: bool = True
) -> dict[str, Any]:
    """Build a checkpointed chain of `records` records and time a snapshot join and (with
    `replay`) a full replay of it; returns the figures (see the module)."""
    with tempfile.TemporaryDirectory(dir=directory) as name:
        folder = Path(name)
        server, _, total = build_server(records, folder)
        assert isinstance(server.store, SqliteStore)
        started = time.perf_counter()
        # What a node does once a block before a checkpoint commits: streamed from SQLite.
        CheckpointJob(server.store.path, server.head.hash, folder / "probe.snap").run()
        checkpoint_s = time.perf_counter() - started
        snapshot_bytes = (folder / "probe.snap").stat().st_size
        (folder / "probe.snap").unlink()
        joined, join_s = _catch_up(server, folder, "joined", snapshot=True)
        if state_digest(joined.state) != state_digest(server.state):
            raise RuntimeError("the joined home's state differs from the server's")
        base = joined.base_height
        joined.close()
        replay_s = -1.0
        if replay:
            replayed, replay_s = _catch_up(server, folder, "replayed", snapshot=False)
            replayed.close()
        figures = {
            "records": total,
            "blocks": server.height,
            "state_rows": _state_rows(folder / "server.sqlite3"),
            "snapshot_bytes": snapshot_bytes,
            "checkpoint_write_s": round(checkpoint_s, 3),
            "join_snapshot_s": round(join_s, 2),
            "joined_at_height": base + 1,
            "replay_s": round(replay_s, 2),
            "disk_full_bytes": _bytes(folder / "server.sqlite3")[0],
            "disk_joined_bytes": _bytes(folder / "joined.sqlite3")[0],
            "disk_pruned_bytes": _pruned_bytes(server, folder),
            "disk_snapshots_bytes": _bytes(folder / "server.sqlite3")[1],
        }
        server.close()
        shutil.rmtree(folder, ignore_errors=True)
        return figures


def join_snapshot_s(records: int, directory: Path | None = None) -> float:
    """Seconds for a new home to join a chain of `records` records from a snapshot (what
    `bench growth` reports as `join_snapshot_s`)."""
    return float(measure_snapshot_join(records, directory, replay=False)["join_snapshot_s"])


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-replay", action="store_true", help="time the snapshot join only")
    args = parser.parse_args()
    results = []
    for records in args.records:
        figures = measure_snapshot_join(records, replay=not args.no_replay)
        results.append(figures)
        if not args.json:
            print(", ".join(f"{k} {v}" for k, v in figures.items()), flush=True)
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()


if __name__ == "__main__":
    _main()
