"""Reconciling when a bundle revision activates (``policy.reconcile.on_revision``).

The revision watcher reports each activation; :class:`RevisionTrigger` runs a reconcile in the
background — a plan (logged, and its sizes in the plan metrics) or an applying run — so the
watcher is never held up. Activations arriving while one runs are coalesced: the newest one runs
next. Of several replicas, each of which sees the activation, one runs per revision: it holds the
lease ``reconcile-revision:<revision>`` and records the run on it, and a replica that comes later
finds it done.

"Re-plan only what the new revision changes": every source image in scope is decided again on
the new revision (batched: decisions are cheap, and a rule change can affect any image, so the
scope is never guessed from the bundle's diff), and only the images whose outcome differs from
the one decided under the previous revision are planned and applied (``Reconciler.run(since=…)``).
Without a record of the previous revision in this process (a replica that never ran under it, a
restart) the plan is whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge

from sidecar.errors import ReconcileBusy
from sidecar.reconcile.lease import held
from sidecar.tasks import cancel_and_wait
from sidecar.telemetry import METRIC_PREFIX, get_logger
from sidecar.typing import Leases

__all__ = ["REVISION_LEASE", "RevisionTrigger", "TriggerMetrics"]

_log = get_logger("sidecar.reconcile.trigger")
#: The lease (and run record) of the reconcile for one revision: ``reconcile-revision:<rev>``.
REVISION_LEASE = "reconcile-revision"
#: Runs one reconcile: ``(dry_run, since)`` — ``dry_run`` True plans only; ``since`` is the
#: revision active before (plan only what changed since). Returns what the reconciler returned.
RunReconcile = Callable[[bool, str], Awaitable[object]]


class TriggerMetrics:
    """Counts reconciles started by something other than a caller, by trigger, mode and outcome."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        registry = registry or CollectorRegistry()
        self.runs = Counter(
            f"{METRIC_PREFIX}reconcile_triggered",
            "Reconciles triggered by a revision activation, a legacy rule's schedule or a scan "
            "expiry (scan_expiry; scan_expiry_start: the plan that learns the instants).",
            ["trigger", "mode", "outcome"],
            registry=registry,
        )
        self.next_expiry = Gauge(
            f"{METRIC_PREFIX}reconcile_next_scan_expiry_timestamp_seconds",
            "The earliest known scan expiry ahead (seconds since the epoch; 0: none known), "
            "at which policy.reconcile.on_scan_expiry reconciles.",
            registry=registry,
        )


class RevisionTrigger:
    """Runs a reconcile (``mode`` plan or apply) once per activated bundle revision."""

    def __init__(
        self,
        run: RunReconcile,
        leases: Leases,
        *,
        mode: str,
        owner: str,
        lease_s: float,
        metrics: TriggerMetrics,
    ) -> None:
        self._run = run
        self._leases = leases
        self._mode = mode
        self._owner = owner
        self._lease_s = lease_s
        self._metrics = metrics
        self._pending: tuple[str, str] | None = None  # (since, revision)
        self._task: asyncio.Task[None] | None = None

    async def activated(self, previous: str, revision: str) -> None:
        """The watcher's hook: reconcile for ``revision`` in the background (not the first seen)."""
        if self._mode == "off" or not previous or not revision:
            return
        # Coalesced: the newest revision runs, against the revision active before the first
        # activation it replaces (what changed since then is what all of them changed).
        since = self._pending[0] if self._pending is not None else previous
        self._pending = (since, revision)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="reconcile-on-revision")

    async def _drain(self) -> None:
        while self._pending is not None:
            (since, revision), self._pending = self._pending, None
            await self.run_for(revision, since=since)

    async def run_for(self, revision: str, *, since: str = "") -> bool:
        """Reconcile for ``revision`` unless another replica runs or ran it; return whether run.

        ``since``: the revision active before; only what changed since is planned.
        """
        name = f"{REVISION_LEASE}:{revision}"
        async with held(self._leases, name, self._owner, ttl_s=self._lease_s) as mine:
            if not mine or await self._leases.lease_last_run(name) is not None:
                _log.info("revision reconcile skipped: another replica runs or ran it",
                          bundle_revision=revision)  # fmt: skip
                return False
            _log.info("reconcile on bundle activation", bundle_revision=revision,
                      previous_revision=since, mode=self._mode)  # fmt: skip
            outcome = "ok"
            try:
                await self._run(self._mode != "apply", since)
            except ReconcileBusy:
                outcome = "busy"  # an applying run (CLI, RPC, schedule) holds the apply lease
                _log.warning("revision reconcile skipped: another reconcile is applying",
                             bundle_revision=revision)  # fmt: skip
            except Exception:
                outcome = "error"
                _log.exception("revision reconcile failed", bundle_revision=revision)
            self._metrics.runs.labels("revision", self._mode, outcome).inc()
            await self._leases.record_lease_run(name, self._owner, datetime.now(UTC))
            return True

    async def idle(self) -> None:
        """Wait until no triggered run is in progress or pending."""
        while self._task is not None and not self._task.done():
            await asyncio.wait([self._task])

    async def close(self) -> None:
        """Cancel a run in progress (the sidecar stops)."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
