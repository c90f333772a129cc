"""cancel_and_wait: a component's background task stops, and its caller's cancellation survives."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.tasks import cancel_and_wait


async def _forever() -> None:
    await asyncio.Event().wait()


async def _slow_to_stop(stopping: asyncio.Event) -> None:
    """A task whose cleanup takes a while after it is cancelled (a listener draining)."""
    try:
        await asyncio.Event().wait()
    finally:
        stopping.set()
        await asyncio.sleep(0.2)


async def test_every_task_is_cancelled_and_has_ended_when_it_returns() -> None:
    tasks = [asyncio.create_task(_forever()) for _ in range(3)]
    await asyncio.sleep(0)
    await cancel_and_wait(tasks[0], None, *tasks[1:])
    assert all(t.cancelled() for t in tasks)


async def test_a_task_that_failed_makes_the_failure_seen() -> None:
    async def fail() -> None:
        raise ValueError("broken loop")

    task = asyncio.create_task(fail())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="broken loop"):
        await cancel_and_wait(task)


async def test_the_callers_own_cancellation_while_it_waits_propagates() -> None:
    stopping = asyncio.Event()
    background = asyncio.create_task(_slow_to_stop(stopping))
    await asyncio.sleep(0)
    carried_on = False

    async def stop() -> None:
        nonlocal carried_on
        await cancel_and_wait(background)
        carried_on = True  # the suppress pattern got here although stop() was cancelled

    stopper = asyncio.create_task(stop())
    await stopping.wait()
    stopper.cancel()  # e.g. a shutdown step's deadline
    with pytest.raises(asyncio.CancelledError):
        await stopper
    assert not carried_on
    assert background.done()


async def test_cleanup_in_a_finally_of_a_cancelled_block_goes_on_after_it() -> None:
    released = asyncio.Event()

    async def hold() -> None:
        renewer = asyncio.create_task(_forever())
        try:
            await asyncio.Event().wait()
        finally:
            await cancel_and_wait(renewer)
            released.set()  # e.g. giving a lease back

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder
    assert released.is_set()
