"""Records of replication: a durable job, its states, and what a copy reports while and after it runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "DELETE_KINDS",
    "JOB_KINDS",
    "TERMINAL_STATES",
    "CopyPlan",
    "CopyProgress",
    "CopyResult",
    "DeferredWork",
    "InboxEvent",
    "Job",
    "JobSpec",
    "JobState",
    "ProgressCallback",
    "QueueStat",
]


class JobState(StrEnum):
    """Where a job is in its life; ``parked`` waits for its registry, ``skipped`` had nothing to do.

    A copy whose source tag moved on while it ran is ``skipped`` with error code ``superseded``:
    the newer image owns the destination tag (it was pushed by digest only).
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PARKED = "parked"
    SKIPPED = "skipped"


TERMINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.SKIPPED}
)


#: What a job does: copy an image to a destination, or delete it there (``delete``: a removal
#: the policy asked for, the source still present; ``propagate-delete``: the source tag or
#: digest was deleted, so the copy the sidecar made of it goes too).
JOB_KINDS: tuple[str, ...] = ("copy", "delete", "propagate-delete")
#: The kinds that delete (run by :class:`~sidecar.typing.Deleter`, never copied or planned).
DELETE_KINDS: frozenset[str] = frozenset({"delete", "propagate-delete"})


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What to copy: one image (by digest) from a source registry to one routed destination.

    Registries are inventory names. ``(kind, digest, destination, destination_repository, tag)``
    is the idempotency key: enqueueing the same spec twice returns the existing job.
    """

    source_registry: str
    source_repository: str
    digest: str
    destination_registry: str
    destination_repository: str
    tag: str = ""
    priority: int = 0
    decision_id: str = ""
    bundle_revision: str = ""
    dry_run: bool = False
    # "copy" (the default), "delete": remove ``digest`` at the destination tag (the
    # reconciler's removals and cleanups, sidecar.replicate.delete), or "propagate-delete": the
    # same once the source no longer holds it (a deletion propagated from a registry event).
    kind: str = "copy"
    # The route's rank (1 = first): jobs run by priority, then rank, then age.
    rank: int = 0
    # The decision request as JSON (sidecar.replicate.deferred.request_to_json), so a worker can
    # decide again before copying when the bundle revision changed since (sidecar.replicate.redecide).
    request: str = ""


@dataclass(frozen=True, slots=True)
class Job:
    """A persisted job: its spec, state and progress as last recorded by the store."""

    job_id: str
    spec: JobSpec
    state: JobState
    attempts: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    blobs_total: int = 0
    blobs_done: int = 0
    error: str = ""
    error_code: str = ""
    created_at: str = ""
    updated_at: str = ""
    not_before: str = ""
    # When the job's decision was made: enqueued, requeued by a new decision, or decided again
    # by a worker (empty for jobs stored before schema 7; ``created_at`` stands in).
    decided_at: str = ""
    result: CopyResult | None = None  # what the copy did, once it succeeded

    @property
    def source(self) -> str:
        """The source as ``REGISTRY/REPOSITORY@DIGEST``."""
        return f"{self.spec.source_registry}/{self.spec.source_repository}@{self.spec.digest}"

    @property
    def destination(self) -> str:
        """The destination as ``REGISTRY/REPOSITORY[:TAG]``."""
        tag = f":{self.spec.tag}" if self.spec.tag else ""
        return f"{self.spec.destination_registry}/{self.spec.destination_repository}{tag}"


@dataclass(frozen=True, slots=True)
class DeferredWork:
    """A destination a decision wanted but could not reach; replayed when the registry recovers.

    Keyed by (source registry, source repository, digest, deferred registry, tag): deferring
    the same image and tag to the same registry again refreshes the record instead of adding one.
    """

    source_registry: str
    source_repository: str
    digest: str
    registry: str
    tag: str = ""
    priority: int = 0
    decision_id: str = ""
    request: str = ""  # the DecideRequest to decide again, as JSON (sidecar.replicate.deferred)
    updated_at: str = ""


@dataclass(frozen=True, slots=True)
class CopyProgress:
    """A progress report during one copy (cumulative counts)."""

    bytes_total: int
    bytes_done: int
    blobs_total: int
    blobs_done: int


ProgressCallback = Callable[[CopyProgress], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class CopyPlan:
    """What a copy would do (dry run): manifests and blobs missing at the destination, and bytes."""

    manifests: int
    blobs_missing: int
    blobs_present: int
    bytes_to_copy: int


@dataclass(frozen=True, slots=True)
class CopyResult:
    """What a finished copy did: bytes and blobs moved, skipped and mounted, and requests made."""

    digest: str
    bytes_moved: int
    blobs_copied: int
    blobs_skipped: int
    blobs_mounted: int
    manifests_pushed: int
    referrers_copied: int
    requests: int


@dataclass(frozen=True, slots=True)
class InboxEvent:
    """A webhook event still in the inbox: ``pending`` (never tried), ``retrying`` (failed, or
    waiting for the policy engine, until ``next_attempt_at``) or ``dead`` (dead-lettered after too
    many failed attempts: kept with its last error, never retried automatically)."""

    event_id: str
    state: str
    attempts: int
    last_error: str
    received_at: str
    next_attempt_at: str
    dead_at: str

    def to_json(self) -> dict[str, object]:
        """Return the event as a JSON object."""
        return {
            "event_id": self.event_id,
            "state": self.state,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "received_at": self.received_at,
            "next_attempt_at": self.next_attempt_at,
            "dead_at": self.dead_at,
        }


@dataclass(frozen=True, slots=True)
class QueueStat:
    """Unfinished jobs bound for one destination registry in one state, read from the job store.

    ``oldest_wait_s`` is how long the longest-waiting *runnable* queued job has waited since it
    became runnable (enqueued, requeued, released or its retry delay over); 0 for other states
    and when nothing runnable waits. A job waiting out a retry delay is not counted as waiting:
    the alert on queue age is about workers not keeping up, not about backoff doing its job.
    """

    registry: str
    state: str
    jobs: int
    oldest_wait_s: float
