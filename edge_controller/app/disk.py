"""The node's fsyncs of its ledger, on a thread of their own, so the event loop goes on.

The ledger commits without syncing (a commit reaches the operating system, which survives
`kill -9`); before the node acknowledges a record of its own, publishes a block it sealed
or announces a head it received, `durable` makes what it wrote survive a power cut too.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from edge_controller.ledger import StorageError


class Syncable(Protocol):
    """What `LedgerDisk` needs of the ledger (`Ledger.unsynced`, `Ledger.sync`)."""

    @property
    def unsynced(self) -> bool: ...
    def sync(self) -> None: ...


class LedgerDisk:
    """One thread that fsyncs the ledger, one sync at a time."""

    def __init__(self, ledger: Syncable) -> None:
        self.ledger = ledger
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="ledger-disk")
        self._syncing: asyncio.Future[None] | None = None

    async def durable(self) -> None:
        """Wait until what the ledger wrote so far is on disk. Raises `StorageError`."""
        # A sync under way clears the flag as it starts, so it may hold our write: wait.
        while (running := self._syncing) is not None and not running.done():
            with contextlib.suppress(StorageError):  # failed: the flag is set again
                await asyncio.shield(running)
        if self.ledger.unsynced:  # most messages write nothing: no thread hop for them
            job = asyncio.get_running_loop().run_in_executor(self._thread, self.ledger.sync)
            self._syncing = job
            await job

    def close(self) -> None:
        """Stop the thread once the sync under way, if any, is done."""
        self._thread.shutdown(wait=True)
