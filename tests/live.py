"""The live worker in tests: run it until a condition holds, failing at once if it stops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from pipeline.worker import Worker


async def wait_while_running(
    done: Callable[[], bool], task: asyncio.Task[None], limit_s: float, what: str = "the worker"
) -> None:
    """Poll until `done()` holds; the worker's own error if its task ends first, an
    AssertionError naming `what` after `limit_s`."""
    deadline = time.monotonic() + limit_s
    while not done():
        if task.done():
            task.result()
            raise AssertionError("worker stopped early")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    """The worker running for the block; stopped (as by SIGTERM) and awaited after it."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def run_until(
    worker: Worker,
    done: Callable[[], bool],
    limit_s: float = 60.0,
    settle_s: float = 0.0,
    what: str = "the worker",
) -> None:
    """Run the worker until `done()` holds, then `settle_s` more (for anything extra to
    arrive while it still runs), then stop it."""
    async with running(worker) as task:
        await wait_while_running(done, task, limit_s, what)
        await asyncio.sleep(settle_s)
