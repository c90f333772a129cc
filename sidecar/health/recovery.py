"""Recovery: park work for a registry that goes down, and catch up when it comes back.

When a registry turns unhealthy its queued jobs are parked. When it turns healthy again — while
the prober holds it, so the pool claims nothing for it yet — recovery:

1. requeues parked jobs whose source and destination are both healthy;
2. replays its deferred destinations: each image is decided again (event ``reconcile``) with
   today's health and its jobs enqueued, highest priority first;
3. reconciles, after an outage: images of recently succeeded jobs are decided again, and every
   route to the recovered registry without a queued job is checked with a HEAD; a missing image
   is queued again (this covers pushes whose deferral was never recorded, and a registry
   restored empty);

then releases the registry, so the pool runs its work by priority across everything queued. A
periodic sweep repeats 1 and 2 for healthy registries, for work parked or deferred in a race
with a transition or while no prober was watching (e.g. a partition the probe did not see).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta

from sidecar.config import HealthSettings
from sidecar.decide import DecisionService
from sidecar.errors import InvalidArgument
from sidecar.health.breaker import HealthState, Transition
from sidecar.health.monitor import HealthMonitor
from sidecar.model.decision import DecideRequest, ImageRef
from sidecar.model.jobs import JobSpec, JobState
from sidecar.oci import RegistryClients
from sidecar.replicate.service import ReplicationService, job_specs
from sidecar.tasks import cancel_and_wait
from sidecar.telemetry import get_logger
from sidecar.typing import QueueAndDeferrals

__all__ = ["Recovery"]

_log = get_logger("sidecar.health.recovery")
_BATCH = 500  # deferred records read per query
_CHECKS = 4  # reconcile decisions + HEADs in flight at once
_QUEUED_SCAN = 10_000  # queued jobs read to skip already-queued destinations


class Recovery:
    """Parks, replays and reconciles work as registries go down and come back."""

    def __init__(
        self,
        *,
        monitor: HealthMonitor,
        store: QueueAndDeferrals,
        replication: ReplicationService,
        decisions: DecisionService,
        clients: RegistryClients,
        wake: Callable[[], None],
        settings: HealthSettings,
    ) -> None:
        """Wire recovery to the prober (call :meth:`attach` to subscribe)."""
        self._monitor, self._store = monitor, store
        self._replication, self._decisions = replication, decisions
        self._clients, self._wake, self._settings = clients, wake, settings
        self._metrics = monitor.metrics
        # One recovery at a time: two overlapping ones would interleave their priorities.
        self._lock = asyncio.Lock()
        self._sweeper: asyncio.Task[None] | None = None

    def attach(self) -> None:
        """Subscribe to the prober's transitions."""
        self._monitor.subscribe(self.on_transitions)

    async def start(self) -> None:
        """Start the periodic sweep (its first pass runs at once)."""
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="recovery-sweep")

    async def stop(self) -> None:
        """Stop the sweep; idempotent."""
        task, self._sweeper = self._sweeper, None
        await cancel_and_wait(task)

    def _healthy(self) -> frozenset[str]:
        # Only registries probed healthy: one never reached might be down, retrying it is a guess.
        return frozenset(
            name for name, state in self._monitor.states().items() if state is HealthState.HEALTHY
        )

    async def on_transitions(self, transitions: Sequence[Transition]) -> None:
        """Park work of registries that went down; recover the ones that came back."""
        for t in transitions:
            if t.state is HealthState.UNHEALTHY:
                error = f"registry {t.registry} is unavailable (health probe: {t.error})"
                try:
                    parked = await self._store.park(t.registry, error=error)
                except Exception:
                    # Not fatal: the pool parks each of its jobs itself when it claims one.
                    _log.exception("registry_work_not_parked", registry=t.registry)
                    continue
                _log.warning("registry_work_parked", registry=t.registry, parked=parked)
        up = [t.registry for t in transitions if t.state is HealthState.HEALTHY]
        if up:
            await self.recover(up, reconcile=[t.registry for t in transitions if t.recovered])

    async def recover(
        self, registries: Collection[str], *, reconcile: Collection[str] = ()
    ) -> None:
        """Queue the deferred, missing and parked work of ``registries``, then release them."""
        try:
            async with self._lock:
                requeued = await self._store.requeue_parked(self._healthy())
                replayed = await self._replay(registries)
                reconciled = await self._reconcile(reconcile) if reconcile else {}
            for kind, counts in (
                ("deferred", replayed), ("reconciled", reconciled), ("requeued", requeued)
            ):  # fmt: skip
                for registry, n in counts.items():
                    self._metrics.recovered.labels(registry, kind).inc(n)
            # First contact at startup usually finds nothing to do: not worth an info line.
            log = _log.info if replayed or reconciled or requeued or reconcile else _log.debug
            log(
                "registry_recovered",
                registries=sorted(registries),
                requeued=requeued,
                deferred=replayed,
                reconciled=reconciled,
            )
        finally:
            self._monitor.release(registries)
            self._wake()

    async def _replay(self, registries: Collection[str]) -> dict[str, int]:
        """Decide deferred images again, highest priority first; return replays per registry."""
        counts: dict[str, int] = {}
        skipped: set[tuple[str, str, str, str, str]] = set()
        while True:
            works = await self._store.pending_deferrals(registries, limit=_BATCH + len(skipped))
            works = [
                w for w in works
                if (w.source_registry, w.source_repository, w.digest, w.registry, w.tag)
                not in skipped
            ]  # fmt: skip
            if not works:
                return counts
            for work in works:
                key = (
                    work.source_registry, work.source_repository, work.digest, work.registry,
                    work.tag,
                )  # fmt: skip
                if not self._monitor.healthy(work.source_registry):
                    # Facts read from a down source would be missing: wait for it instead.
                    skipped.add(key)
                    continue
                try:
                    # A degraded answer does not record it again: this very record stays (below).
                    outcome = await self._replication.replay(work.request, event="reconcile")
                except (KeyError, TypeError, ValueError, InvalidArgument) as exc:
                    # Unreadable, or no longer valid: never will be; dropped, loudly.
                    _log.error(
                        "deferred_record_dropped", image=f"{key[0]}/{key[1]}@{key[2]}",
                        registry=work.registry, error=f"{type(exc).__name__}: {exc}",
                    )  # fmt: skip
                    await self._store.resolve_deferral(work)
                    continue
                except Exception as exc:  # one image must not stop the others' recovery
                    _log.warning(
                        "deferred_replay_failed", image=f"{key[0]}/{key[1]}@{key[2]}",
                        registry=work.registry, error=f"{type(exc).__name__}: {exc}",
                    )  # fmt: skip
                    skipped.add(key)
                    continue
                if outcome.result.degraded:
                    # A fail-mode answer (OPA down) is no verdict on this image: keep the record.
                    skipped.add(key)
                    continue
                still = {d.registry for d in outcome.result.decision.deferred}
                if work.registry in still or not await self._store.resolve_deferral(work):
                    skipped.add(key)  # deferred again meanwhile: the next recovery takes it
                    continue
                counts[work.registry] = counts.get(work.registry, 0) + 1

    async def _reconcile(self, registries: Collection[str]) -> dict[str, int]:
        """Queue again every recent image a route wants in ``registries`` but they lack."""
        settings = self._settings
        if settings.reconcile_limit == 0:
            return {}
        cutoff = datetime.now(UTC) - timedelta(seconds=settings.reconcile_window_s)
        recent = await self._store.list_jobs(
            state=JobState.SUCCEEDED, limit=settings.reconcile_limit
        )
        # Work already queued for a destination (just requeued or replayed) needs no HEAD.
        queued = {
            (j.spec.digest, j.spec.destination_registry, j.spec.destination_repository)
            for j in await self._store.list_jobs(state=JobState.QUEUED, limit=_QUEUED_SCAN)
        }
        images: dict[tuple[str, str, str], str] = {}
        for job in recent:
            spec = job.spec
            if not spec.dry_run and _parse(job.updated_at) >= cutoff:
                images.setdefault(
                    (spec.source_registry, spec.source_repository, spec.digest), spec.tag
                )
        gate = asyncio.Semaphore(_CHECKS)
        missing: list[JobSpec] = []

        async def check(source: str, repository: str, digest: str, tag: str) -> None:
            if not self._monitor.healthy(source):
                return
            image = ImageRef(source, repository, tag, digest)
            async with gate:
                try:
                    result = await self._decisions.decide(DecideRequest(image, event="reconcile"))
                    if result.degraded:
                        return  # OPA is down: no intent to compare against
                    for spec in job_specs(result, image):
                        key = (digest, spec.destination_registry, spec.destination_repository)
                        if spec.destination_registry not in registries or key in queued:
                            continue
                        client = self._clients.get(spec.destination_registry)
                        if await client.head_manifest(spec.destination_repository, digest) is None:
                            missing.append(spec)
                except Exception as exc:  # checked again by the next recovery
                    _log.warning(
                        "reconcile_check_failed", image=str(image),
                        error=f"{type(exc).__name__}: {exc}",
                    )  # fmt: skip

        await asyncio.gather(*(check(*key, tag) for key, tag in images.items()))
        # Highest priority first, so the store's insertion order matches the claim order too.
        missing.sort(key=lambda s: (-s.priority, s.destination_registry, s.digest))
        if missing:
            await self._store.requeue(missing)
        counts: dict[str, int] = {}
        for spec in missing:
            counts[spec.destination_registry] = counts.get(spec.destination_registry, 0) + 1
        return counts

    async def sweep(self) -> None:
        """Replay deferred work and requeue long-parked jobs of healthy, unheld registries."""
        healthy = self._healthy() - self._monitor.blocked()
        if not healthy:
            return
        async with self._lock:
            replayed = await self._replay(healthy)
            requeued = await self._store.requeue_parked(
                healthy, parked_for_s=self._settings.sweep_interval_s
            )
        if replayed or requeued:
            for kind, counts in (("deferred", replayed), ("requeued", requeued)):
                for registry, n in counts.items():
                    self._metrics.recovered.labels(registry, kind).inc(n)
            _log.info("recovery_sweep", requeued=requeued, deferred=replayed)
            self._wake()

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                _log.exception("recovery_sweep_failed")
            await asyncio.sleep(self._settings.sweep_interval_s)


def _parse(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
