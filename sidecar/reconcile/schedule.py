"""When the reconciler runs by itself: a cron schedule (``policy.reconcile.schedule``, UTC).

:class:`Scheduler` sleeps until the next time, takes the store's
``reconcile`` lease (so of several replicas one runs), runs, records the run, and releases. A run
missed while no replica was up runs once at start.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

from sidecar.config import Cron
from sidecar.reconcile.lease import held
from sidecar.tasks import cancel_and_wait
from sidecar.telemetry import get_logger
from sidecar.typing import Leases

__all__ = ["LEASE", "Scheduler", "scheduled"]

_log = get_logger("sidecar.reconcile.schedule")
LEASE = "reconcile"


class Scheduler:
    """Runs ``run`` at each time of ``cron``, holding the store's lease; one run at a time."""

    def __init__(
        self,
        cron: Cron,
        run: Callable[[], Awaitable[object]],
        leases: Leases,
        *,
        owner: str,
        lease_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        lease: str = LEASE,
    ) -> None:
        self._cron = cron
        self._run = run
        self._leases = leases
        self._owner = owner
        self._lease_s = lease_s
        self._clock = clock
        # The lease (and run record) of this schedule: one per schedule (a legacy rule has its own).
        self._lease = lease

    async def once(self, due: datetime) -> bool:
        """Run for the time ``due`` unless another replica holds the lease or already ran it."""
        async with held(self._leases, self._lease, self._owner, ttl_s=self._lease_s) as mine:
            if not mine:
                _log.info(
                    "scheduled reconcile skipped: another replica runs it",
                    due=due.isoformat(),
                    lease=self._lease,
                )
                return False
            last = await self._leases.lease_last_run(self._lease)
            if last is not None and last >= due:
                return False  # another replica ran this one already
            _log.info(
                "scheduled reconcile starting",
                due=due.isoformat(),
                owner=self._owner,
                lease=self._lease,
            )
            try:
                await self._run()
            except Exception:
                _log.exception("scheduled reconcile failed", due=due.isoformat())
            await self._leases.record_lease_run(self._lease, self._owner, due)
            return True

    async def catch_up(self) -> bool:
        """Run once now when the last scheduled time passed without a run (missed while down)."""
        missed = self._cron.previous_before(self._clock())
        if missed is None:
            return False
        last = await self._leases.lease_last_run(self._lease)
        if last is not None and last >= missed:
            return False
        return await self.once(missed)

    async def forever(self) -> None:
        """Catch up, then run at every time of the schedule until cancelled."""
        await self.catch_up()
        while True:
            due = self._cron.next_after(self._clock())
            await asyncio.sleep(max(0.0, (due - self._clock()).total_seconds()))
            await self.once(due)


@contextlib.asynccontextmanager
async def scheduled(*schedulers: Scheduler | None) -> AsyncIterator[None]:
    """Run each ``scheduler.forever()`` in the background for the block (None: nothing)."""
    tasks = [
        asyncio.create_task(s.forever(), name="reconcile-schedule")
        for s in schedulers
        if s is not None
    ]
    try:
        yield
    finally:
        await cancel_and_wait(*tasks)
