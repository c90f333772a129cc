"""Stopping the background tasks every long-running component owns (loops, sweeps, timers).

Each component used to stop its task with ``task.cancel()`` then ``await task`` under
``contextlib.suppress(asyncio.CancelledError)``. That suppress also swallows a cancellation aimed
at the *caller* while it waits (a shutdown step's deadline, a caller giving up), which then carries
on as if nothing had happened. :func:`cancel_and_wait` tells the two apart.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel ``tasks`` (``None`` skipped) and wait until each has ended.

    The tasks' own ``CancelledError`` is expected and absorbed; any other exception a task ended
    with propagates. A cancellation of the caller that arrives while it waits propagates too, but
    one the caller was already handling (this called from a ``finally`` of a cancelled block) does
    not stop the rest of that cleanup.
    """
    live = [task for task in tasks if task is not None]
    for task in live:
        task.cancel()
    current = asyncio.current_task()
    # Cancellations of the caller already pending when it started cleaning up.
    before = current.cancelling() if current is not None else 0
    for task in live:
        try:
            await task
        except asyncio.CancelledError:
            if current is not None and current.cancelling() > before:
                raise  # the caller itself was cancelled meanwhile
