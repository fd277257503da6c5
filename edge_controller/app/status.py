"""The home's ledger, sync, broker and storage parts of `GET status`, read off its node."""

from __future__ import annotations

import shutil
from typing import Any

from edge_controller.app.node import LedgerNode


def storage_status(node: LedgerNode, data_dir: Any) -> dict[str, Any]:
    """The storage part of `GET status`: whether writes work, the last failure and
    since when, and the free space where the home keeps its data."""
    failure = node.ledger.storage_failure or node.outbox_failure
    if failure is None:
        node.storage_since = None
    else:
        node.storage_since = node.storage_since or node.clock.now_ms()
    try:
        free: int | None = shutil.disk_usage(data_dir).free
    except OSError:
        free = None
    return {
        "ok": failure is None,
        "error": None
        if failure is None
        else {"code": failure.code, "message": failure.message, "since": node.storage_since},
        "free_bytes": free,
    }


def ledger_status(node: LedgerNode) -> dict[str, Any]:
    """The ledger, sync and broker parts of `GET status`."""
    progress = node.sync.progress()
    head = node.ledger.head
    stats = node.link.stats()
    return {
        "ledger": {
            "height": head.height,
            "head": head.hash,
            "head_time": head.time,
            "final_height": node.ledger.final_height,
            "synced": progress.synced,
            "sync_progress": None if progress.fraction is None else round(progress.fraction, 4),
            "pool": len(node.ledger.pool),
            "sealer": node.sealer,
            "history": node.history.status(),
        },
        "broker": {
            key: getattr(stats, key)
            for key in ("connected", "outbox_pending", "last_error", "address", "sync_dropped")
        },
        "peers": stats.peers_online,
        "rejected": {
            "transport": dict(stats.rejected),
            "records": dict(node.rejections),
            "sync": dict(node.sync.rejected),
        },
    }
