"""Prometheus families of replication: job outcomes per destination, and the queue gauges.

Every family is labelled by ``registry``, the *destination* registry's configured name (the same
label as ``policy_sidecar_registry_healthy``, so alerts can join on it). Counters count what this
process did; the queue gauges (``queue_depth``, ``queue_oldest_seconds``) are read from the job
store, so on PostgreSQL every replica reports the same store-wide numbers: aggregate them with
``max``, never ``sum``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sidecar.model.jobs import JobState, QueueStat
from sidecar.tasks import cancel_and_wait
from sidecar.telemetry import METRIC_PREFIX, get_logger
from sidecar.typing import QueueStats

__all__ = ["DURATION_BUCKETS", "QUEUE_STATES", "QueueGauges", "ReplicationMetrics"]

_log = get_logger("sidecar.replicate.metrics")
_P = f"{METRIC_PREFIX}replication_"

#: Job attempts take from tens of milliseconds (all blobs present) to minutes (large images).
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: The unfinished states the queue gauges report (each present for every known destination).
QUEUE_STATES = (JobState.QUEUED.value, JobState.RUNNING.value, JobState.PARKED.value)
_OUTCOME_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.PARKED, JobState.SKIPPED)


class ReplicationMetrics:
    """What the worker pool counts, per destination registry, in a caller-owned registry."""

    def __init__(self, registry: CollectorRegistry, registries: Iterable[str] = ()) -> None:
        """Register the families in ``registry``; ``registries`` get zero-valued outcome series."""
        self._finished = Counter(
            f"{_P}jobs_finished",
            "Jobs that reached a final or parked state, by destination registry and state.",
            ["registry", "state"],
            registry=registry,
        )
        self._retried = Counter(
            f"{_P}job_retries",
            "Attempts that will be retried, by destination registry and error code.",
            ["registry", "code"],
            registry=registry,
        )
        self._duration = Histogram(
            f"{_P}job_duration_seconds",
            "Wall time of one job attempt, by destination registry and outcome.",
            ["registry", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self._bytes = Counter(
            f"{_P}bytes_copied",
            "Bytes moved by finished copies, by destination registry.",
            ["registry"],
            registry=registry,
        )
        self._running = Gauge(
            f"{_P}jobs_running",
            "Jobs this process is copying now, by destination registry.",
            ["registry"],
            registry=registry,
        )
        # Series that exist from the start: increase() only sees the first failure of a
        # destination when the series was already there at 0 before it.
        for name in registries:
            for state in _OUTCOME_STATES:
                self._finished.labels(registry=name, state=state.value)
            self._running.labels(registry=name).set(0)

    def finished(self, registry: str, state: JobState) -> None:
        """Count one job that reached ``state`` (final or parked)."""
        self._finished.labels(registry=registry, state=state.value).inc()

    def retried(self, registry: str, code: str) -> None:
        """Count one attempt that failed with ``code`` and will be retried."""
        self._retried.labels(registry=registry, code=code).inc()

    def attempt(self, registry: str, outcome: str, seconds: float) -> None:
        """Record the wall time of one attempt and how it ended."""
        self._duration.labels(registry=registry, outcome=outcome).observe(seconds)

    def copied(self, registry: str, size: int) -> None:
        """Count the bytes one finished copy moved."""
        self._bytes.labels(registry=registry).inc(size)

    def running(self, registry: str, jobs: int) -> None:
        """Set how many jobs this process copies to ``registry`` now."""
        self._running.labels(registry=registry).set(jobs)


class QueueGauges:
    """Queue depth and the oldest runnable job's wait per destination, refreshed from the store.

    A periodic task runs one grouped query (:meth:`QueueStats.queue_stats`) every ``interval_s``
    and sets the gauges; a scrape only reads them, so it never waits for the database and never
    blocks the event loop. ``registries`` are the configured names: their series exist (at 0)
    from the start, so an alert can tell "empty" from "not reported".
    """

    def __init__(
        self,
        store: QueueStats,
        registry: CollectorRegistry,
        *,
        registries: Iterable[str] = (),
        interval_s: float = 15.0,
    ) -> None:
        """Register the gauges in ``registry``; nothing is read until :meth:`refresh` or run."""
        self._store = store
        self._interval_s = interval_s
        self._depth = Gauge(
            f"{_P}queue_depth",
            "Unfinished jobs in the job store (all replicas), by destination registry and state "
            "(queued, running, parked). Refreshed periodically from the store.",
            ["registry", "state"],
            registry=registry,
        )
        self._oldest = Gauge(
            f"{_P}queue_oldest_seconds",
            "How long the longest-waiting runnable queued job (all replicas) has waited since it "
            "became runnable, by destination registry; 0 when none waits.",
            ["registry"],
            registry=registry,
        )
        self._errors = Counter(
            f"{_P}queue_stats_errors",
            "Failed refreshes of the queue gauges (the job store did not answer).",
            registry=registry,
        )
        self._known: set[str] = set()
        self._zero(registries)

    def _zero(self, registries: Iterable[str]) -> None:
        for name in registries:
            self._known.add(name)
            for state in QUEUE_STATES:
                self._depth.labels(registry=name, state=state).set(0)
            self._oldest.labels(registry=name).set(0)

    def update(self, stats: Iterable[QueueStat]) -> None:
        """Set the gauges from ``stats``; a known destination or state absent from them is 0."""
        stats = list(stats)
        self._zero({s.registry for s in stats} | self._known)
        oldest: dict[str, float] = {}
        for stat in stats:
            if stat.state in QUEUE_STATES:
                self._depth.labels(registry=stat.registry, state=stat.state).set(stat.jobs)
            oldest[stat.registry] = max(oldest.get(stat.registry, 0.0), stat.oldest_wait_s)
        for name, seconds in oldest.items():
            self._oldest.labels(registry=name).set(seconds)

    async def refresh(self) -> None:
        """Read the store once and set the gauges; a failure is counted and logged, not raised."""
        try:
            stats = await self._store.queue_stats()
        except Exception:
            self._errors.inc()
            _log.warning("queue_stats_failed", exc_info=True)
            return
        self.update(stats)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[QueueGauges]:
        """Refresh now and then every ``interval_s`` until the block ends."""
        await self.refresh()
        task = asyncio.create_task(self._loop(), name="queue-gauges")
        try:
            yield self
        finally:
            await cancel_and_wait(task)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.refresh()
