"""A writer killed with SIGKILL at random moments loses no acknowledged block and never leaves
a half-applied one: the reopened ledger holds every block it acknowledged, its stored state
is what replaying its chain gives, and the SQLite file is intact."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from edge_controller.ledger import Genesis, Ledger, State
from edge_controller.ledger.integrity import as_hex, row_hash
from edge_controller.ledger.state import is_finished

from .crash_writer import make_genesis

try:  # the node's own verifier, when it is there: `energy-p2p-edge ledger verify`
    from edge_controller.ledger.verify import verify_chain
except ImportError:  # pragma: no cover
    verify_chain = None  # type: ignore[assignment]

WRITER = Path(__file__).with_name("crash_writer.py")
ROUNDS = 8
RECORDS_PER_BLOCK = 25


@dataclass
class Output:
    """Lines a writer printed, collected by a thread so its pipe never fills."""

    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)


def collect(stream: IO[str], out: Output) -> None:
    for line in stream:
        if not line.endswith("\n"):  # cut short by the kill: never acknowledged
            break
        out.lines.append(line.strip())
        out.ready.set()


def run_and_kill(db: Path, rng: random.Random, wait_ready: bool) -> tuple[list[str], int]:
    """Start a writer, kill it with SIGKILL after a random delay, return the hashes it
    acknowledged and the height it reported when it opened the ledger (-1 if it never did)."""
    process = subprocess.Popen(
        [sys.executable, str(WRITER), str(db), str(RECORDS_PER_BLOCK)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    out = Output()
    reader = threading.Thread(target=collect, args=(process.stdout, out), daemon=True)
    reader.start()
    try:
        if wait_ready:
            # Opened, and one block acknowledged: however busy the machine, each such round
            # has something to lose, and the kill still comes at a random moment after.
            deadline = time.monotonic() + 30
            while len(out.lines) < 2 and process.poll() is None:
                assert time.monotonic() < deadline, "the writer acknowledged no block in 30 s"
                time.sleep(0.01)
        time.sleep(rng.uniform(0.02, 0.7))
        alive = process.poll() is None
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(10)
    stderr = process.stderr.read() if process.stderr else ""
    assert alive, f"the writer stopped by itself (status {process.returncode}): {stderr}"
    assert process.returncode == -signal.SIGKILL
    lines = out.lines
    if not lines:
        return [], -1
    ready = lines[0].split()
    assert ready[0] == "ready", lines[0]
    return lines[1:], int(ready[1])


@pytest.mark.slow
def test_a_writer_killed_at_random_moments_keeps_every_acknowledged_block(
    tmp_path: Path,
) -> None:
    db = tmp_path / "ledger.sqlite"
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    genesis = make_genesis()
    acknowledged: list[str] = []
    waited = 0
    for round_no in range(ROUNDS):
        # Most rounds let the writer reopen the ledger first; some kill it while it opens.
        wait_ready = round_no < 2 or rng.random() < 0.75
        waited += wait_ready
        hashes, opened_at = run_and_kill(db, rng, wait_ready=wait_ready)
        if opened_at >= 0:
            # Each restart continues from a head at or above everything acknowledged so far.
            assert opened_at >= len(acknowledged), f"seed {seed}: round {round_no} lost blocks"
        acknowledged += hashes
    assert len(acknowledged) >= waited, f"seed {seed}: too few blocks were written to test"

    # The file as the last kill left it, before any node touches it again.
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored_rows = sorted(conn.execute("SELECT tbl, key, value FROM state"))
        finished = {
            (name, key): value
            for name, key, value in conn.execute("SELECT tbl, key, value FROM state WHERE cold = 1")
        }
        share = conn.execute("SELECT value FROM meta WHERE key = 'cold'").fetchone()
        chain = conn.execute(
            "SELECT m.hash, b.header, b.sig, b.records FROM main m"
            " JOIN blocks b ON b.hash = m.hash ORDER BY m.height"
        ).fetchall()
    hashes = [h for h, *_ in chain]
    wires = [
        {"header": json.loads(header), "sig": sig, "records": json.loads(records)}
        for _, header, sig, records in chain
    ]
    stored = State()
    for name, key, value in stored_rows:
        table = stored.table(name)
        table.rows[key] = table.unpack(key, value)
        # Finished rows are marked in the same transaction that writes them.
        marked = (name, key) in finished
        assert marked == is_finished(name, key, table.rows[key]), f"seed {seed}: {name}/{key}"
    assert finished, f"seed {seed}: no finished row was written to test"
    cold = sum(row_hash(name, key, value) for (name, key), value in finished.items())
    assert share == (as_hex(cold % (1 << 256)),), f"seed {seed}: finished rows' share"

    # Every acknowledged block is on the stored best chain, in the order it was acknowledged.
    position = {h: i for i, h in enumerate(hashes)}
    missing = [h for h in acknowledged if h not in position]
    assert not missing, f"seed {seed}: acknowledged blocks lost: {missing[:3]}"
    assert [position[h] for h in acknowledged] == sorted(position[h] for h in acknowledged)

    # The stored state is exactly what replaying the stored chain gives: no block half applied.
    fresh = Ledger(genesis)
    for wire in wires:
        assert fresh.add_block(wire).status == "connected"
    assert fresh.head.hash == hashes[-1]
    assert stored.digest() == fresh.state.digest(), f"seed {seed}: stored state differs"

    if verify_chain is not None:
        report = verify_chain(genesis, wires, stored_state=lambda: stored_rows)
        assert report.ok, (seed, report.as_dict())
        assert (report.blocks, report.digest) == (len(wires), stored.digest())

    # And a node reopening the file starts from that head and state, and the check it
    # runs right after start finds the finished rows whole.
    ledger = Ledger.open(db, genesis, check_later=True)
    try:
        assert ledger.check_after_start(), f"seed {seed}"
        assert ledger.main[1 : len(hashes) + 1] == hashes
        assert ledger.state.digest() == replayed_digest(genesis, ledger)
    finally:
        ledger.close()


def replayed_digest(genesis: Genesis, ledger: Ledger) -> str:
    fresh = Ledger(genesis)
    for block in ledger.iter_main():
        assert fresh.add_block(block).status == "connected"
    return fresh.state.digest()
