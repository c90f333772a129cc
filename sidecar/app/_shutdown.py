"""Shutdown steps with deadlines: one stuck component never keeps the sidecar from stopping.

A sidecar stops on SIGTERM by unwinding what it started, in reverse. If one step never returns
(a listener waiting on a connection, a task that swallowed its cancellation), everything after
it — the job pool giving its leases back, the store, OPA — never runs, and the process lives
until the kubelet SIGKILLs it. Each step here gets a deadline instead: an overrun is logged at
error level with the step's name and where every task was waiting, and the shutdown goes on.
The components that own processes or files (OPA, the job store) are not wrapped: their own stop
is bounded (OPA: SIGKILL after its grace period) and must run to the end.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Generic, TypeVar

from sidecar.telemetry import get_logger

__all__ = ["STOP_STEP_DEADLINE_S", "bounded_exit", "bounded_stop"]

_log = get_logger("sidecar.app")
_T = TypeVar("_T")

#: How long one shutdown step may take before it is abandoned (a pool releasing its jobs, a
#: listener closing its connections: well under this when healthy).
STOP_STEP_DEADLINE_S = 30.0
# Enough of every task's stack to name the await a step is stuck in, not a log line of megabytes.
_MAX_STACKS_CHARS = 20_000


def bounded_stop(
    step: str, stop: Callable[[], Awaitable[object]], deadline_s: float = STOP_STEP_DEADLINE_S
) -> Callable[[], Awaitable[None]]:
    """Return ``stop`` as a shutdown callback abandoned (and logged) after ``deadline_s``."""

    async def run() -> None:
        await _within(step, stop(), deadline_s)

    return run


class bounded_exit(Generic[_T]):
    """Wrap an async context manager so that its exit is abandoned (and logged) past a deadline."""

    def __init__(
        self,
        step: str,
        manager: AbstractAsyncContextManager[_T],
        deadline_s: float = STOP_STEP_DEADLINE_S,
    ) -> None:
        """Enter ``manager`` as usual; bound its exit by ``deadline_s`` under the name ``step``."""
        self._step = step
        self._manager = manager
        self._deadline_s = deadline_s

    async def __aenter__(self) -> _T:
        """Enter the wrapped manager (no deadline: starting may take what it takes)."""
        return await self._manager.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        """Exit the wrapped manager within the deadline; never suppress an exception."""
        await _within(self._step, self._manager.__aexit__(exc_type, exc, tb), self._deadline_s)
        return False


async def _within(step: str, work: Awaitable[object], deadline_s: float) -> None:
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=deadline_s)
    except asyncio.CancelledError:
        task.cancel()  # the shutdown itself was cancelled: take the step down with it
        raise
    if task in done:
        task.result()  # its own failure propagates, as an unwrapped step's would
        return
    # Read while the step is still stuck: after the cancellation its stack is gone.
    stacks = _task_stacks()
    task.cancel()
    # A step that swallows its cancellation is left behind rather than waited for again.
    await asyncio.wait({task}, timeout=1.0)
    _log.error(
        "shutdown step overran its deadline; going on",
        step=step,
        deadline_s=deadline_s,
        tasks=stacks,
    )


def _task_stacks() -> str:
    """Where every task of the loop waits, the stuck step's among them."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        out.write(f"-- {task!r}\n")
        task.print_stack(limit=8, file=out)
        if out.tell() > _MAX_STACKS_CHARS:
            break
    return out.getvalue()[:_MAX_STACKS_CHARS]
