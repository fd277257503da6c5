"""Issue 19, storage: a full disk, a database changed behind the node's back, a damaged
file, and a restarted home that has not heard its peers yet.

Against real homes: three `Home`s on a real Mosquitto with their real API (the street of
tests/edge), Flat 2's data directory on a small disk that the test fills; and the ledger
files a real node wrote, changed as someone with the file would change them.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from edge_controller.app.home import Home
from edge_controller.ledger import (
    DamagedStore,
    Genesis,
    KeyPair,
    Ledger,
    StorageError,
    SyncNode,
    sign_record,
)
from edge_controller.network import BrokerSettings
from tests.conftest import Mosquitto
from tests.edge.api_support import Street, eventually
from tests.ledger.test_cli import START, write_chain

from .storage_support import SmallDisk, edge_run, small_disk

ROOT = Path(__file__).resolve().parents[2]
ATTEMPTS = 40


@pytest.fixture
async def street_on_small_disk(
    tmp_path: Path, mosquitto: Mosquitto
) -> AsyncIterator[tuple[Street, SmallDisk]]:
    with small_disk(tmp_path / "flat") as disk:
        async with aiohttp.ClientSession() as session:
            community = Street(tmp_path, mosquitto.port, session)
            try:
                await community.start()
                yield community, disk
            finally:
                await community.stop()


def bought_by(street: Street, home: str, buyer: str) -> int:
    """How many trades the ledger of `home` holds with `buyer` buying."""
    account = street.account(buyer)
    trades = street.homes[home].ledger.state.trades.rows.values()
    return sum(1 for t in trades if t.buyer == account)


async def test_a_full_disk_answers_507_does_nothing_and_recovers_by_itself(
    street_on_small_disk: tuple[Street, SmallDisk],
) -> None:
    street, disk = street_on_small_disk
    flat = street.homes["flat"]
    offer = await street.sunny.offer(quantity=2_000)
    await street.in_a_block_everywhere(offer["id"])
    disk.fill(flat)

    statuses: dict[int, int] = {}
    accepted: list[str] = []
    for _ in range(ATTEMPTS):
        answer = await street.flat.call("POST", f"offers/{offer['id']}/accept", {"quantity": 1})
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        if answer.status == 201:
            accepted.append(answer.body["acceptance"])
        else:
            assert answer.status == 507, answer.body
            assert answer.body["error"]["code"] == "insufficient_storage", answer.body
    # The disk may take a few writes into space SQLite already had; then it refuses.
    assert statuses.get(507, 0) >= ATTEMPTS // 2, statuses
    assert 500 not in statuses
    status = await street.flat.get("status")
    assert status["storage"]["ok"] is False, status["storage"]
    assert status["storage"]["error"]["code"] == "insufficient_storage"
    # Nothing refused was pooled: the pool holds at most what was acknowledged.
    assert {r.id for r in flat.ledger.pool.values() if r.kind == "acceptance"} <= set(accepted)

    freed_at = time.monotonic()
    disk.free(flat)

    async def recovered() -> bool:
        return bool((await street.flat.get("status"))["storage"]["ok"])

    await eventually(recovered, "Flat 2's storage to work again by itself", within=20)
    recovery_s = time.monotonic() - freed_at
    after = await street.flat.post(f"offers/{offer['id']}/accept", {"quantity": 1})
    accepted.append(after["acceptance"])
    for acceptance in accepted:
        await street.in_a_block_everywhere(acceptance, within=30)
    # Every acknowledged acceptance became a trade, and not one refused with 507 did.
    for home in ("sunny", "flat", "corner"):
        assert bought_by(street, home, "flat") == len(accepted)
    print(
        f"full disk ({'tmpfs' if disk.tmpfs else 'SQLite page limit'}): {ATTEMPTS} accepts, "
        f"{statuses} by status, {len(accepted)} trades, recovered in {recovery_s:.2f} s"
    )


def test_a_write_the_disk_refuses_leaves_the_ledger_as_it_was(tmp_path: Path) -> None:
    """The pure-ledger side: a record the disk refuses is not pooled, a block the disk
    refuses is not connected, and both go through once there is room again."""
    genesis_file, db = write_chain(tmp_path)
    genesis = Genesis.load(genesis_file)
    clock = [START + 10 * 60_000]
    ledger = Ledger.open(db, genesis, clock=lambda: clock[0])
    buyer = KeyPair.from_seed(b"buyer")
    sealers = (KeyPair.from_seed(b"sealer-0"), KeyPair.from_seed(b"sealer-1"))
    seq = ledger.state.account(buyer.account).seq
    store_db = ledger.store.db  # type: ignore[attr-defined]
    (pages,) = store_db.execute("PRAGMA page_count").fetchone()
    store_db.execute(f"PRAGMA max_page_count = {pages}")
    head, digest = ledger.head.hash, ledger.state_digest
    refused = 0
    for i in range(200):
        to = KeyPair.from_seed(b"seller").account
        body = {"kind": "transfer", "to": to, "amount": 1, "seq": seq + 1, "time": clock[0]}
        body["memo"] = "x" * 150 + str(i)
        record = sign_record(buyer, genesis.community_id, body)
        try:
            ledger.submit(record)
        except StorageError as exc:
            assert exc.code == "insufficient_storage"
            refused += 1
            assert record.id not in ledger.pool
            break
        seq += 1
    assert refused == 1, "the capped database never filled"
    assert ledger.storage_failure is not None
    clock[0] += 60_000
    pooled = len(ledger.pool)
    key = next(k for k in sealers if ledger.in_turn(k))
    block = ledger.build_block(key)
    assert block is not None
    with pytest.raises(StorageError):
        ledger.add_block(block)
    assert (ledger.head.hash, ledger.state_digest, len(ledger.pool)) == (head, digest, pooled)
    store_db.execute("PRAGMA max_page_count = 1073741824")
    ledger.retry_storage()
    assert ledger.head.hash == block.hash and ledger.storage_failure is None
    ledger.close()
    reopened = Ledger.open(db, genesis, clock=lambda: clock[0])
    assert reopened.head.hash == block.hash
    reopened.close()


# --- stored state checked --------------------------------------------------------------------


def change_balance(db: Path) -> tuple[int, int]:
    """One digit of the richest account's stored balance, as an editor of the file would."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT key, value FROM state WHERE tbl = 'accounts'").fetchall()
        key, value = max(rows, key=lambda row: json.loads(row[1])[0])
        fields = json.loads(value)
        before = fields[0]
        text = str(before)
        fields[0] = int(("9" if text[0] != "9" else "1") + text[1:])
        conn.execute(
            "UPDATE state SET value = ? WHERE tbl = 'accounts' AND key = ?",
            (json.dumps(fields, separators=(",", ":")), key),
        )
    return before, fields[0]


