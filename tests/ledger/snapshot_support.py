"""Nodes that speak the sync protocol to each other in memory, for checkpoint, snapshot and
pruning tests: every message goes through JSON as on the wire."""

from __future__ import annotations

import json
import signal
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_controller.ledger import Ledger, SnapshotJoin, SqliteStore, SyncNode

from .support import Community


class Net:
    """Sync nodes by id, and the messages between them, delivered in order."""

    def __init__(self) -> None:
        self.nodes: dict[str, SyncNode] = {}
        self.queue: deque[tuple[str, str, Any]] = deque()
        # Rewrites a message on its way (an attacker between two nodes); None: unchanged.
        self.tamper: dict[str, Any] = {}
        self.sent: dict[str, int] = {}

    def add(self, node_id: str, ledger: Ledger, message_limit: int | None = None) -> SyncNode:
        sync = SyncNode(ledger, node_id, member=lambda _peer: True, message_limit=message_limit)
        self.nodes[node_id] = sync
        return sync

    def send(self, source: str, outgoing: list[tuple[str | None, Any]]) -> None:
        for peer, message in outgoing:
            self.sent[message["type"]] = self.sent.get(message["type"], 0) + 1
            wire = json.loads(json.dumps(message))
            for target in [peer] if peer is not None else list(self.nodes):
                if target != source and target in self.nodes:
                    change = self.tamper.get(source)
                    self.queue.append((source, target, change(wire) if change else wire))

    def run(self, now: int, limit: int = 200_000) -> None:
        for _ in range(limit):
            if not self.queue:
                return
            source, target, message = self.queue.popleft()
            self.send(target, self.nodes[target].handle(source, message, now))
        raise AssertionError("the nodes kept talking")

    def tick(self, now: int) -> None:
        for node_id, sync in list(self.nodes.items()):
            self.send(node_id, sync.tick(now))
        self.run(now)


def sqlite_node(community: Community, folder: Path, name: str) -> Ledger:
    """A ledger on SQLite in `folder`, keeping checkpoint snapshots beside it."""
    return Ledger(
        community.genesis,
        store=SqliteStore(folder / f"{name}.sqlite3"),
        clock=lambda: community.now,
        snapshot_dir=folder / f"{name}.snapshots",
    )


def joiner(ledger: Ledger, folder: Path, now: int) -> SnapshotJoin:
    return SnapshotJoin(ledger, folder, now)


def grow(community: Community, ledger: Ledger, blocks: int, *records: Any) -> None:
    """Seal `blocks` blocks on `ledger`, each by its in-turn sealer; `records` go in the
    first one."""
    for i in range(blocks):
        height = ledger.height + 1
        community.seal(ledger, *(records if i == 0 else ()), sealer=height)


def time_bound(seconds: int) -> Callable[[], Iterator[None]]:
    """An autouse fixture failing a test that runs longer than `seconds` (SIGALRM)."""

    @pytest.fixture(autouse=True)
    def bounded() -> Iterator[None]:
        def expire(_signal: int, _frame: Any) -> None:
            raise TimeoutError(f"the test ran longer than {seconds} s")

        previous = signal.signal(signal.SIGALRM, expire)
        signal.alarm(seconds)
        try:
            yield
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)

    return bounded
