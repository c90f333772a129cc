"""Queue depth and oldest-wait gauges per destination, read from a real job store (both backends)."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from sidecar.model.jobs import JobSpec, JobState
from sidecar.replicate.metrics import QueueGauges
from sidecar.store import SqlJobStore, store_backend

pytestmark = [pytest.mark.integration, pytest.mark.store_backends("sqlite", "postgresql")]

DEPTH = "policy_sidecar_replication_queue_depth"
OLDEST = "policy_sidecar_replication_queue_oldest_seconds"


def spec(n: int, registry: str) -> JobSpec:
    """A copy of image ``n`` to ``registry``."""
    return JobSpec("src", "team/app", f"sha256:{n:064x}", registry, "team/app", tag=f"v{n}")


def depth(metrics: CollectorRegistry, registry: str, state: str) -> float | None:
    """The queue_depth sample for ``registry`` and ``state`` (None when not exported)."""
    return metrics.get_sample_value(DEPTH, {"registry": registry, "state": state})


async def test_depth_and_oldest_wait_per_destination(store: SqlJobStore) -> None:
    metrics = CollectorRegistry()
    gauges = QueueGauges(store, metrics, registries=["eu", "us", "idle"])
    # Configured destinations are exported at 0 before anything is read.
    assert depth(metrics, "idle", "queued") == 0
    assert metrics.get_sample_value(OLDEST, {"registry": "idle"}) == 0

    await store.enqueue([spec(n, "eu") for n in range(3)] + [spec(10, "us"), spec(20, "ap")])
    await asyncio.sleep(0.4)  # the queued jobs have now waited at least this long
    [running] = await store.claim("w1", lease_s=30, limit=1, skip_registries=["us", "ap"])
    # The us job waits out a retry delay: queued, but not runnable, so not "waiting".
    [retrying] = await store.claim("w1", lease_s=30, limit=1, skip_registries=["eu", "ap"])
    await store.retry_later(retrying.job_id, "w1", delay_s=600, error="503", error_code="x")
    assert await store.park("ap", error="down") == 1
    await gauges.refresh()

    assert running.spec.destination_registry == "eu"
    assert depth(metrics, "eu", "queued") == 2
    assert depth(metrics, "eu", "running") == 1
    assert depth(metrics, "eu", "parked") == 0
    eu_wait = metrics.get_sample_value(OLDEST, {"registry": "eu"})
    assert eu_wait is not None and 0.4 <= eu_wait < 60
    assert depth(metrics, "us", "queued") == 1
    assert metrics.get_sample_value(OLDEST, {"registry": "us"}) == 0
    # A destination first seen in the store (not configured) is reported too.
    assert depth(metrics, "ap", "parked") == 1
    assert depth(metrics, "ap", "queued") == 0
    assert metrics.get_sample_value(OLDEST, {"registry": "ap"}) == 0
    assert depth(metrics, "idle", "queued") == 0

    # Finished work leaves the gauges: they drop back to 0, the series stay.
    for job in await store.claim("w2", lease_s=30, limit=5, skip_registries=["us"]):
        await store.finish(job.job_id, "w2", JobState.SUCCEEDED)
    await store.finish(running.job_id, "w1", JobState.FAILED, error="boom", error_code="x")
    await gauges.refresh()
    assert depth(metrics, "eu", "queued") == depth(metrics, "eu", "running") == 0
    assert metrics.get_sample_value(OLDEST, {"registry": "eu"}) == 0


async def test_a_store_that_fails_is_counted_not_raised(store: SqlJobStore, store_url: str) -> None:
    metrics = CollectorRegistry()
    gauges = QueueGauges(store, metrics, registries=["eu"], interval_s=0.05)
    await store.enqueue([spec(1, "eu")])
    async with gauges.running():
        await asyncio.sleep(0.2)
        assert depth(metrics, "eu", "queued") == 1
        # The table is gone (an operator's mistake, a restore in progress): every refresh fails,
        # the task keeps going, the last values stay.
        other = store_backend(store_url)
        await other.connect()
        try:
            async with other.transaction() as tx:
                await tx.execute("DROP TABLE jobs")
        finally:
            await other.close()
        await asyncio.sleep(0.3)
    errors = metrics.get_sample_value("policy_sidecar_replication_queue_stats_errors_total")
    assert errors is not None and errors >= 2
    assert depth(metrics, "eu", "queued") == 1
