"""Checkpoint digests streamed from SQLite in key order are byte for byte those of the state
sorted in memory: committed rows, rows changed since the last commit, keys outside ASCII,
and the job another thread runs on a connection of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_controller.ledger import Ledger, SqliteStore, state_digest
from edge_controller.ledger.checkpoint import (
    CheckpointJob,
    lines_digest,
    merged_lines,
    state_lines,
    stored_lines,
)
from edge_controller.ledger.state import Member, Offer, State, Vouched
from edge_controller.ledger.store import Commit

from .snapshot_support import grow, sqlite_node
from .test_checkpoints import INTERVAL, street, trading

# Keys whose UTF-8 byte order and UTF-16 order differ (a surrogate pair sorts before U+FFFD
# in UTF-16 but after it in code points and in UTF-8).
KEYS = ["a", "b", "z", "é", "\u00ff", "\u0800", "\ufffd", "\U0001f600", "\U0010fffd", "a\u00e9", ""]


def committed(store: SqliteStore, state: State, head: str) -> None:
    """Write the state's journal to `store` as one commit on `head`, and clear it."""
    store.commit(Commit(head=head, journal=list(state.journal)))
    state.journal.clear()


def test_rows_streamed_in_key_order_give_the_digest_of_the_state_sorted_in_memory(
    tmp_path: Path,
) -> None:
    state = State()
    for i, key in enumerate(KEYS):
        state.members.put(key, Member(f"name {key} ü", "active", i))
        state.vouched.put(key + "x", Vouched(i))
    state.offers.put("o", Offer("o", "s", "r", "energy", 5, 5, 1, 0, 1, 2, to=("ä", "b")))
    state.add_totals(issued=7)
    store = SqliteStore(tmp_path / "l.sqlite3")
    committed(store, state, "head")
    expected = state_digest(state)
    assert lines_digest(stored_lines(store.state_in_order())) == expected
    assert list(stored_lines(store.state_in_order())) == list(state_lines(state))
    assert CheckpointJob(store.path, "head", tmp_path / "c.snap").run() == expected
    assert lines_digest([(tmp_path / "c.snap").read_bytes()]) == expected
    # A head other than the one the job is for: nothing is computed, no file written.
    assert CheckpointJob(store.path, "other", tmp_path / "d.snap").run() is None
    assert not (tmp_path / "d.snap").exists()
    # Writes not committed yet are merged in their place: added, changed, deleted rows.
    state.members.put("\U0001f601", Member("new", "active", 99))
    state.members.put("é", Member("changed", "left", 3))
    state.members.delete("z")
    state.vouched.put("0", Vouched(1))
    assert lines_digest(merged_lines(store.state_in_order(), state)) == state_digest(state)
    store.close()


def test_a_ledger_in_memory_accepts_the_checkpoints_a_ledger_on_sqlite_sealed(
    tmp_path: Path,
) -> None:
    community = street()
    on_disk = sqlite_node(community, tmp_path, "a")
    trading(community, on_disk)
    grow(community, on_disk, 3 * INTERVAL - on_disk.height)
    in_memory = community.node()
    for height in range(1, on_disk.height + 1):
        block = on_disk.block_at(height)
        assert block is not None
        assert bool(block.header.checkpoint) == (height % INTERVAL == 0)
        # Checked by the in-memory sort: any byte of difference is `bad_checkpoint`.
        assert in_memory.add_block(block).status == "connected"
    assert state_digest(on_disk.state) == state_digest(in_memory.state)


def test_the_job_computes_the_checkpoint_the_next_block_carries(tmp_path: Path) -> None:
    community = street()
    ledger = sqlite_node(community, tmp_path, "a")
    trading(community, ledger)
    grow(community, ledger, INTERVAL - 1 - ledger.height)
    job = ledger.checkpoint_job()
    assert job is not None and job.parent == ledger.head.hash
    digest = job.run()
    assert digest == state_digest(ledger.state)
    ledger.checkpoints.remember(job.parent, digest)
    assert ledger.checkpoint_job() is None  # known now
    block = community.seal(ledger, sealer=INTERVAL)
    assert block.header.checkpoint == digest
    assert ledger.checkpoint_job() is None  # the next block carries none


def test_a_ledger_in_memory_has_no_job(tmp_path: Path) -> None:
    community = street()
    ledger: Ledger = community.node()
    grow(community, ledger, INTERVAL - 1)
    assert ledger.checkpoint_job() is None


def test_a_snapshot_line_packs_to_the_stored_form_of_its_row(tmp_path: Path) -> None:
    community = street()
    ledger = sqlite_node(community, tmp_path, "a")
    trading(community, ledger)
    state = ledger.state
    state.offers.put("p", Offer("p", "s", "r", "energy", 5, 5, 1, 0, 1, 2, to=("ä",)))
    lines = list(state_lines(state))
    assert len(lines) > 10
    for line in lines:
        name, key, fields = json.loads(line)
        table = state.table(name)
        assert table.pack_fields(key, fields) == table.pack(table.rows[key])
    offer = json.loads(next(line for line in lines if line.startswith(b'["offers","p"')))[2]
    with pytest.raises(ValueError, match="another id"):
        state.offers.pack_fields("q", offer)
    with pytest.raises(ValueError, match="missing"):
        state.offers.pack_fields("p", {("x" if k == "price" else k): v for k, v in offer.items()})
    with pytest.raises(ValueError, match="not its row"):
        state.offers.pack_fields("p", {**offer, "extra": 1})
