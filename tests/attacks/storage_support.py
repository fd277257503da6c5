"""A small disk for a home's data directory: a real tmpfs of a few MB when the tests may
mount one (root), otherwise SQLite's own limit on the database's size (`PRAGMA
max_page_count`), which makes SQLite answer "database or disk is full" exactly as a full
disk does. Either way no code of ours is replaced: the home meets a disk that is full."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edge_controller.app.home import Home
from edge_controller.processes import CHECKOUT
from tests.conftest import free_port

CHUNK = 64 * 1024
# Far more pages than any test writes: the limit SQLite has when nothing is injected.
NO_LIMIT = 1 << 30


def _can_mount() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass
class SmallDisk:
    """The data directory of one home, on a disk the test fills and frees."""

    path: Path
    tmpfs: bool
    filler: list[Path] = field(default_factory=list)

    def connections(self, home: Home) -> list[sqlite3.Connection]:
        """The home's own SQLite connections: its ledger's and its outbox's."""
        outbox = home.link._outbox._db  # the fault is injected where SQLite reads its limit
        assert outbox is not None
        return [home.ledger.store.db, outbox]  # type: ignore[attr-defined]

    def fill(self, home: Home) -> None:
        """Leave no room: fill the filesystem, or cap every database at its size now."""
        if not self.tmpfs:
            for db in self.connections(home):
                (pages,) = db.execute("PRAGMA page_count").fetchone()
                db.execute(f"PRAGMA max_page_count = {pages}")
            return
        target = self.path / f"filler-{len(self.filler)}"
        self.filler.append(target)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = CHUNK
            while size >= 512:  # the last pages of the disk too
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    size //= 2
        finally:
            os.close(fd)

    def free(self, home: Home) -> None:
        """Give the space back."""
        if not self.tmpfs:
            for db in self.connections(home):
                db.execute(f"PRAGMA max_page_count = {NO_LIMIT}")
            return
        for target in self.filler:
            target.unlink(missing_ok=True)
        self.filler.clear()

    def free_bytes(self) -> int:
        return os.statvfs(self.path).f_bavail * os.statvfs(self.path).f_frsize


@contextlib.contextmanager
def small_disk(path: Path, size_mb: int = 16) -> Iterator[SmallDisk]:
    """A data directory at `path` on a `size_mb` tmpfs (or SQLite's page limit)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = False
    if _can_mount():
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(path)],
            capture_output=True,
            check=False,
        )
        mounted = result.returncode == 0
    try:
        yield SmallDisk(path, tmpfs=mounted)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def edge_run(
    data_dir: Path, genesis: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`energy-p2p-edge run` on a data directory (it stops at once on a damaged ledger)."""
    config = data_dir.parent / "edge.yaml"
    config.write_text(
        f"name: Damaged\ndata_dir: {data_dir}\ngenesis: {genesis}\n"
        "community_broker: {host: 127.0.0.1, port: 1}\n"
        f"api: {{host: 127.0.0.1, port: {free_port()}, zeroconf: false}}\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "edge_controller", "run", "-c", str(config)],
        capture_output=True,
        text=True,
        cwd=CHECKOUT,
        timeout=timeout,
        check=False,
    )
