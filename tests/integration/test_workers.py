"""The worker pool against a real job store (SQLite; PostgreSQL for two pools) and a copier double."""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from sidecar.errors import DigestMismatch, RegistryError, RegistryUnavailable
from sidecar.model.jobs import JobSpec, JobState
from sidecar.replicate.retry import RetryPolicy
from sidecar.replicate.workers import WorkerPool
from sidecar.store import SqlJobStore, open_job_store
from tests.support.copiers import ScriptedCopier

pytestmark = pytest.mark.integration

FAST = RetryPolicy(base_s=0.02, max_s=0.1, rng=random.Random(1))  # noqa: S311 (jitter)


def spec(n: int, registry: str = "eu", *, priority: int = 0, dry_run: bool = False) -> JobSpec:
    """A spec for image ``n`` to ``registry``."""
    digest = f"sha256:{n:064x}"
    return JobSpec("src", "app", digest, registry, "app", priority=priority, dry_run=dry_run)


@asynccontextmanager
async def running(
    store: SqlJobStore, copier: ScriptedCopier, **options: Any
) -> AsyncIterator[WorkerPool]:
    """A started pool, stopped when the block ends (also on failure)."""
    settings: dict[str, Any] = {"worker_id": "w1", "poll_interval_s": 0.05, "retry": FAST}
    pool = WorkerPool(store, copier, **(settings | options))
    await pool.start()
    try:
        yield pool
    finally:
        await pool.stop()


async def test_jobs_run_highest_priority_first_and_are_counted(store: SqlJobStore) -> None:
    priorities = [1, 5, 3, 9, 0]
    await store.enqueue([spec(n, priority=p) for n, p in enumerate(priorities)])
    copier, metrics = ScriptedCopier(size=1000), CollectorRegistry()
    async with running(store, copier, workers=1, metrics_registry=metrics) as pool:
        await pool.wait_idle(10)
    order = [int(c.digest.removeprefix("sha256:"), 16) for c in copier.calls]
    assert [priorities[n] for n in order] == [9, 5, 3, 1, 0]
    done = await store.list_jobs(state=JobState.SUCCEEDED)
    assert len(done) == 5 and all(j.bytes_done == j.bytes_total == 1000 for j in done)
    finished = metrics.get_sample_value(
        "policy_sidecar_replication_jobs_finished_total", {"registry": "eu", "state": "succeeded"}
    )
    assert finished == 5
    copied = metrics.get_sample_value(
        "policy_sidecar_replication_bytes_copied_total", {"registry": "eu"}
    )
    assert copied == 5000


async def test_per_registry_concurrency_is_never_exceeded(store: SqlJobStore) -> None:
    # "eu" jobs outrank "us" ones: "us" still runs because full registries are skipped.
    await store.enqueue([spec(n, "eu", priority=5) for n in range(8)])
    await store.enqueue([spec(100 + n, "us") for n in range(4)])
    copier = ScriptedCopier(delay_s=0.1)
    options = {"workers": 6, "per_registry_concurrency": 2, "registry_concurrency": {"us": 1}}
    async with running(store, copier, **options) as pool:
        await pool.wait_idle(20)
    assert copier.max_running == {"eu": 2, "us": 1}
    first_us = min(c.started for c in copier.calls if c.registry == "us")
    last_eu = max(c.started for c in copier.calls if c.registry == "eu")
    assert first_us < last_eu, "us jobs waited for every eu job"
    assert len(await store.list_jobs(state=JobState.SUCCEEDED)) == 12


async def test_transient_errors_are_retried_with_backoff_then_succeed(store: SqlJobStore) -> None:
    unavailable = RegistryError("503 Service Unavailable", status=503, transient=True)
    copier = ScriptedCopier(script={spec(1).digest: [unavailable, unavailable, None]})
    policy = RetryPolicy(base_s=0.15, max_s=1.0, rng=random.Random(3))  # noqa: S311
    expected = RetryPolicy(base_s=0.15, max_s=1.0, rng=random.Random(3))  # noqa: S311
    [job] = await store.enqueue([spec(1)])
    async with running(store, copier, retry=policy) as pool:
        await pool.wait_idle(10)
    starts = [c.started for c in copier.copies_of(job.spec.digest)]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) == 3
    assert all(gap >= expected.delay(n) - 0.01 for n, gap in enumerate(gaps, start=1))
    final = await store.get(job.job_id)
    assert (final.state, final.attempts, final.error) == (JobState.SUCCEEDED, 3, "")


