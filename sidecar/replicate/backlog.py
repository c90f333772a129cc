"""The policy backlog: ``Replicate`` requests the fail mode answered, decided again by OPA.

While OPA is unreachable a request is answered by the configured fail mode and marked
``degraded``; ``closed`` denies it and ``legacy`` knows only the Freightliner rules. Neither is
the policy's verdict, so :meth:`ReplicationService.replicate` also records the request durably
(``deferred_routes`` with registry ``@policy``). This loop decides each one again, highest
priority first, and once OPA answers (not degraded) the jobs the policy wants are queued and
the record is resolved. Jobs the fail mode queued are kept: copies are idempotent, and one
already made is not undone. Webhook pushes do not use it: their inbox event stays pending instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from sidecar.errors import InvalidArgument
from sidecar.replicate.deferred import AWAITING_POLICY
from sidecar.replicate.service import ReplicationService
from sidecar.tasks import cancel_and_wait
from sidecar.telemetry import get_logger
from sidecar.typing import Deferrals

__all__ = ["PolicyBacklog", "policy_backlog"]

_log = get_logger("sidecar.replicate.backlog")
_BATCH = 200  # records decided per pass


class PolicyBacklog:
    """Decides fail-mode answers again every ``interval_s`` until OPA gives its own."""

    def __init__(
        self, store: Deferrals, replication: ReplicationService, *, interval_s: float
    ) -> None:
        """Use ``store`` for the records and ``replication`` to decide and enqueue."""
        self._store = store
        self._replication = replication
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the loop in the background (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="policy-backlog")

    async def stop(self) -> None:
        """Stop the loop; safe to repeat."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def drain(self) -> int:
        """Decide pending records once, highest priority first; return how many OPA decided.

        Stops at the first answer that is still degraded: OPA is down, the rest can wait for
        the next pass instead of each waiting out its deadline now.
        """
        decided = 0
        for work in await self._store.pending_deferrals({AWAITING_POLICY}, limit=_BATCH):
            image = f"{work.source_registry}/{work.source_repository}@{work.digest}"
            try:
                outcome = await self._replication.replay(work.request)
            except (KeyError, TypeError, ValueError, InvalidArgument) as exc:
                # Unreadable, or no longer valid (its registry left the inventory): it never
                # will be, so it is dropped, loudly, instead of being retried every pass.
                _log.error(
                    "policy_backlog_record_dropped",
                    image=image,
                    tag=work.tag,
                    fail_mode_decision_id=work.decision_id,
                    error=f"{type(exc).__name__}: {exc}",
                )
                await self._store.resolve_deferral(work)
                continue
            except Exception as exc:  # a transient failure must not hold up the others
                _log.warning(
                    "policy_backlog_replay_failed",
                    image=image,
                    tag=work.tag,
                    error=f"{type(exc).__name__}: {exc}",
                )
                continue
            if outcome.result.degraded:
                break
            # False when the request came again (degraded) meanwhile: the next pass takes it.
            if await self._store.resolve_deferral(work):
                decided += 1
                _log.info(
                    "policy_backlog_decided",
                    image=image,
                    tag=work.tag,
                    decision_id=outcome.result.decision_id,
                    bundle_revision=outcome.result.bundle_revision,
                    fail_mode_decision_id=work.decision_id,
                    jobs=[j.job_id for j in outcome.jobs],
                )
        return decided

    async def _run(self) -> None:
        while True:
            try:
                await self.drain()
            except Exception:  # the store may be briefly unavailable: try again next pass
                _log.exception("policy_backlog_pass_failed")
            await asyncio.sleep(self._interval_s)


@contextlib.asynccontextmanager
async def policy_backlog(
    store: Deferrals, replication: ReplicationService, *, interval_s: float
) -> AsyncIterator[PolicyBacklog]:
    """Run a :class:`PolicyBacklog` for the duration of the context."""
    backlog = PolicyBacklog(store, replication, interval_s=interval_s)
    backlog.start()
    try:
        yield backlog
    finally:
        await backlog.stop()
