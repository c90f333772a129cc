"""Protocols for the seams between the sidecar's parts, so each side can be swapped or doubled in tests."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sidecar.model.decision import (
    BatchAnswer,
    DecideRequest,
    DecisionResult,
    EngineAnswer,
    FactProvenance,
    PolicyInput,
)
from sidecar.model.jobs import (
    CopyPlan,
    CopyProgress,
    CopyResult,
    DeferredWork,
    InboxEvent,
    Job,
    JobSpec,
    JobState,
    ProgressCallback,
    QueueStat,
)
from sidecar.records import DecisionRecord

__all__ = [
    "BatchEngine",
    "Copier",
    "DecisionStore",
    "Deferrals",
    "Deleter",
    "Enricher",
    "EventInbox",
    "HealthLedger",
    "InboxAndPulls",
    "JobQueue",
    "JobStore",
    "KeyEncryptionKey",
    "Leases",
    "ListedTag",
    "Placements",
    "PolicyEngine",
    "PullCounts",
    "QueueAndDeferrals",
    "QueueStats",
    "ReconcileBaselines",
    "Redecider",
    "RegistryCredentialSource",
    "RegistryCredentials",
    "RegistryHealthView",
    "RequestSealer",
    "StatePruning",
    "TagLister",
]


class PolicyEngine(Protocol):
    """Evaluates a policy input and returns the raw decision document with its bundle revision."""

    async def evaluate(self, policy_input: Mapping[str, Any]) -> EngineAnswer:
        """Evaluate ``data.replication.decision``; raise PolicyUnavailable/PolicyError on failure."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class BatchEngine(Protocol):
    """Evaluates many policy inputs in one query, and other documents of the bundle (OPA)."""

    async def evaluate_batch(
        self, inputs: Sequence[Mapping[str, Any]], *, timeout_s: float | None = None
    ) -> BatchAnswer:
        """Return the decision of every input, in order; PolicyUnavailable/PolicyError."""
        ...

    async def query(
        self, path: str, policy_input: Mapping[str, Any], *, timeout_s: float | None = None
    ) -> tuple[Any, str, int]:
        """Evaluate ``data.<path>``: (result, bundle revision, eval ns); PolicyError if undefined."""
        ...


class Enricher(Protocol):
    """Turns a validated request into the complete policy input (DESIGN §3.1)."""

    async def enrich(self, request: DecideRequest) -> PolicyInput:
        """Return the policy input for ``request``; never raises for a missing fact."""
        ...

    async def enrich_traced(self, request: DecideRequest) -> tuple[PolicyInput, FactProvenance]:
        """Return the policy input and where each of its facts came from (Explain shows it)."""
        ...


class DecisionStore(Protocol):
    """Keeps decision records so ``Explain`` can return them by id."""

    def put(self, result: DecisionResult) -> None:
        """Store a decision record."""
        ...

    def get(self, decision_id: str) -> DecisionRecord | None:
        """Return the (masked) record for ``decision_id``, or None when unknown or expired."""
        ...

    def hides_any_of(self, doc: Mapping[str, Any]) -> bool:
        """Whether the record mask would hide anything of ``doc`` (a part of a policy input)."""
        ...


class KeyEncryptionKey(Protocol):
    """Wraps and unwraps the AES-GCM data keys of sensitive policy data (AWS KMS or a key file)."""

    def descriptor(self) -> dict[str, str]:
        """Return what identifies this key in an envelope header (never secret)."""
        ...

    def new_data_key(self) -> tuple[bytes, bytes]:
        """Return a fresh 256-bit data key and the same key wrapped by this key."""
        ...

    def unwrap(self, wrapped: bytes, descriptor: Mapping[str, str]) -> bytes:
        """Return the data key; SensitiveDataError for a wrong key or a tampered wrapped key."""
        ...


class RequestSealer(Protocol):
    """Encrypts a request kept at rest (a deferral stating masked facts) and decrypts it again."""

    async def seal(self, text: str) -> str:
        """Return the request JSON ``text`` in its sealed, storable form."""
        ...

    async def open(self, stored: str) -> str:
        """Return the request JSON of ``stored`` (a plain one unchanged)."""
        ...


