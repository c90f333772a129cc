"""Waiting for the jobs a reconcile queued: copies before removals, and the removals themselves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from sidecar.model.jobs import TERMINAL_STATES, Job, JobState
from sidecar.typing import JobQueue

__all__ = ["SETTLED", "WaitJobs", "settle", "waiter"]

#: States a job rests in: terminal, or parked until its registry recovers.
SETTLED = TERMINAL_STATES | {JobState.PARKED}
#: Waits for jobs to settle and returns them as they ended (in the order given).
WaitJobs = Callable[[Sequence[Job]], Awaitable[list[Job]]]


async def settle(
    queue: JobQueue, jobs: Sequence[Job], *, timeout_s: float, poll_s: float = 0.1
) -> list[Job]:
    """Poll ``queue`` until every job settled or ``timeout_s`` passed; return their last state."""
    deadline = time.monotonic() + timeout_s
    current = {j.job_id: j for j in jobs}
    while True:
        for job_id, job in list(current.items()):
            if job.state not in SETTLED:
                current[job_id] = await queue.get(job_id)
        if all(j.state in SETTLED for j in current.values()) or time.monotonic() > deadline:
            return [current[j.job_id] for j in jobs]
        await asyncio.sleep(poll_s)


def waiter(queue: JobQueue, *, timeout_s: float) -> WaitJobs:
    """Return a :data:`WaitJobs` over ``queue``."""

    async def wait(jobs: Sequence[Job]) -> list[Job]:
        return await settle(queue, jobs, timeout_s=timeout_s)

    return wait
