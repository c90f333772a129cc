"""Replicate: decide where an image goes, then persist one job per route for the worker pool.

Nothing here imports gRPC; the servicer and the webhook processor both call
:class:`ReplicationService`, so a push event and a ``Replicate`` call take the same path.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.context import Context

from sidecar.decide import DecisionService
from sidecar.errors import InvalidArgument, SensitiveDataError
from sidecar.model.decision import DecideRequest, DecisionResult, ImageRef
from sidecar.model.jobs import TERMINAL_STATES, DeferredWork, Job, JobSpec, JobState
from sidecar.replicate.deferred import (
    deferred_work,
    policy_deferral,
    request_from_json,
    request_to_json,
)
from sidecar.sensitive import is_sealed
from sidecar.telemetry import get_logger
from sidecar.typing import QueueAndDeferrals, RequestSealer

__all__ = ["ReplicationOutcome", "ReplicationService", "job_specs"]

_log = get_logger("sidecar.replicate")
_tracer = trace.get_tracer("sidecar.replicate")

DigestResolver = Callable[[ImageRef], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class ReplicationOutcome:
    """The decision and the jobs it produced (one per route, in rank order)."""

    result: DecisionResult
    jobs: tuple[Job, ...]


def job_specs(
    result: DecisionResult,
    image: ImageRef,
    *,
    dry_run: bool = False,
    request: DecideRequest | None = None,
) -> list[JobSpec]:
    """Return one job spec per route of an allowing decision, rank 1 first; none when denied.

    With ``request``, each job keeps it, so a worker can decide it again on a newer revision.
    """
    decision = result.decision
    if not decision.allow:
        return []
    stored = request_to_json(request) if request is not None else ""
    return [
        JobSpec(
            source_registry=image.registry,
            source_repository=image.repository,
            digest=image.digest,
            destination_registry=route.registry,
            destination_repository=route.repository,
            tag=route.tag,
            priority=decision.priority,
            decision_id=result.decision_id,
            bundle_revision=result.bundle_revision,
            dry_run=dry_run,
            rank=route.rank,
            request=stored,
        )
        for route in sorted(decision.routes, key=lambda r: (r.rank, r.registry))
    ]


class ReplicationService:
    """Turns requests into durable jobs and answers job queries; the worker pool does the copying."""

    def __init__(
        self,
        *,
        decisions: DecisionService,
        store: QueueAndDeferrals,
        resolve_digest: DigestResolver,
        wake: Callable[[], None] = lambda: None,
        watch_interval_s: float = 0.2,
        sealer: RequestSealer | None = None,
    ) -> None:
        """``sealer`` encrypts deferred requests that state masked facts (the sensitive-data key);
        without one they are stored as stated (the app warns at startup)."""
        self._decisions = decisions
        self._sealer = sealer
        self._store = store
        self._resolve_digest = resolve_digest
        self._wake = wake
        self._watch_interval_s = watch_interval_s

    async def replicate(
        self,
        request: DecideRequest,
        *,
        dry_run: bool = False,
        parent: Context | None = None,
        await_policy: bool = True,
    ) -> ReplicationOutcome:
        """Decide for ``request`` and persist its jobs before returning (durable before acknowledged).

        A fail-mode answer (OPA unreachable) also records the request, with ``await_policy``, so
        that :class:`~sidecar.replicate.backlog.PolicyBacklog` decides it again once OPA answers.
        """
        image = request.image
        if not image.digest:
            # Validated before the registry is asked: an unknown registry or a malformed
            # repository/tag must be INVALID_ARGUMENT, never a request built from it.
            self._decisions.validate(request)
            if not image.tag:
                raise InvalidArgument("image.tag", "a tag or a digest is required to replicate")
            # Jobs are keyed by digest: a tag can move while the copy runs, a digest cannot.
            image = dataclasses.replace(image, digest=await self._resolve_digest(image))
            request = dataclasses.replace(request, image=image)
        result = await self._decisions.decide(request, parent=parent)
        # A request stating masked facts (a customer id...) is not kept on its jobs: a secret never
        # lands in the store. Those jobs run on this decision, not re-decided on a new revision.
        secret = self._decisions.holds_secrets(request)
        specs = job_specs(result, image, dry_run=dry_run, request=None if secret else request)
        # Deferred destinations are kept, durably, to be decided again when they recover.
        deferred = [] if dry_run else deferred_work(result, request)
        if await_policy and not dry_run:
            deferred += policy_deferral(result, request)
        if deferred and secret:
            # A deferral must keep its request to be decided again: sealed, not in the clear.
            deferred = await self._sealed(deferred)
        with _tracer.start_as_current_span("replicate.enqueue") as span:
            span.set_attribute("policy.decision_id", result.decision_id)
            span.set_attribute("replicate.jobs", len(specs))
            span.set_attribute("replicate.deferred", len(deferred))
            span.set_attribute("replicate.dry_run", dry_run)
            if deferred:
                await self._store.defer(deferred)
            jobs = await self._store.enqueue(specs) if specs else []
        if jobs:
            self._wake()
        _log.info(
            "replication enqueued",
            decision_id=result.decision_id,
            bundle_revision=result.bundle_revision,
            image=str(image),
            jobs=[j.job_id for j in jobs],
            deferred=[d.registry for d in deferred],
            dry_run=dry_run,
        )
        return ReplicationOutcome(result, tuple(jobs))

    async def get(self, job_id: str) -> Job:
        """Return one job; raises NotFound."""
        return await self._store.get(job_id)

    async def replay(self, stored: str, *, event: str | None = None) -> ReplicationOutcome:
        """Decide a deferred request again (``stored`` as a deferral keeps it) and enqueue its jobs.

        A fail-mode answer does not record it again: the caller keeps its own record. Raises
        KeyError/TypeError/ValueError for a record that will never parse, SensitiveDataError for
        a sealed one this sidecar cannot open (no key, another key, tampered).
        """
        if is_sealed(stored):
            if self._sealer is None:
                raise SensitiveDataError(
                    "a deferred request",
                    "sealed with the sensitive-data key, and policy.sensitive_data has no key",
                )
            stored = await self._sealer.open(stored)
        return await self.replicate(request_from_json(stored, event=event), await_policy=False)

    async def _sealed(self, works: list[DeferredWork]) -> list[DeferredWork]:
        """Return ``works`` with their (shared) request sealed, when a key is configured."""
        if self._sealer is None:
            return works
        sealed = await self._sealer.seal(works[0].request)
        return [dataclasses.replace(w, request=sealed) for w in works]

    async def list_jobs(self, *, state: JobState | None = None, limit: int = 100) -> list[Job]:
        """Return jobs, newest first."""
        return await self._store.list_jobs(state=state, limit=limit)

    async def watch(self, job_id: str) -> AsyncIterator[Job]:
        """Yield the job now and whenever its state or progress changes, until it is terminal."""
        last: tuple[object, ...] | None = None
        while True:
            job = await self._store.get(job_id)
            key = (job.state, job.bytes_done, job.blobs_done, job.bytes_total, job.error)
            if key != last:
                last = key
                yield job
            if job.state in TERMINAL_STATES:
                return
            await asyncio.sleep(self._watch_interval_s)
