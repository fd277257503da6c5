"""How much of the chain a home keeps, and how a new home joins: the snapshot join at the
first start with an empty ledger, the pruning of old block bodies (`ledger/prune.py`) every
few minutes after that, the checkpoint digests and snapshot files computed off the event
loop, and what `GET status` says of them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from edge_controller.ledger import (
    Block,
    HistorySettings,
    JoinStatus,
    Ledger,
    SnapshotJoin,
    SqliteStore,
    StorageError,
    SyncNode,
    prune_history,
)

log = logging.getLogger(__name__)

PRUNE_EVERY_MS = 600_000


class History:
    """A home's history keeping: started with the node, ticked with its sync."""

    def __init__(
        self, ledger: Ledger, sync: SyncNode, settings: HistorySettings, now: int, name: str = ""
    ) -> None:
        self.ledger = ledger
        self.sync = sync
        self.settings = settings
        self.name = name
        self.pruned = 0
        self._pruned_at = now
        self._join: SnapshotJoin | None = None
        folder = ledger.checkpoints.folder
        empty = ledger.height == 0 and isinstance(ledger.store, SqliteStore)
        checkpoints = ledger.genesis.consensus.checkpoint_interval > 0
        if settings.join == "snapshot" and empty and checkpoints and folder is not None:
            self._join = SnapshotJoin(ledger, folder, now)
            sync.joiner = self._join
            log.debug("%s: empty ledger; it joins from a snapshot if a peer's chain is long", name)
        self.checkpoint = CheckpointWork(ledger, name)

    def waiting(self) -> bool:
        """Whether the home must not seal now: it is joining, or the digest the next block's
        checkpoint needs is still being computed (the next seal attempt finds it ready)."""
        return self.joining or not self.checkpoint.ready()

    async def checkpoint_ready(self, message: dict[str, Any]) -> None:
        """Before a sync message with blocks is handled: wait, without blocking the event
        loop, for the checkpoint digest being computed for the next block."""
        if message.get("type") in ("block", "blocks"):
            await self.checkpoint.wait()

    def close(self) -> None:
        """Stop the checkpoint thread (after the digest it computes, if any)."""
        self.checkpoint.close()

    @property
    def joining(self) -> bool:
        """Whether the home is still joining (it neither seals nor follows blocks)."""
        return self.sync.joining

    def tick(self, now: int) -> None:
        """Prune bodies past the history every `PRUNE_EVERY_MS` (never on an archive node,
        never while joining)."""
        if self.settings.archive or self.joining or now - self._pruned_at < PRUNE_EVERY_MS:
            return
        self._pruned_at = now
        try:
            pruned = prune_history(self.ledger, self.settings.history_ms)
        except StorageError as exc:
            log.warning("%s: pruning stopped: %s", self.name, exc.message)
            return
        if pruned:
            self.pruned += pruned
            log.info("%s: pruned the bodies of %d blocks", self.name, pruned)

    def status(self) -> dict[str, Any]:
        """`GET status` `ledger.history`: what is kept, and how the join went."""
        join: JoinStatus | None = self._join.status() if self._join is not None else None
        return {
            "archive": self.settings.archive,
            "history_months": self.settings.history_months,
            "bodies_from": self.ledger.base_height + 1,
            "join": None if join is None else join.as_dict(),
        }


class CheckpointWork:
    """The checkpoint digest (and snapshot file) the next block needs, computed on a thread
    of its own as soon as its parent commits (`Ledger.checkpoint_job`): at 100,000 records
    it takes seconds, which the event loop spends serving the API and MQTT meanwhile."""

    def __init__(self, ledger: Ledger, name: str = "") -> None:
        self.ledger = ledger
        self.name = name
        self._thread: ThreadPoolExecutor | None = None
        self._running: asyncio.Future[str | None] | None = None
        self._parent = ""
        ledger.events.connected.append(self._connected)

    def _connected(self, _block: Block) -> None:
        # Called on the loop thread after each commit of the best chain.
        self.start()

    def start(self) -> None:
        """Start computing the next block's checkpoint, if it carries one not yet known."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # a ledger used without the node's loop computes it in line
        if self._running is not None and not self._running.done():
            return
        job = self.ledger.checkpoint_job()
        if job is None or job.parent == self._parent:
            return
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="checkpoint")
        self._parent = job.parent
        running = loop.run_in_executor(self._thread, job.run)
        running.add_done_callback(lambda done: self._finished(job.parent, done))
        self._running = running
        log.debug("%s: computing the checkpoint after block %s", self.name, job.parent[:12])

    def _finished(self, parent: str, done: asyncio.Future[str | None]) -> None:
        if done.cancelled():
            return
        exc = done.exception()
        if exc is not None:
            # The block computes it in line then; a disk error is logged once here.
            log.warning("%s: checkpoint not computed off the loop: %s", self.name, exc)
            return
        digest = done.result()
        if digest is not None:
            self.ledger.checkpoints.remember(parent, digest)

    def ready(self) -> bool:
        """Whether the next block can be built or checked without waiting (starts the
        computation when it is due)."""
        self.start()
        return self._running is None or self._running.done()

    async def wait(self) -> None:
        """Wait for the computation under way, if any (the event loop serves meanwhile)."""
        if not self.ready() and self._running is not None:
            # A failure is `_finished`'s to log: the block then computes the digest in line.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._running)

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True)