class RegistryCredentials(Protocol):
    """A registry's username and password, wherever they are kept (config, a cloud, a secret manager)."""

    async def get(self) -> tuple[str, str]:
        """Return ``(username, password)``; raise RegistryError when they cannot be had."""
        ...

    def refused(self, credentials: tuple[str, str]) -> bool:
        """The registry answered 401 to ``credentials``: forget them if still held.

        True when asking :meth:`get` again can yield other credentials, so the refused request is
        worth one more try; False for fixed ones (nothing to refresh).
        """
        ...


RegistryCredentialSource = Callable[[str], "RegistryCredentials | None"]
"""Registry name → its credentials from outside the config (a secret manager), or None."""


class Redecider(Protocol):
    """Decides a queued job again before it runs; returns why it must not run ("" = run it)."""

    async def redecide(self, job: Job, worker_id: str) -> str:
        """Return "" to run ``job``, else the reason it is withdrawn (the active policy's word)."""
        ...


class Copier(Protocol):
    """Copies one image (by digest, with its index children and referrers) to one destination."""

    async def plan(self, spec: JobSpec) -> CopyPlan:
        """Return what :meth:`copy` would move (dry run); reads only."""
        ...

    async def copy(self, spec: JobSpec, progress: ProgressCallback | None = None) -> CopyResult:
        """Copy ``spec``; blobs first, manifests last; raise RegistryError on failure."""
        ...


class Deleter(Protocol):
    """Runs a delete job: removes one image (by digest) from one destination tag, re-checked."""

    async def delete(self, spec: JobSpec) -> CopyResult:
        """Delete within the rails; raise RegistryError (a refusal is permanent) on failure."""
        ...


class JobQueue(Protocol):
    """Durable replication jobs: queued by the use cases, leased and finished by the workers."""

    async def enqueue(self, specs: Sequence[JobSpec]) -> list[Job]:
        """Persist jobs (idempotent by digest and destination) and return them, existing or new."""
        ...

    async def requeue(self, specs: Sequence[JobSpec]) -> list[Job]:
        """Like ``enqueue``, but also requeue succeeded and parked jobs (the copy is missing)."""
        ...

    async def get(self, job_id: str) -> Job:
        """Return one job; raise NotFound when unknown."""
        ...

    async def list_jobs(self, *, state: JobState | None = None, limit: int = 100) -> list[Job]:
        """Return jobs, newest first, optionally only those in ``state``."""
        ...

    async def claim(
        self,
        worker_id: str,
        *,
        lease_s: float,
        limit: int = 1,
        skip_registries: Collection[str] = (),
    ) -> list[Job]:
        """Lease up to ``limit`` unleased runnable jobs by priority, none bound for ``skip_registries``."""
        ...

    async def heartbeat(self, job_id: str, worker_id: str, *, lease_s: float) -> bool:
        """Extend a lease; return False when the lease was lost (another worker took the job)."""
        ...

    async def progress(self, job_id: str, worker_id: str, progress: CopyProgress) -> None:
        """Record progress of a running job."""
        ...

    async def finish(
        self,
        job_id: str,
        worker_id: str,
        state: JobState,
        *,
        error: str = "",
        error_code: str = "",
        result: CopyResult | None = None,
    ) -> None:
        """Record a terminal (or parked) state and release the lease."""
        ...

    async def redecided(
        self, job_id: str, worker_id: str, *, decision_id: str, bundle_revision: str
    ) -> None:
        """Record that a running job was decided again (on another bundle revision)."""
        ...

    async def retry_later(
        self, job_id: str, worker_id: str, *, delay_s: float, error: str, error_code: str
    ) -> None:
        """Put a job back in the queue, runnable again after ``delay_s``."""
        ...

    async def park(self, registry: str, *, error: str) -> int:
        """Park every queued job for ``registry`` (it is unavailable); return how many."""
        ...

    async def unpark(self, registry: str) -> int:
        """Requeue every parked job for ``registry``; return how many."""
        ...

    async def requeue_parked(
        self, registries: Collection[str], *, parked_for_s: float = 0.0
    ) -> dict[str, int]:
        """Requeue parked jobs whose source and destination are in ``registries``; per registry."""
        ...