async def test_retry_after_from_the_registry_is_honoured(store: SqlJobStore) -> None:
    throttled = RegistryError("429 Too Many Requests", status=429, transient=True, retry_after=0.6)
    copier = ScriptedCopier(script={spec(1).digest: [throttled]})
    [job] = await store.enqueue([spec(1)])
    async with running(store, copier) as pool:
        await pool.wait_idle(10)
    first, second = copier.copies_of(job.spec.digest)
    assert second.started - first.started >= 0.6
    assert (await store.get(job.job_id)).state is JobState.SUCCEEDED


async def test_permanent_errors_fail_at_once_with_their_code(store: SqlJobStore) -> None:
    failures = {
        spec(1).digest: RegistryError("manifest unknown", status=404),
        spec(2).digest: DigestMismatch("blob sha256:ab does not match", status=201),
        spec(3).digest: ValueError("a bug in the copier"),
    }
    copier = ScriptedCopier(script={d: [e] for d, e in failures.items()})
    jobs = await store.enqueue([spec(1), spec(2), spec(3)])
    async with running(store, copier) as pool:
        await pool.wait_idle(10)
    finals = [await store.get(j.job_id) for j in jobs]
    assert [(j.state, j.attempts) for j in finals] == [(JobState.FAILED, 1)] * 3
    assert [j.error_code for j in finals] == ["registry_error", "digest_mismatch", "internal"]
    assert finals[2].error == "a bug in the copier"
    assert len(copier.calls) == 3


async def test_unreachable_registry_parks_jobs_until_unparked(store: SqlJobStore) -> None:
    down = RegistryUnavailable("connection refused")
    copier = ScriptedCopier(script={spec(1).digest: [down, down, down]})
    [job] = await store.enqueue([spec(1)])
    async with running(store, copier, retry=RetryPolicy(max_attempts=3, base_s=0.01)) as pool:
        await pool.wait_idle(10)
        parked = await store.get(job.job_id)
        assert (parked.state, parked.attempts) == (JobState.PARKED, 3)
        assert parked.error_code == "registry_unavailable"
        assert await store.unpark("eu") == 1
        pool.wake()
        await pool.wait_idle(10)
    assert (await store.get(job.job_id)).state is JobState.SUCCEEDED
    assert len(copier.copies_of(job.spec.digest)) == 4


async def test_dry_run_plans_and_skips_with_bytes(store: SqlJobStore) -> None:
    copier = ScriptedCopier(size=12345)
    [job] = await store.enqueue([spec(1, dry_run=True)])
    async with running(store, copier) as pool:
        await pool.wait_idle(10)
    final = await store.get(job.job_id)
    assert (final.state, final.bytes_total, final.bytes_done) == (JobState.SKIPPED, 12345, 0)
    assert (final.blobs_total, final.blobs_done) == (3, 1)
    assert [c.kind for c in copier.calls] == ["plan"]


async def test_stop_releases_running_jobs_for_the_next_pool(store: SqlJobStore) -> None:
    [job] = await store.enqueue([spec(1)])
    slow = ScriptedCopier(delay_s=30)
    async with running(store, slow):
        await slow.started.wait()
    released = await store.get(job.job_id)
    assert released.state is JobState.QUEUED  # at once, not after the 30 s lease
    fast = ScriptedCopier()
    async with running(store, fast, worker_id="w2") as pool:
        await pool.wait_idle(10)
    assert (await store.get(job.job_id)).state is JobState.SUCCEEDED
    assert len(fast.calls) == 1


async def test_two_pools_on_one_postgres_never_run_a_job_twice(postgres_dsn: str) -> None:
    stores = [await open_job_store(postgres_dsn) for _ in range(2)]
    copiers = [ScriptedCopier(delay_s=0.02), ScriptedCopier(delay_s=0.02)]
    try:
        jobs = await stores[0].enqueue([spec(n, "eu" if n % 2 else "us") for n in range(24)])
        async with running(stores[0], copiers[0], workers=3) as one, running(
            stores[1], copiers[1], worker_id="w2", workers=3
        ) as two:  # fmt: skip
            await one.wait_idle(20)
            await two.wait_idle(20)
        assert copiers[0].calls and copiers[1].calls, "both pools should have worked"
        digests = [c.digest for copier in copiers for c in copier.calls]
        assert sorted(digests) == sorted(j.spec.digest for j in jobs)
        done = await stores[1].list_jobs(state=JobState.SUCCEEDED, limit=100)
        assert len(done) == 24 and all(j.attempts == 1 for j in done)
    finally:
        for opened in stores:
            await opened.close()
