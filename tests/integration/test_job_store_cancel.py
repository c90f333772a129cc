"""A store call cancelled mid-flight (an RPC deadline, a lost lease, shutdown) leaves the store usable.

Found by the partition fault scenario (tests/fault/network.py): a ``ListJobs`` whose caller gave
up while the SQLite store was opening its transaction left the shared connection inside that
transaction, and every later store call failed until the sidecar was restarted.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from sidecar.model.jobs import JobSpec, JobState
from sidecar.store import SqlJobStore

pytestmark = [pytest.mark.integration, pytest.mark.store_backends("sqlite", "postgresql")]


def spec(n: int) -> JobSpec:
    """A spec for image ``n`` routed to registry ``eu``."""
    return JobSpec("src", "team/app", f"sha256:{n:064x}", "eu", "team/app", tag="v1")


async def test_calls_cancelled_at_every_step_leave_the_store_working(store: SqlJobStore) -> None:
    await store.enqueue([spec(0)])
    # Cancel a read and a write after 0, 1, 2, ... event-loop steps: every await inside the
    # transaction (BEGIN, the statements, COMMIT) is hit at least once.
    for steps in range(12):
        for call in (store.list_jobs(), store.enqueue([spec(steps + 1)])):
            task = asyncio.ensure_future(call)
            for _ in range(steps):
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            # The very next call works, and nothing half-done is visible.
            jobs = await store.list_jobs(limit=100)
            assert all(j.state is JobState.QUEUED for j in jobs)
    final = await store.enqueue([spec(100)])
    assert [j.state for j in final] == [JobState.QUEUED]
    digests = {j.spec.digest for j in await store.list_jobs(limit=100)}
    assert spec(0).digest in digests and spec(100).digest in digests