class Deferrals(Protocol):
    """Destinations (or whole requests) deferred until a registry or the policy is back."""

    async def defer(self, works: Sequence[DeferredWork]) -> None:
        """Record deferred destinations durably (refreshing ones already pending)."""
        ...

    async def pending_deferrals(
        self, registries: Collection[str], *, limit: int = 1000
    ) -> list[DeferredWork]:
        """Return unresolved deferred work for ``registries``, highest priority first."""
        ...

    async def resolve_deferral(self, work: DeferredWork) -> bool:
        """Mark ``work`` done unless it was deferred again since it was read."""
        ...


class Placements(Protocol):
    """Where real copies of an image landed (the pull resolver's extra candidates)."""

    async def placements(self, digest: str) -> list[tuple[str, str]]:
        """Return (registry, repository) pairs a real copy of ``digest`` succeeded to."""
        ...

    async def copies_made(
        self, source_registry: str, source_repository: str, *, tag: str = "", digest: str = ""
    ) -> list[tuple[str, str, str, str]]:
        """Return (digest, destination registry, repository, tag) of the real copies the
        sidecar made from that source repository at ``tag`` and/or ``digest`` ("" = any)."""
        ...


class HealthLedger(Protocol):
    """Where probed registry health is remembered across restarts."""

    async def health_states(self) -> dict[str, bool]:
        """Return the remembered health of every registry ever reached."""
        ...

    async def record_health(self, registry: str, healthy: bool) -> None:
        """Remember ``registry``'s probed health."""
        ...


class EventInbox(Protocol):
    """Registry webhook events, recorded before they are acknowledged and processed in order."""

    async def record_event(self, event_id: str, payload: bytes) -> bool:
        """Persist a webhook event; return False when the id was already recorded (duplicate)."""
        ...

    async def pending_events(
        self, limit: int = 100, *, due: datetime | None = None
    ) -> list[tuple[str, bytes]]:
        """Return events due for an attempt at ``due`` (default now; not dead), oldest first."""
        ...

    async def claim_events(
        self,
        owner: str,
        *,
        lease_s: float,
        limit: int = 100,
        due: datetime | None = None,
    ) -> list[tuple[str, bytes]]:
        """Lease events due at ``due`` to ``owner`` for ``lease_s`` (none leased elsewhere)."""
        ...

    async def release_events(self, owner: str, event_ids: Collection[str] | None = None) -> int:
        """Give back the leases ``owner`` holds on ``event_ids`` (default all); return how many."""
        ...

    async def fail_event(
        self,
        event_id: str,
        *,
        error: str,
        retry_in_s: float,
        max_attempts: int,
        count: bool = True,
    ) -> bool:
        """Record a failed attempt (retry later, with backoff); True when it was dead-lettered."""
        ...

    async def inbox_events(self, limit: int = 100) -> list[InboxEvent]:
        """Return events not completed (pending, retrying or dead-lettered), oldest first."""
        ...

    async def inbox_counts(self) -> dict[str, int]:
        """Return how many events are ``pending``, ``retrying`` and ``dead``."""
        ...

    async def complete_event(self, event_id: str) -> None:
        """Mark an event processed (its jobs or pull counts are persisted)."""
        ...


class PullCounts(Protocol):
    """Pulls served per repository and region (counted from webhooks, read as ``input.access``)."""

    async def add_pulls(
        self, repository: str, region: str, count: int = 1, *, at: datetime | None = None
    ) -> None:
        """Add pulls of ``repository`` served in ``region`` at ``at`` (default now)."""
        ...

    async def pulls(
        self, repository: str, *, window_s: float = ..., now: datetime | None = None
    ) -> dict[str, int]:
        """Return pulls of ``repository`` by region within the last ``window_s`` seconds."""
        ...


