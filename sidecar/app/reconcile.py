"""Wires a reconciler: the policy runtime, the replication parts and the audit trail it writes to."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sidecar.app.replication import replication_parts
from sidecar.app.sidecar import build_reconciler, decision_service, policy_runtime
from sidecar.audit import AuditTrail, open_audit_log
from sidecar.config import Config
from sidecar.reconcile import Reconciler
from sidecar.telemetry import Telemetry

__all__ = ["reconciler"]


@contextlib.asynccontextmanager
async def reconciler(
    config: Config, telemetry: Telemetry, *, run_workers: bool = False
) -> AsyncIterator[Reconciler]:
    """Yield a :class:`Reconciler` over its own OPA, store and clients; close them on exit.

    ``run_workers``: start a worker pool on the job store for the run, so the copies it queues
    execute in this process (``policy-sidecar reconcile --apply`` with no sidecar serving).
    """
    async with contextlib.AsyncExitStack() as stack:
        runtime = await stack.enter_async_context(policy_runtime(config))
        parts = await stack.enter_async_context(replication_parts(config, telemetry))
        log = await open_audit_log(parts.store_url)
        stack.push_async_callback(log.close)
        if run_workers:
            await parts.pool.start()
            stack.push_async_callback(parts.pool.stop)
        yield build_reconciler(
            config,
            telemetry,
            runtime,
            parts,
            decisions=decision_service(config, telemetry, runtime, parts),
            audit=AuditTrail(log, telemetry.metrics_registry),
        )
