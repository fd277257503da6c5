"""How much of the chain a home keeps, and how a new home joins: the snapshot join at the
first start with an empty ledger, the pruning of old block bodies (`ledger/prune.py`) every
few minutes after that, and what `GET status` says of both."""

from __future__ import annotations

import logging
from typing import Any

from edge_controller.ledger import (
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
