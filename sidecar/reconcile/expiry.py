"""Reconciling when a scan expires (``policy.reconcile.on_scan_expiry``).

Where the instants come from: the policy, never Python. After each plan the serving reconciler
makes (its ``on_decided`` hook: scheduled, revision-triggered, RPC runs and this trigger's own,
never a candidate bundle's preview), :meth:`ExpiryTrigger.learn` asks the serving bundle, in
batches of ``batch_size``, for ``data.replication.expiry.next_ns``: each decided input's earliest
time boundary strictly after its ``now`` (a scan's ``completed_at`` + the bundle's maximum age,
rego/replication/expiry.rego). The earliest of them is kept; with the trigger off nothing is
asked, so a reconcile costs what it cost before.

When it runs: the earliest known instant X runs at the end of its coalescing window (the first
multiple of ``scan_expiry_coalesce_s`` after X): every instant in one window runs once, and every
replica computes the same time — the lease and run record ``reconcile-expiry:<that time, ns>``
make one of them run it. The sleep is capped (``recheck_s``) so that a wall-clock jump or a
far instant is looked at again. The run (plan or apply) decides every image again with
``input.now`` past the expiry, so SCAN_EXPIRED is in its plan, and its own plan teaches the
trigger the next instant. A run refused because another reconcile is applying (ReconcileBusy)
is counted, not recorded, and tried again ``busy_retry_s`` later under the same lease name.

At start: the instants live only in memory, so a replica that starts knows none, and without a
schedule no other run may come for days. The trigger therefore begins with one plan-only run
(nothing is written; it also sets the drift gauges): every replica makes it, each for its own
memory, and it costs one dry-run reconcile per start — only when the trigger is enabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from sidecar.errors import PolicyError, PolicyUnavailable, ReconcileBusy
from sidecar.model.decision import PolicyInput
from sidecar.reconcile.lease import held
from sidecar.reconcile.trigger import TriggerMetrics
from sidecar.tasks import cancel_and_wait
from sidecar.telemetry import get_logger
from sidecar.typing import BatchEngine, Leases

__all__ = ["EXPIRY_LEASE", "EXPIRY_PATH", "ExpiryTrigger"]

_log = get_logger("sidecar.reconcile.expiry")
#: The lease (and run record) of the reconcile for one expiry time: ``reconcile-expiry:<ns>``.
EXPIRY_LEASE = "reconcile-expiry"
#: The policy's answer: each item's next time boundary after its now (rego/replication/expiry.rego).
EXPIRY_PATH = "replication/expiry/next_ns"
#: Runs one reconcile: ``dry_run`` True plans only. Returns what the reconciler returned.
RunReconcile = Callable[[bool], Awaitable[object]]

_NS = 1_000_000_000
# input.now has millisecond precision and the scan gate holds for now > instant: a run is never
# due before an instant plus a millisecond, or it could decide the image unexpired again.
_AFTER_NS = 1_000_000


class ExpiryTrigger:
    """Runs a reconcile (``mode`` plan or apply) when the earliest known scan expiry passes."""

    def __init__(
        self,
        run: RunReconcile,
        leases: Leases,
        queries: BatchEngine,
        *,
        mode: str,
        owner: str,
        lease_s: float,
        metrics: TriggerMetrics,
        batch_size: int = 200,
        timeout_s: float = 30.0,
        coalesce_s: float = 60.0,
        recheck_s: float = 300.0,
        busy_retry_s: float = 30.0,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._run = run
        self._leases = leases
        self._queries = queries
        self._mode = mode
        self._owner = owner
        self._lease_s = lease_s
        self._metrics = metrics
        self._batch_size = max(1, batch_size)
        self._timeout_s = timeout_s
        self._window_ns = max(0, int(coalesce_s * _NS))
        self._recheck_s = recheck_s
        self._busy_retry_ns = int(busy_retry_s * _NS)
        self._clock_ns = clock_ns
        self._instant: int | None = None  # the earliest known expiry (ns)
        self._not_before = 0  # after ReconcileBusy: the retry waits until then (ns)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def next_ns(self) -> int | None:
        """The earliest known expiry instant (ns since the epoch), None when none is known."""
        return self._instant

    def due_ns(self) -> int | None:
        """The expiry time the earliest known instant runs for: its coalescing window's end (ns)."""
        if self._instant is None:
            return None
        after = self._instant + _AFTER_NS
        if self._window_ns:
            after = -(-after // self._window_ns) * self._window_ns  # rounded up to the window
        return after

    def _ready_ns(self) -> int | None:
        """When the run may start: its due time, or later while a busy run's retry waits."""
        due = self.due_ns()
        return None if due is None else max(due, self._not_before)

    def note(self, instant_ns: int) -> None:
        """Keep ``instant_ns`` when it is earlier than the earliest known; wake the loop."""
        if self._instant is not None and self._instant <= instant_ns:
            return
        self._instant = instant_ns
        self._metrics.next_expiry.set(instant_ns / _NS)
        self._wake.set()

    async def learn(self, inputs: Sequence[PolicyInput]) -> None:
        """The reconciler's hook: ask the policy for the next expiry of ``inputs``; keep it."""
        if self._mode == "off" or not inputs:
            return
        earliest: int | None = None
        for start in range(0, len(inputs), self._batch_size):
            items = [i.to_json() for i in inputs[start : start + self._batch_size]]
            try:
                answer, _, _ = await self._queries.query(
                    EXPIRY_PATH, {"items": items}, timeout_s=self._timeout_s
                )
            except (PolicyError, PolicyUnavailable) as exc:
                # A bundle without the package (or OPA away): the instants stay as they were.
                _log.info("scan expiry: no answer from the policy", error=str(exc))
                break
            for value in answer[: len(items)] if isinstance(answer, list) else ():
                instant = _instant(value)
                if instant is not None and (earliest is None or instant < earliest):
                    earliest = instant
        if earliest is not None:
            self.note(earliest)

    async def run_due(self) -> bool:
        """Run the earliest known instant's reconcile when it is due; return whether it ran."""
        due, ready = self.due_ns(), self._ready_ns()
        if due is None or ready is None or ready > self._clock_ns():
            return False
        # Forgotten first: the run's own plan teaches the next instant (strictly after its now).
        self._instant, self._not_before = None, 0
        self._metrics.next_expiry.set(0)
        return await self.run_for(due)

    async def run_for(self, due_ns: int) -> bool:
        """Reconcile for the expiry time ``due_ns`` unless another replica runs or ran it."""
        name = f"{EXPIRY_LEASE}:{due_ns}"
        due = datetime.fromtimestamp(due_ns / _NS, UTC).isoformat()
        async with held(self._leases, name, self._owner, ttl_s=self._lease_s) as mine:
            if not mine or await self._leases.lease_last_run(name) is not None:
                _log.info("scan expiry reconcile skipped: another replica runs or ran it", due=due)
                return False
            _log.info("reconcile on scan expiry", due=due, mode=self._mode)
            outcome = "ok"
            try:
                await self._run(self._mode != "apply")
            except ReconcileBusy:
                outcome = "busy"  # an applying run (CLI, RPC, schedule) holds the apply lease
                _log.warning("scan expiry reconcile postponed: another reconcile is applying",
                             due=due, retry_s=self._busy_retry_ns / _NS)  # fmt: skip
            except Exception:
                outcome = "error"
                _log.exception("scan expiry reconcile failed", due=due)
            self._metrics.runs.labels("scan_expiry", self._mode, outcome).inc()
            if outcome == "busy":
                # Tried again under the same name: this instant minus the margin has this due.
                self.note(due_ns - _AFTER_NS)
                self._not_before = max(self._not_before, self._clock_ns() + self._busy_retry_ns)
            else:
                now = datetime.fromtimestamp(self._clock_ns() / _NS, UTC)
                await self._leases.record_lease_run(name, self._owner, now)
            return True

    async def forever(self) -> None:
        """Plan once to learn the instants, then run each one when due, until cancelled."""
        if self._mode == "off":
            return
        await self._first_plan()
        while True:
            self._wake.clear()
            if await self.run_due():
                continue
            ready = self._ready_ns()
            wait = self._recheck_s
            if ready is not None:
                wait = min(wait, max(0.0, (ready - self._clock_ns()) / _NS))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def _first_plan(self) -> None:
        _log.info("scan expiry trigger: planning once to learn the expiry instants")
        outcome = "ok"
        try:
            await self._run(True)
        except Exception:
            outcome = "error"  # the scheduled, revision or on-demand runs will teach it
            _log.exception("scan expiry trigger: the first plan failed")
        self._metrics.runs.labels("scan_expiry_start", "plan", outcome).inc()

    def start(self) -> None:
        """Run :meth:`forever` in the background (nothing when ``mode`` is off)."""
        if self._mode != "off" and self._task is None:
            self._task = asyncio.create_task(self.forever(), name="reconcile-on-scan-expiry")

    async def close(self) -> None:
        """Cancel the loop and a run in progress (the sidecar stops)."""
        task, self._task = self._task, None
        await cancel_and_wait(task)


def _instant(value: object) -> int | None:
    """An instant of the policy's answer (ns), None for null or anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return int(value)
