"""Signature checks on every core.

Ed25519 verification is the physical limit of a validating node, and the `cryptography`
binding holds the GIL while it verifies, so threads do not help: the other cores are
reached with worker processes. A node catching up hands each batch of blocks' signatures
to the workers first and applies the blocks one by one while the workers run ahead, as
Bitcoin Core's script-check threads do. Workers only answer "good or not"; anything not
confirmed good is verified again by the caller, which then names the bad record.

The workers and the caller take parts from one pipe (`SignaturePool`), so the caller
verifies too whenever it would otherwise wait.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import multiprocessing
import os
import pickle
import struct
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from .keys import Verifier

log = logging.getLogger(__name__)

CHUNK = 32
Check = tuple[str, bytes, bytes]
"""(public key hex, signature, signed message)"""
# Bytes of work the shared pipe may hold: a sync batch's signatures (at the link's 512 KB
# limit) fit at once. A pipe that cannot be made this large (not Linux) holds less, and the
# caller writes the rest as the workers take parts.
PIPE_BYTES = 1 << 20
_SMALL_PIPE = 60 * 1024
STOP_TIMEOUT_S = 5.0
_ID = struct.Struct("<Q")
# How long the caller waits for the pipe's read lock before it waits for an answer instead.
_STEAL_WAIT_S = 0.002


def _serve(tasks: Connection, take: Any, answers: Connection, answer: Any) -> None:
    """A worker: take parts from the shared pipe, verify each (no cache: each signature is
    seen once here) and answer the part's id and one byte per check, 1 for good; an empty
    part or a closed pipe ends it."""
    verifier = Verifier(cache_size=0)
    while True:
        try:
            with take:
                data = tasks.recv_bytes()
        except (EOFError, OSError):
            return
        if not data:
            return
        job_id, part = pickle.loads(data)
        good = bytes(verifier.verify(key, sig, message) for key, sig, message in part)
        with answer:
            answers.send_bytes(_ID.pack(job_id) + good)


class Job:
    """One part of the checks handed to the pool: `result()` waits for its answers,
    `cancel()` takes it back if it was not written to the workers' pipe yet (as
    `concurrent.futures`)."""

    def __init__(self, pool: SignaturePool, job_id: int, items: Sequence[Check]) -> None:
        self._pool = pool
        self.id = job_id
        self.items = items
        self.data = pickle.dumps((job_id, list(items)), protocol=pickle.HIGHEST_PROTOCOL)
        self.written = False
        self.answers: list[bool] | None = None
        self.cancelled = False

    def cancel(self) -> bool:
        if self.written or self.answers is not None:
            return False
        self.cancelled = True
        return True

    def result(self) -> list[bool]:
        """The answers, one per check (all False when a worker died with it: the caller
        then verifies them itself)."""
        while self.answers is None:
            self._pool.wait_for(self)
        return self.answers


class SignaturePool:
    """Worker processes that verify batches of signatures.

    The workers take parts from one shared pipe, oldest first; so does the caller when it
    waits for an answer and parts are still in the pipe, so it never sits idle while there
    is work (the start of each batch: the workers are on the first block, whose answers it
    needs first). The pool has no thread of its own in the caller's process: a pool thread
    needs the GIL to hand over each part, and the caller holds it while it applies blocks,
    so the workers waited for work (measured: a third of the catch-up's time)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or (os.cpu_count() or 1))
        # spawn, not fork: the node's process has threads and open databases.
        context = multiprocessing.get_context("spawn")
        tasks_in, self._tasks = context.Pipe(duplex=False)
        self._answers, answers_out = context.Pipe(duplex=False)
        # Kept for the pool's life: a spawned worker rebuilds each lock after it starts.
        self._take = context.Lock()
        self._answer = answer = context.Lock()
        self._capacity = _pipe_capacity(self._tasks)
        self._processes = [
            context.Process(
                target=_serve, args=(tasks_in, self._take, answers_out, answer), daemon=True
            )
            for _ in range(self.workers)
        ]
        for process in self._processes:
            process.start()
        self._tasks_in = tasks_in  # the caller takes parts from it too
        answers_out.close()
        self._next_id = 0
        self._queue: deque[Job] = deque()  # not written to the pipe yet
        self._open: dict[int, Job] = {}  # written, not answered yet
        self._open_bytes = 0
        self._verifier = Verifier(cache_size=0)
        self.broken = False

    def submit(
        self, items: Sequence[Check], size: int = CHUNK
    ) -> list[tuple[Sequence[Check], Job]]:
        """Queue `items` for the workers in parts of `size`; returns each part with its
        job. Small parts let the caller take back the parts not written yet."""
        jobs = []
        for i in range(0, len(items), size):
            jobs.append(Job(self, self._next_id, items[i : i + size]))
            self._next_id += 1
        self._queue.extend(jobs)
        self._feed()
        return [(job.items, job) for job in jobs]

    def _feed(self) -> None:
        """Write queued parts to the pipe while it has room (so writing never blocks)."""
        queue = self._queue
        while queue:
            job = queue[0]
            if job.cancelled:
                queue.popleft()
                continue
            if self.broken:
                queue.popleft().answers = [False] * len(job.items)
                continue
            if self._open and self._open_bytes + len(job.data) > self._capacity:
                return
            queue.popleft()
            self._tasks.send_bytes(job.data)
            job.written = True
            self._open[job.id] = job
            self._open_bytes += len(job.data)

    def _answered(self, job_id: int, good: bytes) -> None:
        job = self._open.pop(job_id, None)
        if job is not None:
            self._open_bytes -= len(job.data)
            job.answers = [bool(b) for b in good]

    def _collect(self) -> None:
        """Read the answers written so far (every worker gone: the pool is broken)."""
        answers = self._answers
        try:
            while answers.poll():
                data = answers.recv_bytes()
                self._answered(_ID.unpack_from(data)[0], data[_ID.size :])
        except (EOFError, OSError):
            if not self.broken:
                self._break()

    def _steal(self) -> bool:
        """Take the oldest part from the pipe and verify it here; False when there is none
        (or a worker is taking one)."""
        if not self._tasks_in.poll() or not self._take.acquire(timeout=_STEAL_WAIT_S):
            return False
        try:
            if not self._tasks_in.poll():
                return False
            data = self._tasks_in.recv_bytes()
        finally:
            self._take.release()
        job_id, part = pickle.loads(data)
        verify = self._verifier.verify
        self._answered(job_id, bytes(verify(key, sig, message) for key, sig, message in part))
        return True

    def wait_for(self, job: Job) -> None:
        """Make progress towards `job`'s answers: read answers, verify a part here if one
        waits in the pipe, else block until a worker answers (or one dies)."""
        self._collect()
        self._feed()
        if job.answers is not None or self._steal():
            return
        sentinels = [p.sentinel for p in self._processes]
        ready = wait([self._answers, *sentinels])
        if any(s in ready for s in sentinels):
            self._break()

    def _break(self) -> None:
        """A worker died, perhaps holding a part: every open part counts as unconfirmed
        (the caller verifies it itself) and no more are written."""
        if not self.broken:
            log.warning("a signature worker stopped: this node verifies signatures alone")
        self.broken = True
        self._collect()
        for job in self._open.values():
            job.answers = [False] * len(job.items)
        self._open.clear()
        self._open_bytes = 0
        self._feed()

    def close(self) -> None:
        """Stop the workers (those that do not stop in time are killed)."""
        self._queue.clear()
        with contextlib.suppress(OSError):
            for _ in self._processes:
                self._tasks.send_bytes(b"")
        for process in self._processes:
            process.join(STOP_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join()
        for connection in (self._tasks, self._tasks_in, self._answers):
            connection.close()


def _pipe_capacity(connection: Connection) -> int:
    """The bytes of work to keep in the pipe: as large a pipe as the system gives (less a
    margin for the frames), or what a default pipe holds."""
    try:
        size = fcntl.fcntl(connection.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (AttributeError, OSError):
        return _SMALL_PIPE
    return max(_SMALL_PIPE, size - 16 * 1024)


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
        # The parts no worker was sent yet, last first (the workers take the first ones
        # next): the caller verifies them itself rather than sit idle, and its own check
        # then finds them cached.
        started = []
        for part, job in reversed(jobs):
            if job.cancel():
                for key, sig, message in part:
                    verifier.verify(key, sig, message)
            else:
                started.append((part, job))
        for part, job in reversed(started):
            for (key, sig, message), good in zip(part, job.result(), strict=True):
                if good:
                    verifier.remember_good(key, sig, message)

    return wait
