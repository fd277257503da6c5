"""`energy-p2p-edge demo --data-dir DIR` picks up where it left off: a restart on the same
folder continues the same community (same genesis, registrar and home keys, the ledger it
had), registers nothing twice and tops up no wallet twice. A folder that holds something
else gets a clear error before anything starts."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from edge_controller.cli import main
from edge_controller.demo.community import COMMUNITY_FILE, TOP_UP, DemoDataError
from edge_controller.demo.embedded import Demo
from edge_controller.ledger import Ledger

from .api_support import eventually

HOMES = 3


def _key_modes(folder: Path) -> dict[str, int]:
    keys = [folder / "registrar.key", *folder.glob("*/node.key"), *folder.glob("*/meter.key")]
    return {str(k.relative_to(folder)): stat.S_IMODE(k.stat().st_mode) for k in keys}


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _registered(ledger: Ledger) -> dict[str, int]:
    return {r.id: r.registered_at for r in ledger.state.resources.rows.values()}


async def test_a_restarted_demo_continues_its_community_without_printing_money(
    tmp_path: Path,
) -> None:
    first = Demo(HOMES, data_dir=tmp_path)
    await first.start()
    try:
        ledger = first.running[0].home.ledger
        resources = sum(len(r.plan.resources) for r in first.running)

        async def registered_and_topped_up() -> bool:
            return (
                ledger.state.totals.issued == HOMES * TOP_UP
                and len(ledger.state.resources.rows) == resources
            )

        await eventually(registered_and_topped_up, "the registrar's records sealed", within=30)
        community = ledger.community
        accounts = [r.home.account for r in first.running]
        registrations = _registered(ledger)
        registrar_seq = ledger.state.account(first.registrar.account).seq
    finally:
        await first.stop()
    stopped_at = ledger.height
    modes = _key_modes(tmp_path)
    assert len(modes) == 1 + 2 * HOMES and set(modes.values()) == {0o600}, modes

    second = Demo(HOMES, data_dir=tmp_path)
    await second.start()
    try:
        ledger = second.running[0].home.ledger
        assert ledger.community == community
        assert [r.home.account for r in second.running] == accounts
        assert ledger.height >= stopped_at

        async def sealing_again() -> bool:
            return ledger.height >= stopped_at + 3

        await eventually(sealing_again, "three new blocks after the restart", within=30)
        # Nothing issued or registered again: same money, same registration heights.
        assert ledger.state.totals.issued == HOMES * TOP_UP
        assert _registered(ledger) == registrations
        assert ledger.state.account(second.registrar.account).seq == registrar_seq
        assert not [r for r in ledger.pool.values() if r.account == second.registrar.account]
    finally:
        await second.stop()


async def test_a_folder_that_is_no_demo_community_is_refused_with_a_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("my own files\n")
    with pytest.raises(DemoDataError, match=COMMUNITY_FILE):
        await Demo(HOMES, data_dir=tmp_path).start()

    (tmp_path / COMMUNITY_FILE).write_text('{"kind": "something else"}\n')
    code = await asyncio.to_thread(main, ["demo", "--data-dir", str(tmp_path), "--duration", "1"])
    assert code == 2
    error = capsys.readouterr().err
    assert "is not a demo community file" in error and "Traceback" not in error
    assert _names(tmp_path) == [COMMUNITY_FILE, "notes.txt"]
