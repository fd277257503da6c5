"""Bounded disk: old block bodies pruned, never what settlement, disputes, ratings or
statements still need; a pruned node says `pruned` and the asker gets the blocks from an
archive node; `kill -9` while pruning or while writing a checkpoint snapshot loses nothing
(real processes)."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from edge_controller.ledger import (
    THIRD_RULES,
    Ledger,
    Reason,
    Rejected,
    SqliteStore,
    prune_history,
    state_digest,
)
from edge_controller.ledger.checkpoint import Checkpoints
from edge_controller.ledger.prune import DAY_MS, needed_from

from .history_writer import seal_genesis
from .snapshot_support import Net, sqlite_node, time_bound
from .support import HOUR, Community

bounded = time_bound(90)

WRITER = Path(__file__).with_name("history_writer.py")
HISTORY_MS = 10 * DAY_MS


class Street:
    """Three sealers; a fuel cell with its meter; a buyer; a day between blocks."""

    def __init__(self, folder: Path, **consensus: Any) -> None:
        self.c = Community(sealers=3, checkpoint_interval=4, **consensus)
        self.ledger = sqlite_node(self.c, folder, "home")
        self.alice, self.bob, self.meter = (self.c.key(n) for n in ("alice", "bob", "meter-a"))
        # Bob's own meter: what a dispute stands on.
        self.bob_meter = self.c.key("meter-b")
        self.opening = (
            self.c.register("fc-a", self.alice, meter=self.meter.public_hex),
            self.c.register(
                "meter-b", self.bob, kind="meter", power_w=20_000, meter=self.bob_meter.public_hex
            ),
            self.c.topup(self.bob, 10_000_000),
        )
        self.seal(*self.opening)

    def seal(self, *records: object) -> None:
        self.c.seal(self.ledger, *records, sealer=self.ledger.height + 1)  # type: ignore[arg-type]

    def trade(self) -> tuple[str, int, int]:
        """A 4 kW hour from an hour on; returns (trade id, start, height of its block)."""
        start = self.c.now + HOUR
        offer = self.c.offer(self.alice, "fc-a", 4_000, start=start)
        acceptance = self.c.accept(self.bob, offer, 4_000)
        self.seal(offer, acceptance)
        return acceptance.id, start, self.ledger.height

    def settle(self, trade: str, start: int, read: bool = True) -> None:
        """The meter's reading of the trade's hour (unless `read` is False: already read),
        then the seller's settlement."""
        self.c.now = max(self.c.now, start + HOUR)
        if read:
            self.read(start)
        self.seal(self.c.sign(self.alice, "settlement", trade=trade, delivered_wh=4_000))

    def read(self, start: int) -> None:
        self.c.now = max(self.c.now, start + HOUR)
        reading = self.c.reading(self.meter, "fc-a", start, 4_000)
        self.seal(reading)

    def days(self, count: int) -> None:
        for _ in range(count):
            self.c.now += DAY_MS
            self.seal()


def test_pruning_keeps_what_settlement_disputes_ratings_and_statements_need(
    tmp_path: Path,
) -> None:
    # The third rules: a trade stays unsettled as long as its parties leave it (from the
    # fourth on, the ledger settles it `forget_after_ms` after its end: test_forget.py).
    s = Street(tmp_path, rules=THIRD_RULES)
    old_trade, old_start, old_height = s.trade()
    s.c.now += 3 * HOUR  # its own hour: no reading shared
    done_trade, done_start, _ = s.trade()
    s.read(old_start)
    s.settle(done_trade, done_start)
    s.days(30)
    ledger = s.ledger
    # The unsettled trade holds every body from its own block on.
    assert needed_from(ledger, HISTORY_MS) == old_height
    assert prune_history(ledger, HISTORY_MS) == old_height - 1
    assert ledger.block_at(old_height) is not None and ledger.block_at(1) is None
    # Settled and rated after the pruning: the rules read the state, not old bodies.
    s.settle(old_trade, old_start, read=False)
    s.seal(s.c.sign(s.bob, "rating", trade=old_trade, score=9))
    # Disputed after the pruning, on the buyer's own meter's reading of the trade's hour.
    s.seal(
        s.c.sign(
            s.bob_meter,
            "meter_reading",
            resource="meter-b",
            start=old_start,
            end=old_start + HOUR,
            export_wh=0,
            import_wh=4_000,
        )
    )
    s.seal(s.c.sign(s.bob, "dispute", trade=old_trade, measured_wh=4_000))
    settled = ledger.state.trades.rows[old_trade]
    assert (settled.status, settled.buyer_rating, settled.disputed_wh) == ("settled", 9, 4_000)
    digest = state_digest(ledger.state)
    pruned = prune_history(ledger, HISTORY_MS)
    assert pruned > 0
    cut = ledger.base_height
    head_time = ledger.head.time
    for height in range(1, ledger.height + 1):
        block_hash = ledger.main[height]
        within = ledger.index[block_hash].time >= head_time - HISTORY_MS
        if height <= cut:
            assert ledger.block_at(height) is None and ledger.is_pruned(block_hash)
            assert not within, f"block {height} is within the history and was pruned"
        else:
            assert ledger.block_at(height) is not None, height
        # Headers are kept forever.
        assert ledger.signed_header(block_hash) is not None
    # A record of a pruned block replayed is still refused, by its signer's sequence.
    for record in s.opening:
        with pytest.raises(Rejected) as info:
            ledger.submit(record.to_wire())
        assert info.value.reason in (Reason.STALE_SEQUENCE, Reason.DUPLICATE), info.value
    # Statements: every block of the last ten days is there.
    assert ledger.index[ledger.main[cut + 1]].time >= head_time - HISTORY_MS - DAY_MS
    # Never the blocks above the final height or re-checked at start: reopened, all holds.
    ledger.close()
    again = sqlite_node(s.c, tmp_path, "home")
    assert state_digest(again.state) == digest and again.base_height == cut
    assert again.final_height >= cut


