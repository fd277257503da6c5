"""Stopping asyncio tasks for good."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(*tasks: asyncio.Future[Any], retry_s: float = 1.0) -> None:
    """Cancel `tasks` and return once every one of them has ended.

    Python 3.11's `asyncio.wait_for`, which aiomqtt awaits each acknowledgement with, can
    swallow a cancellation that arrives just as what it waits for completes (fixed in
    3.12). The task then carries on as if never cancelled, and a single `cancel()`
    followed by `await task` waits forever (a stopping home hung that way under load). So
    the cancel is repeated until the task has ended. A task that had failed before is
    logged, not raised: stopping goes on.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=retry_s)
    for task in tasks:
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("%s had failed before it was stopped: %r", _name(task), error)


def _name(task: asyncio.Future[Any]) -> str:
    return task.get_name() if isinstance(task, asyncio.Task) else repr(task)
