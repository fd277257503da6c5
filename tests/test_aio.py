"""Stopping tasks for good, even one that swallows a cancellation (as Python 3.11's
`asyncio.wait_for` can when its inner future completes at the same moment)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from edge_controller.aio import cancel_and_wait


async def test_a_task_that_swallows_a_cancellation_is_still_stopped() -> None:
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            swallowed.set()  # and carries on, as if never cancelled
        await asyncio.sleep(60)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, retry_s=0.05), timeout=5)
    assert swallowed.is_set() and task.cancelled()


async def test_a_task_that_had_failed_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken() -> None:
        raise RuntimeError("the broker went away")

    failed = asyncio.create_task(broken(), name="ticker")
    running = asyncio.create_task(asyncio.sleep(60))
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="edge_controller.aio"):
        await cancel_and_wait(failed, running)
    assert running.cancelled()
    assert "ticker had failed before it was stopped: RuntimeError('the broker went away')" in (
        caplog.text
    )


async def test_stopping_nothing_or_what_has_ended_returns_at_once() -> None:
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    await asyncio.wait_for(cancel_and_wait(), timeout=1)
    await asyncio.wait_for(cancel_and_wait(done), timeout=1)
