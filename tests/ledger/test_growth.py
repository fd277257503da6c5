"""A node's memory does not grow with closed history, and what left memory still answers.

Bounded slices of the growth benchmark's workload (`bench growth` measures the real sizes):
the rows a node holds in memory are counted (not timed) after a slice and after a slice
twice as long; the state is compared with a node that keeps everything in memory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from edge_controller.bench.ledger import BenchCommunity, signed_chain
from edge_controller.ledger import Block, Ledger, SyncNode, genesis_entry, sync
from edge_controller.ledger.state import ColdRows, State
from edge_controller.ledger.store import Commit, SqliteStore
from edge_controller.ledger.verify import _Replay

HOMES = 11  # the fewest whose offers each go to other homes


def _blocks(records: int) -> list[Block]:
    return list(signed_chain(BenchCommunity.create(HOMES), records))


def _held(state: State) -> dict[str, int]:
    """Rows each table holds in memory (not those it reads from storage)."""
    return {t.name: dict.__len__(t.rows) for t in state.tables()}  # type: ignore[arg-type]


def _add(ledger: Ledger, blocks: list[Block]) -> None:
    for block in blocks:
        ledger.add_block(block, now=block.header.time)


def test_rows_held_in_memory_stay_flat_as_closed_history_doubles(tmp_path: Path) -> None:
    street = BenchCommunity.create(HOMES)
    blocks = _blocks(8_000)
    half = len(blocks) // 2
    ledger = Ledger.open(tmp_path / "chain.db", street.genesis)
    memory = Ledger(street.genesis)
    _add(ledger, blocks[:half])
    at_half = _held(ledger.state)
    _add(ledger, blocks[half:])
    at_full = _held(ledger.state)
    _add(memory, blocks)
    everything = _held(memory.state)
    for name in ("offers", "trades", "readings"):
        assert isinstance(ledger.state.table(name).rows, ColdRows)
        # Twice the history, about the same rows held (the last hour of finished rows).
        assert at_full[name] <= at_half[name] * 1.15 + 8, (name, at_half, at_full)
        assert at_full[name] < everything[name] / 2, (name, at_full, everything)
    # The same state as a node that keeps every row in memory, through the store.
    assert ledger.state.digest() == memory.state.digest()
    trades = sorted(t.id for t in ledger.state.trades.values_all())
    assert trades == sorted(memory.state.trades.rows)
    settled = next(t for t in memory.state.trades.rows.values() if t.status == "settled")
    assert ledger.state.trades.get(settled.id) == settled
    assert settled.id in ledger.state.trades
    ledger.close()

    reopened = Ledger.open(tmp_path / "chain.db", street.genesis)
    held = _held(reopened.state)
    assert held["trades"] <= at_full["trades"], held
    assert reopened.state.digest() == memory.state.digest()
    reopened.close()


def test_a_reorganisation_over_rows_kept_on_disk_reaches_the_same_state(tmp_path: Path) -> None:
    street = BenchCommunity.create(HOMES)
    blocks = _blocks(3_000)
    ledger = Ledger.open(tmp_path / "chain.db", street.genesis)
    _add(ledger, blocks)
    memory = Ledger(street.genesis)
    _add(memory, blocks)
    # Undo the last blocks (their rows come back from disk) and apply them again.
    depth = 6
    mark = ledger.state.mark()
    for height in range(ledger.height, ledger.height - depth, -1):
        undo = ledger.store.get_undo(ledger.main[height], ledger.state)
        ledger.state.undo_entries(undo)
    ledger.state.revert(mark)
    assert ledger.state.digest() == memory.state.digest()
    ledger.close()


_KILLED_NODE = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from edge_controller.bench.ledger import BenchCommunity, signed_chain
    from edge_controller.ledger import Ledger
    street = BenchCommunity.create({homes})
    ledger = Ledger.open({db!r}, street.genesis)
    blocks = list(signed_chain(street, 200))
    setup, offers = blocks[0], blocks[1]
    ledger.add_block(setup, now=setup.header.time)
    ledger.clock = lambda: offers.header.time
    mine = offers.records[0]
    theirs = next(r for r in offers.records if r.account != mine.account)
    ledger.submit(mine, own=True)
    ledger.submit(theirs, received=True)
    print(mine.id, theirs.id, flush=True)
    time.sleep(60)
    """
)


def test_own_records_survive_kill_9_and_peers_records_cost_no_write(tmp_path: Path) -> None:
    db = tmp_path / "chain.db"
    root = str(Path(__file__).resolve().parents[2])
    script = _KILLED_NODE.format(root=root, homes=HOMES, db=str(db))
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        mine, theirs = process.stdout.readline().split()
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    street = BenchCommunity.create(HOMES)
    ledger = Ledger.open(db, street.genesis)
    # The home's own acknowledged record is on disk; a peer's waited for the next block.
    assert mine in ledger.pool
    assert theirs not in ledger.pool
    ledger.close()


