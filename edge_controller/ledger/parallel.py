"""Signature checks on every core.

Ed25519 verification is the physical limit of a validating node, and the `cryptography`
binding holds the GIL while it verifies, so threads do not help: the other cores are
reached with worker processes. A node catching up hands each batch of blocks' signatures
to the workers first and applies the blocks one by one while the workers run ahead, as
Bitcoin Core's script-check threads do. Workers only answer "good or not"; anything not
confirmed good is verified again by the caller, which then names the bad record.

The pool has no thread of its own in the caller's process: the caller writes parts of
work into each worker's pipe and reads the answers whenever it waits for one. A pool
thread would need the GIL to hand over every part, and the caller holds it while it
applies blocks, so the workers would sit idle for want of work (measured: a third of the
catch-up's time). Each worker's pipe holds enough parts to keep it busy while the caller
applies a block.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import os
import pickle
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from .keys import Verifier

CHUNK = 32
Check = tuple[str, bytes, bytes]
"""(public key hex, signature, signed message)"""
# Bytes of work a worker's pipe may hold: about a block and a half of a street's records
# per worker, so a worker never waits while the caller applies a block. A pipe that cannot
# be made this large (not Linux) holds less, and the caller refills it more often.
PIPE_BYTES = 1 << 20
_SMALL_PIPE = 60 * 1024
STOP_TIMEOUT_S = 5.0


def _serve(tasks: Connection, answers: Connection) -> None:
    """A worker: verify each part it is sent (no cache: each signature is seen once here)
    and answer one byte per check, 1 for good; a None part or a closed pipe ends it."""
    verifier = Verifier(cache_size=0)
    while True:
        try:
            part = pickle.loads(tasks.recv_bytes())
        except (EOFError, OSError):
            return
        if part is None:
            return
        answers.send_bytes(bytes(verifier.verify(key, sig, message) for key, sig, message in part))


class Job:
    """One part of the checks handed to the pool: `result()` waits for its answers,
    `cancel()` takes it back if no worker was sent it yet (as `concurrent.futures`)."""

    def __init__(self, pool: SignaturePool, items: Sequence[Check]) -> None:
        self._pool = pool
        self.items = items
        self.data = pickle.dumps(list(items), protocol=pickle.HIGHEST_PROTOCOL)
        self.worker: int | None = None  # the worker sent it (None: not sent)
        self.answers: list[bool] | None = None
        self.cancelled = False

    def cancel(self) -> bool:
        if self.worker is not None or self.answers is not None:
            return False
        self.cancelled = True
        return True

    def result(self) -> list[bool]:
        """The answers, one per check (all False when the worker died: the caller then
        verifies them itself)."""
        while self.answers is None:
            self._pool.wait_for(self)
        return self.answers


class SignaturePool:
    """Worker processes that verify batches of signatures."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or (os.cpu_count() or 1))
        # spawn, not fork: the node's process has threads and open databases.
        context = multiprocessing.get_context("spawn")
        self._tasks: list[Connection] = []
        self._answers: list[Connection] = []
        self._processes: list[Any] = []
        self._capacity: list[int] = []
        # Per worker: the jobs sent and not answered yet, in order, and their bytes.
        self._sent: list[deque[Job]] = []
        self._sent_bytes: list[int] = []
        self._queue: deque[Job] = deque()
        for _ in range(self.workers):
            task_out, task_in = context.Pipe(duplex=False)[::-1]
            answer_in, answer_out = context.Pipe(duplex=False)
            process = context.Process(target=_serve, args=(task_in, answer_out), daemon=True)
            process.start()
            task_in.close()
            answer_out.close()
            self._tasks.append(task_out)
            self._answers.append(answer_in)
            self._processes.append(process)
            self._capacity.append(_pipe_capacity(task_out))
            self._sent.append(deque())
            self._sent_bytes.append(0)

    def submit(
        self, items: Sequence[Check], size: int = CHUNK
    ) -> list[tuple[Sequence[Check], Job]]:
        """Queue `items` for the workers in parts of `size`; returns each part with its
        job. Small parts let the caller take back the parts no worker was sent."""
        jobs = [Job(self, items[i : i + size]) for i in range(0, len(items), size)]
        self._queue.extend(jobs)
        self.pump()
        return [(job.items, job) for job in jobs]

    def pump(self) -> None:
        """Take in the answers the workers have written and send them more work, as much
        as their pipes hold (never blocking: a worker's pipe has room for what is sent)."""
        for worker in range(self.workers):
            self._collect(worker)
        queue = self._queue
        while queue:
            job = queue[0]
            if job.cancelled:
                queue.popleft()
                continue
            alive = [w for w in range(self.workers) if self._capacity[w]]
            if not alive:
                # Every worker died: the caller verifies everything itself.
                queue.popleft().answers = [False] * len(job.items)
                continue
            worker = min(alive, key=self._sent_bytes.__getitem__)
            room = self._capacity[worker] - self._sent_bytes[worker]
            if len(job.data) > room and self._sent[worker]:
                return
            queue.popleft()
            try:
                self._tasks[worker].send_bytes(job.data)
            except OSError:
                self._capacity[worker] = 0
                job.answers = [False] * len(job.items)
                continue
            job.worker = worker
            self._sent[worker].append(job)
            self._sent_bytes[worker] += len(job.data)

    def wait_for(self, job: Job) -> None:
        """Block until `job`'s worker answers something (or, not sent yet, until any does)."""
        if job.worker is None:
            self.pump()
            if job.worker is None and job.answers is None:
                busy = [self._answers[w] for w in range(self.workers) if self._sent[w]]
                if not busy:
                    job.answers = [False] * len(job.items)  # nothing can answer it
                    return
                wait(busy)
        else:
            wait([self._answers[job.worker]])
        self.pump()

    def _collect(self, worker: int) -> None:
        """Read the answers `worker` has written so far."""
        answers, sent = self._answers[worker], self._sent[worker]
        try:
            while sent and answers.poll():
                data = answers.recv_bytes()
                job = sent.popleft()
                self._sent_bytes[worker] -= len(job.data)
                job.answers = [bool(b) for b in data]
        except (EOFError, OSError):
            # A dead worker: its parts count as unconfirmed, so the caller verifies them.
            while sent:
                job = sent.popleft()
                job.answers = [False] * len(job.items)
            self._sent_bytes[worker] = 0
            self._capacity[worker] = 0

    def close(self) -> None:
        """Stop the workers (those that do not stop in time are killed)."""
        for tasks in self._tasks:
            with contextlib.suppress(OSError):
                tasks.send_bytes(pickle.dumps(None))
            tasks.close()
        for process in self._processes:
            process.join(STOP_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join()
        for answers in self._answers:
            answers.close()
        self._queue.clear()


def _pipe_capacity(connection: Connection) -> int:
    """The bytes of work to keep in a worker's pipe: as large a pipe as the system gives
    (less a margin for the frame), or what a default pipe holds."""
    try:
        size = fcntl.fcntl(connection.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (AttributeError, OSError):
        return _SMALL_PIPE
    return max(_SMALL_PIPE, size - 4096)


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
