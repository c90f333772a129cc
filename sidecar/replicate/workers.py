"""The worker pool: leases durable jobs, copies them within per-registry limits, retries or parks.

Each job attempt runs under a lease that is heartbeated while copying; a worker that crashes
leaves its lease to expire and another worker (or replica) takes the job over. ``stop()`` cancels
running copies and releases their jobs back to the queue at once (runnable immediately, the
interrupted attempt still counted) so a restart or another replica resumes them without waiting
for the lease to expire. Per-registry limits are per pool (per process), not global.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter as Tally
from collections.abc import Awaitable, Iterable, Mapping

from opentelemetry import trace
from prometheus_client import CollectorRegistry

from sidecar.errors import (
    ErrorCode,
    RegistryError,
    RegistryUnavailable,
    SidecarError,
    TagSuperseded,
)
from sidecar.model.jobs import DELETE_KINDS, CopyProgress, CopyResult, Job, JobState
from sidecar.replicate.metrics import ReplicationMetrics
from sidecar.replicate.retry import RetryPolicy
from sidecar.telemetry import get_logger
from sidecar.typing import Copier, Deleter, JobQueue, Redecider, RegistryHealthView

__all__ = ["SPAN_REPLICATE_JOB", "WorkerPool"]

SPAN_REPLICATE_JOB = "replicate.job"
_log = get_logger("sidecar.replicate.workers")
_tracer = trace.get_tracer("sidecar.replicate")


class _Progress:
    """Forwards copier progress to the store at most once per interval (the last one always)."""

    def __init__(self, pool: WorkerPool, job: Job) -> None:
        self._pool, self._job = pool, job
        self._last_write = -1e9
        self.latest: CopyProgress | None = None
        self._written: CopyProgress | None = None

    async def report(self, progress: CopyProgress) -> None:
        """Remember ``progress``; write it when the last write is old enough."""
        self.latest = progress
        now = asyncio.get_running_loop().time()
        if now - self._last_write >= self._pool.progress_interval_s:
            self._last_write = now
            await self.flush()

    async def flush(self, fallback: CopyProgress | None = None) -> None:
        """Write the latest progress (or ``fallback`` when the copier reported none)."""
        latest = self.latest or fallback
        if latest is not None and latest != self._written:
            self._written = latest
            await self._pool.store.progress(self._job.job_id, self._pool.worker_id, latest)


class WorkerPool:
    """Runs queued jobs with ``workers`` concurrent copies, highest priority first."""

    def __init__(
        self,
        store: JobQueue,
        copier: Copier,
        *,
        worker_id: str,
        workers: int = 4,
        per_registry_concurrency: int = 2,
        registry_concurrency: Mapping[str, int] | None = None,
        retry: RetryPolicy | None = None,
        lease_s: float = 30.0,
        poll_interval_s: float = 0.5,
        progress_interval_s: float = 1.0,
        metrics_registry: CollectorRegistry | None = None,
        health: RegistryHealthView | None = None,
        deleter: Deleter | None = None,
        redecider: Redecider | None = None,
        registries: Iterable[str] = (),
    ) -> None:
        """Configure the pool; nothing runs until :meth:`start`.

        With ``health`` (the registry prober), jobs for a registry known to be down are parked
        without an attempt, and registries being recovered are not claimed from. ``registries``
        (the configured destinations) get zero-valued outcome series from the start, so a rate
        or increase over them sees the first failure.
        """
        self.store, self.worker_id = store, worker_id
        self.progress_interval_s = progress_interval_s
        self._copier, self._workers = copier, workers
        self._per_registry = per_registry_concurrency
        self._limits = dict(registry_concurrency or {})
        self._retry = retry or RetryPolicy()
        self._lease_s, self._poll_s = lease_s, poll_interval_s
        self._metrics = ReplicationMetrics(metrics_registry or CollectorRegistry(), registries)
        self._health = health
        self._deleter = deleter
        self._redecider = redecider
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._active: Tally[str] = Tally()
        # Jobs leased by us whose outcome is not yet written: released on stop().
        self._unfinished: dict[str, Job] = {}

    def use_redecider(self, redecider: Redecider | None) -> None:
        """Decide each copy job again before it runs (see sidecar.replicate.redecide: when)."""
        self._redecider = redecider

    def wake(self) -> None:
        """Look for work now instead of at the next poll (call after enqueueing)."""
        self._wake.set()

    async def start(self) -> None:
        """Start claiming and running jobs."""
        if self._dispatcher is None:
            self._dispatcher = asyncio.create_task(self._dispatch(), name="worker-pool")
            _log.info("worker_pool_started", worker_id=self.worker_id, workers=self._workers)

    async def stop(self) -> None:
        """Cancel running copies and release their jobs to the queue; idempotent."""
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is None:
            return
        dispatcher.cancel()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(dispatcher, *tasks, return_exceptions=True)
        for job in list(self._unfinished.values()):
            try:
                await self.store.retry_later(
                    job.job_id, self.worker_id, delay_s=0.0,
                    error="released: worker pool stopped", error_code="",
                )  # fmt: skip
            except Exception:
                _log.exception("job_release_failed", job_id=job.job_id)
        self._unfinished.clear()
        _log.info("worker_pool_stopped", worker_id=self.worker_id, released=len(tasks))

    async def wait_idle(self, timeout_s: float) -> None:
        """Wait until nothing runs here and no job is queued or running; raise TimeoutError."""
        async with asyncio.timeout(timeout_s):
            while True:
                if not self._tasks:
                    queued = await self.store.list_jobs(state=JobState.QUEUED, limit=1)
                    running = await self.store.list_jobs(state=JobState.RUNNING, limit=1)
                    if not queued and not running:
                        return
                await asyncio.sleep(min(0.05, self._poll_s))

    def _limit(self, registry: str) -> int:
        return self._limits.get(registry, self._per_registry)

    async def _dispatch(self) -> None:
        while True:
            self._wake.clear()
            await self._fill()
            # Sleep until a job ends, wake() is called, or the poll interval passes: never spin.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_s)

    async def _fill(self) -> None:
        while len(self._tasks) < self._workers:
            full = {r for r, n in self._active.items() if n >= self._limit(r)}
            if self._health is not None:
                full |= self._health.blocked()
            try:
                # One at a time, so a batch can never exceed a registry's limit.
                jobs = await self.store.claim(
                    self.worker_id, lease_s=self._lease_s, limit=1, skip_registries=full
                )
            except Exception:
                _log.exception("job_claim_failed", worker_id=self.worker_id)
                return
            if not jobs:
                return
            self._launch(jobs[0])

    def _launch(self, job: Job) -> None:
        registry = job.spec.destination_registry
        self._active[registry] += 1
        self._metrics.running(registry, self._active[registry])
        self._unfinished[job.job_id] = job
        task = asyncio.create_task(self._run(job), name=f"job-{job.job_id}")
        self._tasks[job.job_id] = task

        def done(_: asyncio.Task[None]) -> None:
            self._tasks.pop(job.job_id, None)
            self._active[registry] -= 1
            self._metrics.running(registry, self._active[registry])
            self._wake.set()

        task.add_done_callback(done)

    async def _run(self, job: Job) -> None:
        attempt = asyncio.create_task(self._attempt(job))
        heartbeat = asyncio.create_task(self._heartbeat(job, attempt))
        try:
            await attempt
            self._unfinished.pop(job.job_id, None)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # stop(): the job stays in _unfinished and is released
            # The heartbeat cancelled the copy: the lease is someone else's, write nothing.
            self._unfinished.pop(job.job_id, None)
            self._metrics.attempt(job.spec.destination_registry, "lease_lost", 0.0)
        except Exception:
            # Writing the outcome failed (store down): the lease expires and the job is retaken.
            self._unfinished.pop(job.job_id, None)
            _log.exception("job_outcome_not_recorded", job_id=job.job_id)
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, job: Job, attempt: asyncio.Task[None]) -> None:
        while True:
            await asyncio.sleep(self._lease_s / 3)
            try:
                held = await self.store.heartbeat(job.job_id, self.worker_id, lease_s=self._lease_s)
            except Exception:
                _log.warning("job_heartbeat_failed", job_id=job.job_id, exc_info=True)
                continue
            if not held:
                _log.warning("job_lease_lost", job_id=job.job_id, worker_id=self.worker_id)
                attempt.cancel()
                return

    async def _write(self, call: Awaitable[None]) -> None:
        # A stop() arriving mid-write must not leave the outcome half recorded.
        await asyncio.shield(call)

    async def _attempt(self, job: Job) -> None:
        spec, loop = job.spec, asyncio.get_running_loop()
        started = loop.time()
        attributes: dict[str, str | int | bool] = {
            "replicate.job_id": job.job_id,
            "replicate.digest": spec.digest,
            "replicate.destination": job.destination,
            "replicate.attempt": job.attempts,
            "replicate.dry_run": spec.dry_run,
        }
        with _tracer.start_as_current_span(SPAN_REPLICATE_JOB, attributes=attributes) as span:
            try:
                if self._down(spec.destination_registry):
                    outcome = await self._park_unavailable(job)
                elif why := await self._withdrawn(job):
                    outcome = await self._withdraw(job, why)
                else:
                    outcome = await (self._plan(job) if spec.dry_run else self._copy(job))
            except asyncio.CancelledError:
                span.set_attribute("replicate.outcome", "cancelled")
                raise
            except TagSuperseded as exc:
                outcome = await self._superseded(job, exc)
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(trace.StatusCode.ERROR, str(exc))
                outcome = await self._failed(job, exc)
            span.set_attribute("replicate.outcome", outcome)
        duration = loop.time() - started
        self._metrics.attempt(spec.destination_registry, outcome, duration)
        _log.info(
            "job_attempt_finished", job_id=job.job_id, digest=spec.digest,
            destination=job.destination, attempt=job.attempts, outcome=outcome,
            duration_s=round(duration, 4),
        )  # fmt: skip

    def _down(self, registry: str) -> bool:
        return self._health is not None and not self._health.healthy(registry)

    async def _park_unavailable(self, job: Job) -> str:
        # An attempt against a registry the prober knows is down only burns the retry budget.
        registry = job.spec.destination_registry
        message = f"registry {registry} is unavailable (health probe); parked until it recovers"
        code = ErrorCode.REGISTRY_UNAVAILABLE.value
        await self._write(
            self.store.finish(
                job.job_id, self.worker_id, JobState.PARKED, error=message, error_code=code
            )
        )
        self._metrics.finished(job.spec.destination_registry, JobState.PARKED)
        return JobState.PARKED.value

    async def _plan(self, job: Job) -> str:
        if job.spec.kind in DELETE_KINDS:  # a dry run deletes nothing, whatever the job says
            await self._write(self.store.finish(job.job_id, self.worker_id, JobState.SKIPPED))
            self._metrics.finished(job.spec.destination_registry, JobState.SKIPPED)
            return JobState.SKIPPED.value
        plan = await self._copier.plan(job.spec)
        blobs = plan.blobs_missing + plan.blobs_present
        # The plan is recorded as the job's totals: bytes to copy, blobs already present as done.
        recorded = CopyProgress(plan.bytes_to_copy, 0, blobs, plan.blobs_present)
        await self._write(self.store.progress(job.job_id, self.worker_id, recorded))
        await self._write(self.store.finish(job.job_id, self.worker_id, JobState.SKIPPED))
        self._metrics.finished(job.spec.destination_registry, JobState.SKIPPED)
        _log.info("job_dry_run_plan", job_id=job.job_id, manifests=plan.manifests,
                  blobs_missing=plan.blobs_missing, bytes_to_copy=plan.bytes_to_copy)  # fmt: skip
        return JobState.SKIPPED.value

    async def _copy(self, job: Job) -> str:
        if job.spec.kind in DELETE_KINDS:
            return await self._delete(job)
        progress = _Progress(self, job)
        result = await self._copier.copy(job.spec, progress.report)
        await self._write(progress.flush(fallback=_final_progress(result)))
        await self._write(
            self.store.finish(job.job_id, self.worker_id, JobState.SUCCEEDED, result=result)
        )
        self._metrics.finished(job.spec.destination_registry, JobState.SUCCEEDED)
        self._metrics.copied(job.spec.destination_registry, result.bytes_moved)
        return JobState.SUCCEEDED.value

    async def _delete(self, job: Job) -> str:
        if self._deleter is None:
            raise SidecarError(f"job {job.job_id}: delete jobs are not enabled in this pool")
        result = await self._deleter.delete(job.spec)
        await self._write(
            self.store.finish(job.job_id, self.worker_id, JobState.SUCCEEDED, result=result)
        )
        self._metrics.finished(job.spec.destination_registry, JobState.SUCCEEDED)
        return JobState.SUCCEEDED.value

    async def _withdrawn(self, job: Job) -> str:
        if self._redecider is None:
            return ""
        return await self._redecider.redecide(job, self.worker_id)

    async def _withdraw(self, job: Job, why: str) -> str:
        # The active policy no longer routes it: skipped, saying so, never copied.
        await self._write(
            self.store.finish(
                job.job_id, self.worker_id, JobState.SKIPPED, error=why, error_code="withdrawn"
            )
        )
        self._metrics.finished(job.spec.destination_registry, JobState.SKIPPED)
        return "withdrawn"

    async def _superseded(self, job: Job, exc: TagSuperseded) -> str:
        # Nothing to retry and nothing wrong: a newer image owns the tag. Skipped, with why.
        await self._write(
            self.store.finish(
                job.job_id, self.worker_id, JobState.SKIPPED,
                error=exc.message, error_code=exc.code.value,
            )
        )  # fmt: skip
        self._metrics.finished(job.spec.destination_registry, JobState.SKIPPED)
        _log.info("job_superseded", job_id=job.job_id, digest=job.spec.digest,
                  destination=job.destination, current=exc.current)  # fmt: skip
        return "superseded"

    async def _failed(self, job: Job, exc: Exception) -> str:
        decision = self._retry.classify(exc, job.attempts)
        if isinstance(exc, RegistryUnavailable) and self._down(job.spec.destination_registry):
            decision = "park"  # the prober agrees it is down: wait for recovery, not a timer
        code = exc.code.value if isinstance(exc, SidecarError) else ErrorCode.INTERNAL.value
        message = str(exc) or type(exc).__name__
        if not isinstance(exc, SidecarError):
            _log.error("job_unexpected_error", job_id=job.job_id, exc_info=exc)
        if decision == "retry":
            retry_after = exc.retry_after if isinstance(exc, RegistryError) else None
            delay = self._retry.delay(job.attempts, retry_after)
            await self._write(
                self.store.retry_later(
                    job.job_id, self.worker_id, delay_s=delay, error=message, error_code=code
                )
            )
            self._metrics.retried(job.spec.destination_registry, code)
            return "retry"
        state = JobState.PARKED if decision == "park" else JobState.FAILED
        await self._write(
            self.store.finish(job.job_id, self.worker_id, state, error=message, error_code=code)
        )
        self._metrics.finished(job.spec.destination_registry, state)
        return state.value


def _final_progress(result: CopyResult) -> CopyProgress:
    blobs = result.blobs_copied + result.blobs_skipped + result.blobs_mounted
    return CopyProgress(result.bytes_moved, result.bytes_moved, blobs, blobs)