@dataclass(frozen=True, slots=True)
class ListedTag:
    """One tag a registry's own API listed with its manifest (the reconciler's observation)."""

    tag: str
    digest: str
    media_type: str = ""
    size_bytes: int = 0


class TagLister(Protocol):
    """Lists a registry through its own API (ECR) instead of the OCI catalog and a HEAD per tag."""

    async def repositories(self, *, limit: int) -> list[str]:
        """Return repository names: at most ``limit + 1`` (more than ``limit``: over the bound)."""
        ...

    async def tags(self, repository: str, *, limit: int) -> list[ListedTag]:
        """Return the repository's tags with their digests: at most ``limit + 1``."""
        ...


class Leases(Protocol):
    """Named leases in the store: one holder at a time across replicas (the scheduled reconcile)."""

    async def acquire_lease(self, name: str, owner: str, *, ttl_s: float) -> bool:
        """Take (or renew) ``name`` for ``ttl_s``; False while another owner holds it unexpired."""
        ...

    async def release_lease(self, name: str, owner: str) -> None:
        """Give ``name`` up if ``owner`` holds it."""
        ...

    async def lease_last_run(self, name: str) -> datetime | None:
        """When the run guarded by ``name`` last completed (its scheduled time), or None."""
        ...

    async def record_lease_run(self, name: str, owner: str, at: datetime) -> None:
        """Record that ``owner``, holding ``name``, completed the run scheduled at ``at``."""
        ...


class ReconcileBaselines(Protocol):
    """Each bundle revision's reconcile outcomes, shared by replicas and kept across restarts."""

    async def save_baseline(self, revision: str, body: str) -> None:
        """Store ``body`` (the reconciler's encoding) as ``revision``'s outcomes."""
        ...

    async def load_baseline(self, revision: str) -> str | None:
        """Return the outcomes stored for ``revision``, or None."""
        ...


class StatePruning(Protocol):
    """Deletes finished state past its retention (``policy.replication.retention``)."""

    async def prune(
        self,
        now: datetime | None = None,
        *,
        jobs_days: float = 0.0,
        events_days: float = 0.0,
        dead_events_days: float = 0.0,
        deferrals_days: float = 0.0,
        pull_window_s: float = 0.0,
    ) -> dict[str, int]:
        """Delete terminal jobs, completed and dead-lettered events and resolved deferrals older
        than their retention (0 days keeps that kind), and pull counts older than the pull
        window (0 keeps them); return how many per kind."""
        ...


class QueueStats(Protocol):
    """What the queue gauges read: unfinished jobs per destination and state, in one query."""

    async def queue_stats(self) -> list[QueueStat]:
        """Return a QueueStat for every (destination, state) with unfinished jobs."""
        ...


class QueueAndDeferrals(JobQueue, Deferrals, Protocol):
    """Jobs plus deferred work: replication defers and enqueues, recovery replays and requeues."""


class InboxAndPulls(EventInbox, PullCounts, Protocol):
    """The webhook inbox plus pull counts: processing a pull event adds to the counts."""


class JobStore(
    QueueAndDeferrals,
    Placements,
    HealthLedger,
    EventInbox,
    PullCounts,
    StatePruning,
    Leases,
    QueueStats,
    ReconcileBaselines,
    Protocol,
):
    """Every role of the durable store (SQLite or PostgreSQL), for the composition root that
    opens it, hands each part its role and closes it."""

    async def close(self) -> None:
        """Close connections."""
        ...


class RegistryHealthView(Protocol):
    """What the worker pool asks the registry prober before and after a copy."""

    def healthy(self, registry: str) -> bool:
        """Whether ``registry`` is up (a copy to it is worth attempting)."""
        ...

    def blocked(self) -> frozenset[str]:
        """Registries whose jobs must not be claimed now (recovery is queueing their work)."""
        ...