def change_amount_in_block(db: Path, height: int) -> None:
    """The amount of a top-up inside the stored block at `height`."""
    with sqlite3.connect(db) as conn:
        (block_hash, records) = conn.execute(
            "SELECT b.hash, b.records FROM main m JOIN blocks b ON b.hash = m.hash"
            " WHERE m.height = ?",
            (height,),
        ).fetchone()
        wire = json.loads(records)
        for record in wire:
            if record["body"]["kind"] == "topup":
                record["body"]["amount"] *= 9
        conn.execute("UPDATE blocks SET records = ? WHERE hash = ?", (json.dumps(wire), block_hash))


def damage_a_page(db: Path) -> None:
    """Overwrite the last page of the file with garbage (a failing SD card)."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    data = bytearray(db.read_bytes())
    start = len(data) - page_size
    data[start:] = b"\x5a" * page_size
    db.write_bytes(bytes(data))


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, Path, Genesis]:
    genesis_file, db = write_chain(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    shutil.move(db, data / "ledger.sqlite3")
    return genesis_file, data / "ledger.sqlite3", Genesis.load(genesis_file)


def test_a_changed_balance_stops_the_node_with_one_line(
    written: tuple[Path, Path, Genesis],
) -> None:
    genesis_file, db, genesis = written
    before, after = change_balance(db)
    assert before != after
    with pytest.raises(DamagedStore, match="stored state differs from the digest"):
        Ledger.open(db, genesis)
    result = edge_run(db.parent, genesis_file)
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("energy-p2p-edge: ") and "Traceback" not in result.stderr
    assert "restore the file from a backup" in lines[-1] and "re-sync" in lines[-1]
    verify = cli_verify(genesis_file, db)
    assert verify.returncode == 1 and "state_mismatch" in verify.stdout
    print(f"changed balance {before} -> {after}: refused at start and by ledger verify")


def test_a_changed_block_is_neither_trusted_at_start_nor_served(
    written: tuple[Path, Path, Genesis],
) -> None:
    _, db, genesis = written
    # Block 1 is within the blocks checked at start (the chain has four).
    change_amount_in_block(db, 1)
    with pytest.raises(DamagedStore, match=r"block 1 .*records do not match its header"):
        Ledger.open(db, genesis)
    # Beyond the blocks checked at start, the block is refused when it is read.
    ledger = Ledger.open(db, genesis, check_blocks=2)
    assert ledger.height == 4
    with pytest.raises(DamagedStore):
        ledger.block_at(1)
    sync = SyncNode(ledger, "us")
    asked = {"type": "get_blocks", "hashes": [ledger.main[1], ledger.main[2]]}
    assert sync.handle("peer", asked, START) == []  # nothing damaged leaves this node
    assert ledger.storage_failure is not None
    assert ledger.storage_failure.code == "damaged_store"
    ledger.close()


def test_a_damaged_page_gives_one_line_from_the_node_and_from_verify(
    written: tuple[Path, Path, Genesis],
) -> None:
    genesis_file, db, _ = written
    damage_a_page(db)
    result = edge_run(db.parent, genesis_file)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert "is damaged" in result.stderr.strip().splitlines()[-1]
    verify = cli_verify(genesis_file, db)
    assert verify.returncode in (1, 2), verify
    assert "Traceback" not in verify.stderr
    out = (verify.stdout + verify.stderr).strip().splitlines()
    assert len(out) == 1 and "damaged" in out[0] and "re-sync" in out[0], out


def cli_verify(genesis: Path, db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_controller",
            "ledger",
            "verify",
            "--quiet",
            "--genesis",
            str(genesis),
            "--db",
            str(db),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_the_start_up_check_reapplies_the_last_blocks(
    written: tuple[Path, Path, Genesis],
) -> None:
    """Undo data that leads elsewhere is found: the check undoes and re-applies blocks."""
    _, db, genesis = written
    with sqlite3.connect(db) as conn:
        (block_hash,) = conn.execute("SELECT hash FROM main WHERE height = 4").fetchone()
        conn.execute("UPDATE undo SET data = '[]' WHERE hash = ?", (block_hash,))
    with pytest.raises(DamagedStore, match="undo data of block 4"):
        Ledger.open(db, genesis)


# --- sync unknown until a peer answers ----------------------------------------------------


async def test_a_restarted_home_never_says_in_sync_before_hearing_a_peer(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with aiohttp.ClientSession() as session:
        street = Street(tmp_path, mosquitto.port, session)
        try:
            await street.start()
            corner = street.homes["corner"]
            server = street.servers["corner"]
            await server.stop()
            await corner.stop()
            behind = corner.ledger.height
            # The others trade and seal on while Corner House is away.
            for _ in range(4):
                offer = await street.sunny.offer(quantity=100)
                await eventually(lambda id=offer["id"]: _in_block(street, "sunny", id), "a block")
            restarted = rebuilt(street, "corner")
            seen: list[tuple[bool | None, float | None, int]] = []
            status = restarted.status()["ledger"]
            seen.append((status["synced"], status["sync_progress"], status["height"]))
            await restarted.start()
            target = street.homes["sunny"].ledger.height

            async def caught_up() -> bool:
                s = restarted.status()["ledger"]
                seen.append((s["synced"], s["sync_progress"], s["height"]))
                return s["synced"] is True and s["height"] >= target

            await eventually(caught_up, "the restarted home to catch up", within=30, every=0.02)
            await restarted.stop()
        finally:
            street.servers.pop("corner", None)
            street.homes.pop("corner", None)
            await street.stop()
    assert seen[0] == (None, None, behind)
    lies = [s for s in seen if s[0] is True and s[2] < target]
    assert not lies, lies
    unknown = sum(1 for s in seen if s[0] is None)
    print(f"restarted {target - behind} blocks behind: {unknown} polls unknown, no false 'in sync'")


async def _in_block(street: Street, home: str, record_id: str) -> bool:
    return street.homes[home].ledger.is_recorded(record_id)


def rebuilt(street: Street, slug: str) -> Home:
    """The same home built again from its data directory, as a restart does."""
    old = street.homes[slug]
    return Home(
        name=old.name,
        data_dir=old.data_dir,
        genesis=old.genesis,
        node_key=old.key,
        meter_key=old.node.meter_key,
        community_broker=BrokerSettings(host="127.0.0.1", port=street.broker_port),
        policy=old.trader.policy,
        clock=old.clock,
        control_interval_ms=250,
    )
