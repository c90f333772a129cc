"""Follows the bundle revision OPA serves, so the revision metric moves even with no decisions.

Decisions already report the revision OPA evaluated with (query provenance) and set the metric;
this watcher asks OPA once per interval as well, logs each activation (old → new revision) and
re-asserts the metric, so a late answer from a query that began before an activation cannot leave
the older revision marked active for long.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from sidecar.errors import PolicyError, PolicyUnavailable
from sidecar.policy.opa import OpaEngine
from sidecar.telemetry import Metrics, get_logger

__all__ = ["DEFAULT_INTERVAL_S", "RevisionWatcher", "watch_revisions"]

# One small GET a second against loopback: negligible for OPA, and well inside the 5 s target.
DEFAULT_INTERVAL_S = 1.0
_log = get_logger("sidecar.policy.revisions")


class RevisionWatcher:
    """Polls ``probe`` (OPA's active revision) every ``interval_s``; reports each change."""

    def __init__(
        self,
        probe: Callable[[], Awaitable[str]],
        on_revision: Callable[[str], None],
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        initial: str = "",
        on_change: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        self._probe = probe
        self._on_revision = on_revision
        self._on_change = on_change
        self._interval_s = interval_s
        self._revision = initial
        self._task: asyncio.Task[None] | None = None

    @property
    def revision(self) -> str:
        """Return the revision OPA reported last ("" before any)."""
        return self._revision

    def start(self) -> None:
        """Start polling in the background (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="bundle-revision-watcher")

    async def stop(self) -> None:
        """Stop polling; safe to repeat."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None

    async def check(self) -> str:
        """Ask OPA once; report and return the revision ("" when unknown or unreachable)."""
        try:
            revision = await self._probe()
        except (PolicyUnavailable, PolicyError) as exc:
            # Restarting or not yet activated: the supervisor and readiness report that.
            _log.debug("active bundle revision unknown", error=exc.message)
            return ""
        if not revision:
            return ""
        previous = self._revision
        if revision != previous:
            _log.info(
                "bundle revision activated",
                bundle_revision=revision,
                previous_revision=previous or None,
            )
            self._revision = revision
        self._on_revision(revision)
        if revision != previous and self._on_change is not None:
            try:
                await self._on_change(previous, revision)
            except Exception:  # a failed hook (the audit store down) must not stop the metric
                _log.exception("bundle activation hook failed", bundle_revision=revision)
        return revision

    async def _run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self._interval_s)


@contextlib.asynccontextmanager
async def watch_revisions(
    opa_url: str,
    metrics: Metrics,
    *,
    timeout_s: float,
    initial: str = "",
    interval_s: float = DEFAULT_INTERVAL_S,
    on_change: Callable[[str, str], Awaitable[None]] | None = None,
    token: str | None = None,
    on_revision: Callable[[str], None] | None = None,
) -> AsyncIterator[RevisionWatcher]:
    """Keep ``policy_sidecar_bundle_revision_info`` on the revision the OPA at ``opa_url`` serves.

    ``on_change(previous, revision)`` runs after each activation the watcher sees;
    ``on_revision(revision)`` after every poll that learned the revision (as the metric).
    """
    engine = OpaEngine(opa_url, timeout_s=timeout_s, metrics=False, token=token)

    def report(revision: str) -> None:
        metrics.set_active_revision(revision)
        if on_revision is not None:
            on_revision(revision)

    watcher = RevisionWatcher(
        engine.active_revision,
        report,
        interval_s=interval_s,
        initial=initial,
        on_change=on_change,
    )
    watcher.start()
    try:
        yield watcher
    finally:
        await watcher.stop()
        await engine.close()
