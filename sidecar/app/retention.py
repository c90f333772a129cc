"""The periodic prune of finished state (``policy.replication.retention``), once at start then
every ``interval_s``: terminal jobs, completed and dead-lettered webhook events, resolved
deferrals, pull counts older than the pull window and bundle revision archives beyond the newest
``keep_revisions``.

The audit log is never pruned: it is append-only and hash-chained (docs/configuration.md says how
to archive it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter

from sidecar.config import RetentionSettings
from sidecar.tasks import cancel_and_wait
from sidecar.telemetry import METRIC_PREFIX, get_logger
from sidecar.typing import StatePruning

__all__ = ["KINDS", "Pruner", "RevisionPruning", "retention_task"]

_log = get_logger("sidecar.retention")

KINDS = ("jobs", "events", "dead_events", "deferrals", "pulls", "revisions")


class RevisionPruning(Protocol):
    """Deletes published bundle archives beyond the newest ``keep`` (never the active one)."""

    async def prune(self, keep: int) -> int:
        """Return how many revisions were deleted."""
        ...


class Pruner:
    """Runs one prune over the store (and the revision archives) and counts what it deleted."""

    def __init__(
        self,
        store: StatePruning,
        revisions: RevisionPruning | None,
        settings: RetentionSettings,
        registry: CollectorRegistry,
        *,
        pull_window_s: float = 0.0,
    ) -> None:
        self._store = store
        # Pull counts older than the pull window are never read again (input.access).
        self._pull_window_s = pull_window_s
        self._revisions = revisions
        self._settings = settings
        self._pruned = Counter(
            f"{METRIC_PREFIX}pruned_rows",
            "Finished state deleted by the retention prune, by kind.",
            ["kind"],
            registry=registry,
        )
        for kind in KINDS:
            self._pruned.labels(kind=kind)

    async def prune(self, now: datetime | None = None) -> dict[str, int]:
        """Prune once; return how many of each kind were deleted (also logged and counted)."""
        settings = self._settings
        counts = await self._store.prune(
            now,
            jobs_days=settings.jobs_days,
            events_days=settings.events_days,
            dead_events_days=settings.dead_events_days,
            deferrals_days=settings.deferrals_days,
            pull_window_s=self._pull_window_s,
        )
        counts["revisions"] = (
            await self._revisions.prune(settings.keep_revisions) if self._revisions else 0
        )
        for kind, count in counts.items():
            if count:
                self._pruned.labels(kind=kind).inc(count)
        _log.info("state pruned", **counts)
        return counts

    async def run(self) -> None:
        """Prune now and then every ``interval_s``; a failed prune is logged and tried again."""
        while True:
            try:
                await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failed prune must not stop the sidecar
                _log.warning("state prune failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self._settings.interval_s)


@contextlib.asynccontextmanager
async def retention_task(
    store: StatePruning,
    revisions: RevisionPruning | None,
    settings: RetentionSettings,
    registry: CollectorRegistry,
    *,
    pull_window_s: float = 0.0,
) -> AsyncIterator[Pruner]:
    """Run :meth:`Pruner.run` in the background until the block exits."""
    pruner = Pruner(store, revisions, settings, registry, pull_window_s=pull_window_s)
    task = asyncio.create_task(pruner.run(), name="state-prune")
    try:
        yield pruner
    finally:
        await cancel_and_wait(task)
