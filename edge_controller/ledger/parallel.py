"""Signature checks on every core.

Ed25519 verification is the physical limit of a validating node, and the `cryptography`
binding holds the GIL while it verifies, so threads do not help: the other cores are
reached with worker processes. A node catching up hands each batch of blocks' signatures
to the workers first and applies the blocks one by one while the workers run ahead, as
Bitcoin Core's script-check threads do. Workers only answer "good or not"; anything not
confirmed good is verified again by the caller, which then names the bad record.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor

from .keys import Verifier

CHUNK = 32
Check = tuple[str, bytes, bytes]
"""(public key hex, signature, signed message)"""

_worker_verifier: Verifier | None = None


def _check_batch(items: Sequence[Check]) -> list[bool]:
    """In a worker: verify each item (no cache: each signature is seen once here)."""
    global _worker_verifier  # noqa: PLW0603 - one verifier (key cache) per worker process
    if _worker_verifier is None:
        _worker_verifier = Verifier(cache_size=0)
    return [_worker_verifier.verify(key, sig, message) for key, sig, message in items]


class SignaturePool:
    """Worker processes that verify batches of signatures."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or (os.cpu_count() or 1))
        # spawn, not fork: the node's process has threads and open databases.
        self._executor = ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn")
        )

    def submit(
        self, items: Sequence[Check], size: int = CHUNK
    ) -> list[tuple[Sequence[Check], Future[list[bool]]]]:
        """Queue `items` for the workers in parts of `size`; returns each part with its
        future. Small parts let the caller take back the parts no worker has started."""
        return [
            (part, self._executor.submit(_check_batch, part))
            for part in (items[i : i + size] for i in range(0, len(items), size))
        ]

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def check_ahead(
    verifier: Verifier, pool: SignaturePool | None, items: Sequence[Check]
) -> Callable[[], None]:
    """Start verifying `items` on the pool; the returned function waits for the answers (or
    verifies the parts no worker took yet) and records the good signatures in `verifier`'s
    cache, so the caller's own checks are lookups. Without a pool it does nothing."""
    if pool is None or not items:
        return lambda: None
    jobs = pool.submit([item for item in items if not verifier.is_known_good(*item)])

    def wait() -> None:
        for part, future in jobs:
            if future.cancel():
                # No worker has started this part: the caller verifies it itself rather
                # than sit idle (the caller's own check below then finds it cached).
                for key, sig, message in part:
                    verifier.verify(key, sig, message)
                continue
            for (key, sig, message), good in zip(part, future.result(), strict=True):
                if good:
                    verifier.remember_good(key, sig, message)

    return wait