def test_peers_records_are_written_with_the_next_block(tmp_path: Path) -> None:
    street = BenchCommunity.create(HOMES)
    theirs = _blocks(200)[1].records[0]
    store = SqliteStore(tmp_path / "chain.db")
    store.open(street.genesis.community_id)
    store.pool_add(theirs, 1, durable=False)
    store.commit(Commit(head=genesis_entry(street.genesis)[1].hash))
    store.db.close()  # no clean close: as after a crash
    reopened = SqliteStore(tmp_path / "chain.db")
    snapshot = reopened.open(street.genesis.community_id)
    assert snapshot is not None
    assert [w["sig"] for w in snapshot.pool] == [theirs.to_wire()["sig"]]
    reopened.close()


def test_verify_holds_in_memory_only_what_the_next_block_needs() -> None:
    street = BenchCommunity.create(HOMES)
    blocks = _blocks(8_000)
    half = len(blocks) // 2
    replay = _Replay(street.genesis, blocks[-1].header.time + 60_000, None)
    held: list[dict[str, int]] = []
    for part in (blocks[:half], blocks[half:]):
        for block in part:
            replay.block(block.to_wire())
        held.append(_held(replay.state))
    memory = Ledger(street.genesis)
    _add(memory, blocks)
    for name in ("offers", "trades", "readings"):
        assert held[1][name] <= held[0][name] * 1.15 + 8, (name, held)
    # Record ids live in the scratch file, and a record seen before is still caught.
    assert replay.is_recorded(blocks[1].records[0].id)
    assert replay.digest() == memory.state.digest()
    spill = Path(replay._spill_dir.name)
    replay.close()
    assert not spill.exists()


def _catching_up(monkeypatch: Any) -> tuple[Ledger, Ledger, SyncNode, SyncNode]:
    """A server with 3,000 records of the street and an empty client (one signature worker,
    started 4 blocks behind), each behind its sync node."""
    monkeypatch.setattr(sync, "CATCH_UP_BLOCKS", 4)
    street = BenchCommunity.create(HOMES)
    server = Ledger(street.genesis)
    _add(server, _blocks(3_000))
    client = Ledger(street.genesis)
    serving = SyncNode(server, "server", member=lambda _p: True, message_limit=256 * 1024)
    joining = SyncNode(
        client, "joining", member=lambda _p: True, message_limit=256 * 1024, catch_up_workers=1
    )
    return server, client, serving, joining


def _deliver(queue: list[tuple[str, Any]], serving: SyncNode, joining: SyncNode, now: int) -> None:
    """Hand the next message to its node and queue its answers (heads to the server dropped)."""
    to, message = queue.pop(0)
    node, other = (joining, "server") if to == "joining" else (serving, "joining")
    if to == "server" and message["type"] == "head":
        return
    replies = node.handle(other, message, now)
    queue.extend((other, m) for peer, m in replies if peer in (None, other))


def test_signature_workers_run_only_while_catching_up(monkeypatch: Any) -> None:
    server, client, serving, joining = _catching_up(monkeypatch)
    with_workers: list[bool] = []
    add_blocks = client.add_blocks

    def watched(wires: list[Any], now: int | None = None) -> Any:
        with_workers.append(client.signature_pool is not None)
        return add_blocks(wires, now)

    monkeypatch.setattr(client, "add_blocks", watched)
    now = server.head.time + 60_000
    queue: list[tuple[str, Any]] = [("joining", serving.head_message(now))]
    while queue:
        _deliver(queue, serving, joining, now)
    assert client.head.hash == server.head.hash
    # Far behind: with workers, kept to the head (the last batches hold much of a short
    # chain); once it is reached, none left running.
    assert all(with_workers), with_workers
    assert client.signature_pool is None


def test_signature_workers_stop_when_the_peer_goes_silent(monkeypatch: Any) -> None:
    server, client, serving, joining = _catching_up(monkeypatch)
    now = server.head.time + 60_000
    queue: list[tuple[str, Any]] = [("joining", serving.head_message(now))]
    # Until the first batch of blocks started the workers; the server then says no more.
    while client.signature_pool is None:
        _deliver(queue, serving, joining, now)
    assert client.head.height < server.head.height - sync.CAUGHT_UP_BLOCKS
    joining.tick(now + sync.REQUEST_TIMEOUT_MS // 2)
    assert client.signature_pool is not None  # still catching up: the peer may answer
    # Its request timed out (a strike), then it stayed silent: forgotten, and the workers go.
    joining.tick(now + sync.REQUEST_TIMEOUT_MS + 1)
    joining.tick(now + sync.PEER_SILENT_MS + 1)
    assert "server" not in joining.peers
    assert client.signature_pool is None
