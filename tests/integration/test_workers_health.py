"""The worker pool asks the registry prober: down registries park at once, recovering ones wait."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import pytest

from sidecar.config import HealthSettings
from sidecar.errors import RegistryUnavailable
from sidecar.health import HealthMonitor, HealthState, Transition
from sidecar.model.jobs import JobSpec, JobState
from sidecar.replicate.retry import RetryPolicy
from sidecar.replicate.workers import WorkerPool
from sidecar.store import SqlJobStore
from tests.support.copiers import ScriptedCopier

pytestmark = pytest.mark.integration

SETTINGS = HealthSettings(failure_threshold=1, success_threshold=1, min_dwell_s=0.0)


class Registries:
    """The registries' edge the prober pings: each is up or down as the test says."""

    def __init__(self, *names: str) -> None:
        self.up = dict.fromkeys(names, True)

    async def ping(self, name: str) -> None:
        if not self.up[name]:
            raise RegistryUnavailable(f"registry {name}: connection refused")


def spec(n: int, registry: str = "eu", priority: int = 0) -> JobSpec:
    """Image ``n`` from ``src`` to ``registry``."""
    return JobSpec("src", "app", f"sha256:{n:064x}", registry, "app", priority=priority)


async def test_jobs_for_a_down_registry_park_without_burning_attempts(store: SqlJobStore) -> None:
    edge = Registries("src", "eu")
    monitor = HealthMonitor(["src", "eu"], edge.ping, SETTINGS)
    await monitor.probe_round()
    # The registry dies mid-copy: the first failure parks (the prober agrees), no retries.
    copier = ScriptedCopier(delay_s=0.2, script={spec(1).digest: [RegistryUnavailable("refused")]})
    pool = WorkerPool(
        store, copier, worker_id="w", poll_interval_s=0.05, health=monitor,
        retry=RetryPolicy(max_attempts=5, base_s=0.01, rng=random.Random(1)),  # noqa: S311
    )  # fmt: skip
    await pool.start()
    try:
        [first] = await store.enqueue([spec(1)])
        pool.wake()
        await copier.started.wait()  # the copy is running when the registry goes down
        edge.up["eu"] = False
        await monitor.probe_round()
        assert monitor.state("eu") is HealthState.UNHEALTHY
        [second] = await store.enqueue([spec(2)])
        pool.wake()
        await pool.wait_idle(10)
    finally:
        await pool.stop()
    for job_id in (first.job_id, second.job_id):
        parked = await store.get(job_id)
        assert (parked.state, parked.error_code) == (JobState.PARKED, "registry_unavailable")
        assert parked.attempts == 1
    # The second job never reached the copier: its registry was known to be down.
    assert [c.digest for c in copier.calls] == [spec(1).digest]


async def test_a_recovering_registry_is_held_then_runs_by_priority(store: SqlJobStore) -> None:
    edge = Registries("src", "eu")
    monitor = HealthMonitor(["src", "eu"], edge.ping, SETTINGS)
    released = asyncio.Event()

    async def recovery(transitions: Sequence[Transition]) -> None:
        await released.wait()  # stands for recovery queueing its work
        monitor.release({t.registry for t in transitions})
        pool.wake()

    monitor.subscribe(recovery)
    await monitor.probe_round()  # first contact: held until the listener releases it
    copier = ScriptedCopier()
    pool = WorkerPool(store, copier, worker_id="w", poll_interval_s=0.05, workers=1, health=monitor)
    await pool.start()
    try:
        await store.enqueue([spec(n, priority=p) for n, p in enumerate((10, 90, 45))])
        await asyncio.sleep(0.3)
        assert copier.calls == []
        assert monitor.blocked() == {"src", "eu"}
        released.set()
        await monitor.idle()
        await pool.wait_idle(10)
    finally:
        await pool.stop()
    assert [int(c.digest[-2:], 16) for c in copier.calls] == [1, 2, 0]
