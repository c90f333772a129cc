"""The scheduled reconcile: one run at a time across replicas (a lease in the job store), missed
runs caught up once at start — on SQLite and on a real PostgreSQL with two store connections."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from sidecar.config import Cron
from sidecar.reconcile import LEASE, Scheduler
from sidecar.store import SqlJobStore, open_job_store

pytestmark = [pytest.mark.integration, pytest.mark.store_backends("sqlite", "postgresql")]

DUE = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)


async def test_a_lease_has_one_holder_until_released_or_expired(store: SqlJobStore) -> None:
    assert await store.acquire_lease(LEASE, "a", ttl_s=60)
    assert not await store.acquire_lease(LEASE, "b", ttl_s=60)
    assert await store.acquire_lease(LEASE, "a", ttl_s=60)  # renewing is fine
    await store.release_lease(LEASE, "b")  # not b's: nothing happens
    assert not await store.acquire_lease(LEASE, "b", ttl_s=60)
    await store.release_lease(LEASE, "a")
    assert await store.acquire_lease(LEASE, "b", ttl_s=0.01)
    await asyncio.sleep(0.05)
    assert await store.acquire_lease(LEASE, "a", ttl_s=60)  # b's lease expired
    assert await store.lease_last_run(LEASE) is None
    await store.record_lease_run(LEASE, "a", DUE)
    assert await store.lease_last_run(LEASE) == DUE


async def test_two_replicas_due_at_once_run_the_reconcile_once(store_url: str) -> None:
    first, second = await open_job_store(store_url), await open_job_store(store_url)
    runs: list[str] = []
    try:

        def scheduler(store: SqlJobStore, owner: str) -> Scheduler:
            async def run() -> None:
                runs.append(owner)
                await asyncio.sleep(0.2)  # the other replica tries meanwhile

            return Scheduler(
                Cron.parse("0 2 * * *"), run, store, owner=owner, lease_s=60,
                clock=lambda: datetime(2026, 12, 6, 7, 0, tzinfo=UTC),
            )  # fmt: skip

        one, two = scheduler(first, "one"), scheduler(second, "two")
        ran = await asyncio.gather(one.once(DUE), two.once(DUE))
        assert sorted(ran) == [False, True] and len(runs) == 1
        # Later, the other replica finds that time done: nothing runs twice.
        assert not await two.once(DUE)
        assert len(runs) == 1
        # A replica starting later sees 02:00 today done: no catch-up run.
        assert await first.lease_last_run(LEASE) == DUE
        assert not await two.catch_up()
    finally:
        await first.close()
        await second.close()


async def test_a_time_missed_while_down_runs_once_at_start(store: SqlJobStore) -> None:
    runs: list[int] = []

    async def run() -> None:
        runs.append(1)

    scheduler = Scheduler(
        Cron.parse("0 2 * * *"), run, store, owner="a", lease_s=60,
        clock=lambda: datetime(2026, 12, 6, 7, 0, tzinfo=UTC),
    )  # fmt: skip
    assert await scheduler.catch_up()  # never ran: 02:00 today was missed
    assert not await scheduler.catch_up()
    assert runs == [1] and await store.lease_last_run(LEASE) == DUE
