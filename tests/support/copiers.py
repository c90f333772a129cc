"""A scripted Copier double: the worker pool's edge to registries, which the pool does not own.

Each digest can be given a list of per-attempt outcomes (an exception to raise, or None for
success); the double records every call with monotonic timestamps and the highest number of
copies it saw running at once per destination registry.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sidecar.model.jobs import CopyPlan, CopyProgress, CopyResult, JobSpec, ProgressCallback

__all__ = ["CopyCall", "ScriptedCopier"]


@dataclass(frozen=True)
class CopyCall:
    """One call the pool made: which image, where to, and when it started."""

    digest: str
    registry: str
    started: float
    kind: str = "copy"


class ScriptedCopier:
    """Copies nothing; sleeps ``delay_s`` per copy and follows the per-digest script."""

    def __init__(
        self,
        *,
        delay_s: float = 0.0,
        script: Mapping[str, Sequence[BaseException | None]] | None = None,
        size: int = 4096,
    ) -> None:
        self.delay_s = delay_s
        self.size = size
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.calls: list[CopyCall] = []
        self.running: Counter[str] = Counter()
        self.max_running: Counter[str] = Counter()
        self.started = asyncio.Event()

    def copies_of(self, digest: str) -> list[CopyCall]:
        """Return the copy calls made for ``digest``, in order."""
        return [c for c in self.calls if c.digest == digest and c.kind == "copy"]

    async def plan(self, spec: JobSpec) -> CopyPlan:
        """Return a fixed plan: one manifest, two blobs missing, one present."""
        self.calls.append(
            CopyCall(spec.digest, spec.destination_registry, time.monotonic(), "plan")
        )
        return CopyPlan(manifests=1, blobs_missing=2, blobs_present=1, bytes_to_copy=self.size)

    async def copy(self, spec: JobSpec, progress: ProgressCallback | None = None) -> CopyResult:
        """Sleep, report progress, then fail or succeed as scripted for this attempt."""
        registry = spec.destination_registry
        self.calls.append(CopyCall(spec.digest, registry, time.monotonic()))
        self.running[registry] += 1
        self.started.set()
        self.max_running[registry] = max(self.max_running[registry], self.running[registry])
        try:
            if progress is not None:
                await progress(CopyProgress(self.size, 0, 2, 0))
            await asyncio.sleep(self.delay_s)
            outcomes = self.script.get(spec.digest)
            failure = outcomes.pop(0) if outcomes else None
            if failure is not None:
                raise failure
            if progress is not None:
                await progress(CopyProgress(self.size, self.size, 2, 2))
            return CopyResult(
                digest=spec.digest, bytes_moved=self.size, blobs_copied=2, blobs_skipped=0,
                blobs_mounted=0, manifests_pushed=1, referrers_copied=0, requests=5,
            )  # fmt: skip
        finally:
            self.running[registry] -= 1
