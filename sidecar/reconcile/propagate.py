"""Propagate a deletion at a source to the copies this sidecar made of it (``propagate_deletes``).

A registry event says a tag (or, with no tag, a digest) was deleted at a source. The job store
knows every real copy the sidecar made from that source repository (succeeded ``copy`` jobs,
not dry runs), so only those are candidates: a copy someone else made is never touched. Each
becomes a ``propagate-delete`` job run by the worker pool's deleter (:mod:`sidecar.replicate.
delete`), which checks again when it runs that the source no longer holds the digest at that
tag, that the destination tag still holds the digest the sidecar copied (else someone else's
write), and never deletes from a source registry.

Modes: ``on`` queues the jobs; ``dry-run`` queues them as dry runs (listed by ``policy-sidecar
jobs`` and ListJobs as skipped delete jobs, never executed); ``off`` plans nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter

from sidecar.model.decision import ImageRef
from sidecar.model.jobs import JobSpec
from sidecar.telemetry import METRIC_PREFIX, get_logger
from sidecar.typing import JobQueue, Placements

__all__ = ["DeletePropagator"]

_log = get_logger("sidecar.reconcile.propagate")


class _Store(JobQueue, Placements, Protocol):
    """The job store roles a propagation reads (copies made) and writes (delete jobs)."""


class DeletePropagator:
    """``await propagator(image)``: plan removal of the copies made of a deleted source image."""

    def __init__(
        self,
        store: _Store,
        *,
        mode: str,
        sources: Collection[str] = (),
        wake: Callable[[], None] = lambda: None,
        metrics_registry: CollectorRegistry | None = None,
    ) -> None:
        """``mode`` is ``on``, ``dry-run`` or ``off``; ``sources`` are never deleted from."""
        self._store = store
        self._mode = mode
        self._sources = frozenset(sources)
        self._wake = wake
        self._planned = Counter(
            f"{METRIC_PREFIX}propagated_deletes",
            "Removals of the sidecar's own copies planned because the source deleted the image, "
            "by destination registry and mode (on, dry-run).",
            ["registry", "mode"],
            registry=metrics_registry or CollectorRegistry(),
        )

    async def __call__(self, image: ImageRef) -> int:
        """Queue the delete jobs for ``image`` (tag, or digest when no tag); return how many."""
        if self._mode == "off" or not (image.tag or image.digest):
            return 0
        copies = await self._store.copies_made(
            image.registry, image.repository, tag=image.tag, digest=image.digest
        )
        specs = [
            JobSpec(
                source_registry=image.registry,
                source_repository=image.repository,
                digest=digest,
                destination_registry=registry,
                destination_repository=repository,
                tag=tag,
                dry_run=self._mode == "dry-run",
                kind="propagate-delete",
            )
            for digest, registry, repository, tag in copies
            if registry not in self._sources and registry != image.registry and tag
        ]
        if not specs:
            return 0
        # requeue: a copy made again after an earlier propagated delete is deleted again; a
        # replay finds the tag already absent and deletes nothing (the job succeeds).
        jobs = await self._store.requeue(specs)
        self._wake()
        for job in jobs:
            self._planned.labels(registry=job.spec.destination_registry, mode=self._mode).inc()
            _log.info(
                "source deletion propagated" if self._mode == "on" else "source deletion (dry run)",
                source=str(image),
                target=job.destination,
                digest=job.spec.digest,
                job_id=job.job_id,
                dry_run=job.spec.dry_run,
            )
        return len(jobs)