def test_a_pruned_node_answers_pruned_and_the_asker_gets_history_from_an_archive(
    tmp_path: Path,
) -> None:
    s = Street(tmp_path)
    s.trade()
    s.days(20)
    archive = sqlite_node(s.c, tmp_path, "archive")
    for height in range(1, s.ledger.height + 1):
        block = s.ledger.block_at(height)
        assert block is not None
        archive.add_block(block)
    assert prune_history(s.ledger, HISTORY_MS) > 0
    net = Net()
    net.add("pruned", s.ledger)
    newcomer = sqlite_node(s.c, tmp_path, "new")
    asking = net.add("new", newcomer)
    net.tick(s.c.now)
    assert newcomer.height < s.ledger.height  # the pruned node alone cannot give history
    assert asking.rejected["pruned"] >= 1
    net.add("zz-archive", archive)
    for _ in range(4):
        net.tick(s.c.now)
    assert newcomer.head.hash == s.ledger.head.hash
    assert state_digest(newcomer.state) == state_digest(s.ledger.state)
    assert newcomer.base_height == 0 and newcomer.block_at(1) is not None


# --- kill -9 ------------------------------------------------------------------------------


def _run_until_killed(args: list[str], lines: list[str], delay_s: float) -> None:
    """Start the writer, let it work for `delay_s` after it acknowledged its first write
    (a line other than `ready`: a condition, not a time, so a loaded machine still kills it
    mid-work), then SIGKILL it."""
    process = subprocess.Popen(
        [sys.executable, str(WRITER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready = threading.Event()

    def collect() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if not line.endswith("\n"):
                break
            lines.append(line.strip())
            if not line.startswith("ready"):
                ready.set()

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    try:
        assert ready.wait(60), f"the writer wrote nothing: {lines}"
        time.sleep(delay_s)
        alive = process.poll() is None
        if alive:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(10)
    stderr = process.stderr.read() if process.stderr else ""
    assert alive or lines[-1:] == ["done"], f"the writer stopped: {stderr}"


def test_kill_9_while_pruning_loses_nothing(tmp_path: Path) -> None:
    s = Street(tmp_path)
    s.trade()
    s.days(150)
    digest = state_digest(s.ledger.state)
    head = s.ledger.head.hash
    main = list(s.ledger.main)
    s.ledger.close()
    genesis_file = tmp_path / "genesis.json"
    s.c.genesis.save(genesis_file)
    rng = random.Random(13)
    acknowledged = 0
    for _ in range(4):
        lines: list[str] = []
        _run_until_killed(
            ["prune", str(tmp_path / "home.sqlite3"), str(genesis_file)],
            lines,
            rng.uniform(0.02, 0.3),
        )
        bases = [int(line.split()[1]) for line in lines if line.startswith("base ")]
        acknowledged = max([acknowledged, *bases])
        ledger = Ledger(s.c.genesis, store=SqliteStore(tmp_path / "home.sqlite3"))
        try:
            # Every batch acknowledged is pruned, nothing above the cut is lost, the state
            # and the chain are whole.
            assert ledger.base_height >= acknowledged
            assert ledger.head.hash == head and ledger.main == main
            assert state_digest(ledger.state) == digest
            for height in range(1, ledger.height + 1):
                assert ledger.signed_header(main[height]) is not None
                assert (ledger.block_at(height) is None) == (height <= ledger.base_height)
        finally:
            ledger.close()
    assert acknowledged > 0, "no kill fell after a pruned batch"


def test_kill_9_while_writing_checkpoint_snapshots_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "snap.sqlite3"
    folder = tmp_path / "snap.snapshots"
    genesis = seal_genesis()
    rng = random.Random(3)
    acknowledged: list[str] = []
    for _ in range(5):
        lines: list[str] = []
        _run_until_killed(["seal", str(db)], lines, rng.uniform(0.3, 1.0))
        acknowledged.extend(line for line in lines if not line.startswith("ready"))
        checkpoints = Checkpoints(genesis, folder)  # as a node starts: half-written files go
        assert not list(folder.glob("*.tmp"))
        ledger = Ledger.open(db, genesis)
        try:
            assert set(acknowledged) <= set(ledger.main), "an acknowledged block was lost"
            # Every snapshot left is whole: its digest is the checkpoint of its block.
            for name in checkpoints.files():
                height = int(name.split("-")[0])
                block = ledger.block_at(height)
                if block is None or block.prev != name.split("-")[1].split(".")[0]:
                    continue  # a block the kill left uncommitted: its snapshot is unused
                data = (folder / name).read_bytes()
                assert hashlib.sha256(data).hexdigest() == block.header.checkpoint, name
        finally:
            ledger.close()
    assert len(acknowledged) >= 5
