"""The `energy-p2p-edge` command line, run as a user runs it: `python -m edge_controller`."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge_controller.ledger import Consensus, Genesis, KeyPair, Ledger, sign_record

START = 1_767_225_600_000  # 2026-01-01 UTC: in the past, so no block is "too far ahead"
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_controller", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def write_chain(path: Path) -> tuple[Path, Path]:
    """A node on `Ledger.open` seals four blocks of a small trade; returns (genesis, db)."""
    registrar, seller, buyer = (KeyPair.from_seed(s) for s in (b"reg", b"seller", b"buyer"))
    sealers = [KeyPair.from_seed(b"sealer-0"), KeyPair.from_seed(b"sealer-1")]
    genesis = Genesis(
        name="Sunny Street",
        currency="SUN",
        time=START,
        registrars=(registrar.public_hex,),
        # The seller is never topped up: no minimum balance (its rule is tested elsewhere).
        consensus=Consensus(
            mode="poa", sealers=tuple(k.public_hex for k in sealers), min_balance=0
        ),
    )
    genesis_file = path / "genesis.json"
    genesis.save(genesis_file)
    db = path / "ledger.db"
    clock = [START + MINUTE]
    ledger = Ledger.open(db, genesis, clock=lambda: clock[0])
    seq: dict[str, int] = {}

    def submit(key: KeyPair, body: dict[str, Any]) -> str:
        seq[key.account] = seq.get(key.account, 0) + 1
        body = {**body, "seq": seq[key.account], "time": clock[0]}
        return ledger.submit(sign_record(key, ledger.community, body)).id

    def seal() -> None:
        sealer = next(k for k in sealers if ledger.in_turn(k))
        block = ledger.build_block(sealer)
        assert block is not None
        ledger.add_block(block)
        clock[0] += MINUTE

    registration = {
        "kind": "registration",
        "resource": "fc1",
        "owner": seller.account,
        "resource_kind": "fuel_cell",
        "power_w": 10_000,
        "capacity_wh": 50_000,
    }
    submit(registrar, registration)
    submit(registrar, {"kind": "topup", "to": buyer.account, "amount": 10_000_000})
    seal()
    window = {"start": START + 60 * MINUTE, "end": START + 120 * MINUTE}
    offer = {"kind": "offer", "resource": "fc1", "mode": "capacity", "quantity": 7000}
    offer_id = submit(seller, {**offer, "price": 300, "expires": START + 30 * MINUTE, **window})
    seal()
    submit(buyer, {"kind": "acceptance", "offer": offer_id, "quantity": 4000})
    seal()
    submit(buyer, {"kind": "transfer", "to": seller.account, "amount": 1_000})
    seal()
    assert ledger.height == 4
    ledger.close()
    return genesis_file, db


@pytest.fixture
def chain(tmp_path: Path) -> tuple[Path, Path]:
    return write_chain(tmp_path)


def tamper_record(db: Path, height: int, change: Any) -> None:
    """Edit the records JSON of the block at `height` in place, as an attacker with the file."""
    with sqlite3.connect(db) as conn:
        (block_hash,) = conn.execute("SELECT hash FROM main WHERE height = ?", (height,)).fetchone()
        (records,) = conn.execute(
            "SELECT records FROM blocks WHERE hash = ?", (block_hash,)
        ).fetchone()
        wire = json.loads(records)
        change(wire)
        conn.execute("UPDATE blocks SET records = ? WHERE hash = ?", (json.dumps(wire), block_hash))


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    result = cli("keygen", "--out", tmp_path / "node.key")
    assert result.returncode == 0, result.stderr
    key_file = tmp_path / "node.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = KeyPair.load(key_file)
    assert key.public_hex in result.stdout
    assert key.account in result.stdout


def test_keygen_refuses_to_overwrite_a_key(tmp_path: Path) -> None:
    key_file = tmp_path / "node.key"
    assert cli("keygen", "--out", key_file).returncode == 0
    before = key_file.read_bytes()
    result = cli("keygen", "--out", key_file)
    assert result.returncode == 2
    assert "already exists" in result.stderr
    assert key_file.read_bytes() == before


def test_genesis_creates_a_community_every_node_can_load(tmp_path: Path) -> None:
    registrar, sealer = KeyPair.from_seed(b"r"), KeyPair.from_seed(b"s")
    out = tmp_path / "genesis.json"
    result = cli(
        "genesis", "--name", "Sunny Street", "--currency", "SUN",
        "--sealer", sealer.public_hex, "--registrar", registrar.public_hex,
        "--confirmations", "3", "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    genesis = Genesis.load(out)
    assert genesis.consensus.sealers == (sealer.public_hex,)
    assert genesis.registrars == (registrar.public_hex,)
    assert genesis.consensus.confirmations == 3
    assert genesis.community_id in result.stdout


@pytest.mark.parametrize(("days", "ms"), [(None, 7 * DAY), ("30", 30 * DAY), ("0.25", 6 * HOUR)])
def test_a_community_chooses_how_long_closed_business_stays_when_it_is_founded(
    tmp_path: Path, days: str | None, ms: int
) -> None:
    """Both founding commands take `--forget-after-days`; the default week is not written."""
    chosen = [] if days is None else ["--forget-after-days", days]
    out = tmp_path / "genesis.json"
    keys = ["--sealer", KeyPair.from_seed(b"s").public_hex]
    keys += ["--registrar", KeyPair.from_seed(b"r").public_hex]
    made = cli(
        "genesis", "--name", "Sunny Street", "--currency", "SUN", *keys, *chosen, "--out", out
    )
    assert made.returncode == 0, made.stderr
    founded = cli(
        "community", "found", "--name", "Elm Street", "--currency", "ELM", "--home", "Elm House",
        "--broker-host", "127.0.0.1", *chosen, "--out", tmp_path / "elm",
    )  # fmt: skip
    assert founded.returncode == 0, founded.stderr
    for genesis_file in (out, tmp_path / "elm" / "genesis.json"):
        assert Genesis.load(genesis_file).consensus.forget_after_ms == ms
        written = json.loads(genesis_file.read_text())["consensus"]
        assert ("forget_after_ms" in written) == (days is not None)


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--currency", "sun"], "--currency"),
        (["--registrar", "abc"], "--registrar 'abc'"),
        (["--consensus", "poa"], "needs at least one --sealer"),
        (["--consensus", "pow", "--bits", "99"], "--bits"),
        (["--consensus", "pow", "--sealer", "SEALER"], "proof-of-authority"),
        (["--sealer", "SEALER", "--block-interval-ms", "5"], "--block-interval-ms"),
        (["--sealer", "SEALER", "--forget-after-days", "0.01"], "choose from an hour"),
        (["--sealer", "SEALER", "--forget-after-days", "3651"], "to 3650 days"),
        (["--sealer", "SEALER", "--forget-after-days", "nan"], "choose from an hour"),
        (["--sealer", "SEALER", "--forget-after-days", "a week"], "not a number of days"),
    ],
)
def test_genesis_refuses_bad_input_with_exit_code_2(
    tmp_path: Path, args: list[str], complaint: str
) -> None:
    sealer = KeyPair.from_seed(b"s").public_hex
    base = {"--name": "Sunny Street", "--currency": "SUN"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    argv = [x for pair in base.items() for x in pair]
    if "--registrar" not in base:
        argv += ["--registrar", KeyPair.from_seed(b"r").public_hex]
    argv = [sealer if a == "SEALER" else a for a in argv]
    result = cli("genesis", *argv, "--out", tmp_path / "genesis.json")
    assert result.returncode == 2
    assert complaint in result.stderr
    assert not (tmp_path / "genesis.json").exists()


def test_verify_accepts_a_chain_a_node_wrote(chain: tuple[Path, Path]) -> None:
    genesis, db = chain
    result = cli("ledger", "verify", "--genesis", genesis, "--db", db)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: 4 blocks" in result.stdout
    assert "block 4/4" in result.stderr  # the progress bar reached the end


def test_verify_names_the_block_whose_record_was_changed(chain: tuple[Path, Path]) -> None:
    genesis, db = chain

    def raise_topup(records: list[dict[str, Any]]) -> None:
        topup = next(r for r in records if r["body"]["kind"] == "topup")
        topup["body"]["amount"] = 99_000_000

    tamper_record(db, 1, raise_topup)
    result = cli("ledger", "verify", "--genesis", genesis, "--db", db)
    assert result.returncode == 1
    with sqlite3.connect(db) as conn:
        (block_hash,) = conn.execute("SELECT hash FROM main WHERE height = 1").fetchone()
    assert f"INVALID block 1 {block_hash}" in result.stdout
    assert "bad_record_root" in result.stdout


def test_verify_rechecks_every_signature(chain: tuple[Path, Path]) -> None:
    genesis, db = chain

    def forge_signature(records: list[dict[str, Any]]) -> None:
        sig = records[0]["sig"]
        records[0]["sig"] = ("0" if sig[0] != "0" else "1") + sig[1:]

    tamper_record(db, 3, forge_signature)
    result = cli("ledger", "verify", "--genesis", genesis, "--db", db, "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["bad_height"] == 3
    assert report["reason"] == "bad_signature"
    assert report["blocks"] == 2


def test_verify_notices_a_stored_state_the_chain_does_not_explain(
    chain: tuple[Path, Path],
) -> None:
    genesis, db = chain
    with sqlite3.connect(db) as conn:
        key, value = conn.execute(
            "SELECT key, value FROM state WHERE tbl = 'accounts' ORDER BY key LIMIT 1"
        ).fetchone()
        fields = json.loads(value)
        fields[0] += 1_000_000  # the balance
        conn.execute(
            "UPDATE state SET value = ? WHERE tbl = 'accounts' AND key = ?",
            (json.dumps(fields, separators=(",", ":")), key),
        )
    result = cli("ledger", "verify", "--genesis", genesis, "--db", db)
    assert result.returncode == 1
    assert "state_mismatch" in result.stdout


def test_verify_refuses_a_database_of_another_community(
    chain: tuple[Path, Path], tmp_path: Path
) -> None:
    _, db = chain
    other = tmp_path / "other.json"
    Genesis(
        name="Elsewhere",
        currency="SUN",
        time=START,
        registrars=("ab" * 32,),
        consensus=Consensus(mode="poa", sealers=("cd" * 32,)),
    ).save(other)
    result = cli("ledger", "verify", "--genesis", other, "--db", db)
    assert result.returncode == 2
    assert "holds community" in result.stderr


def test_export_prints_one_json_line_per_block(chain: tuple[Path, Path]) -> None:
    genesis, db = chain
    result = cli("ledger", "export", "--genesis", genesis, "--db", db)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["height"] for line in lines] == [1, 2, 3, 4]
    assert [len(line["records"]) for line in lines] == [2, 1, 1, 1]
    assert lines[1]["header"]["prev"] == lines[0]["hash"]
    assert lines[2]["records"][0]["body"]["kind"] == "acceptance"

    later = cli("ledger", "export", "--genesis", genesis, "--db", db, "--from", "3")
    assert [json.loads(line)["height"] for line in later.stdout.splitlines()] == [3, 4]


def test_bench_ledger_prints_its_figures_as_one_json_object() -> None:
    result = cli("bench", "ledger", "--json", "--records", "2000")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    for key in (
        "ed25519_verify_per_s",
        "ledger_records_per_s",
        "ratio",
        "verify_s",
        "verify_peak_rss_mb",
    ):
        assert figures[key] > 0, key
    assert figures["records"] >= 2000
    assert figures["ratio"] == pytest.approx(
        figures["ledger_records_per_s"] / figures["ed25519_verify_per_s"], rel=0.01
    )


def test_bench_growth_measures_every_figure_including_the_snapshot_join() -> None:
    # A bounded slice of the growth benchmark (docs/benchmarks.md runs it to 1 M records).
    result = cli("bench", "growth", "--json", "--max-records", "4000", "--live-slots", "1")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["ed25519_verify_per_s"] > 0
    [size] = figures["sizes"]
    assert size["records"] >= 4000
    for key in (
        "open_s",
        "rss_mb",
        "live_rss_mb",
        "verify_s",
        "verify_peak_rss_mb",
        "join_snapshot_s",
        "catchup_records_per_s",
        "disk_bytes_per_record",
        "state_rows",
        "state_mb",
    ):
        assert size[key] > 0, key
