"""Wires a reconciler: the policy runtime, the replication parts and the audit trail it writes to."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sidecar.app.replication import replication_parts
from sidecar.app.sidecar import candidate_policies, decision_service, policy_runtime
from sidecar.audit import AuditTrail, open_audit_log
from sidecar.config import Config
from sidecar.reconcile import Observer, Reconciler, Remover, Scope, ecr_listers, waiter
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
    settings = config.policy.reconcile
    async with contextlib.AsyncExitStack() as stack:
        runtime = await stack.enter_async_context(policy_runtime(config))
        parts = await stack.enter_async_context(replication_parts(config, telemetry))
        log = await open_audit_log(parts.store_url)
        stack.push_async_callback(log.close)
        if run_workers:
            await parts.pool.start()
            stack.push_async_callback(parts.pool.stop)
        scope = Scope(settings)
        yield Reconciler(
            config,
            observer=Observer(parts.clients, settings, listers=ecr_listers(config.registries)),
            decisions=decision_service(config, telemetry, runtime, parts),
            queries=runtime.opa,
            jobs=parts.store,
            copies=parts.store,
            wait_timeout_s=settings.wait_s,
            leases=parts.store,
            owner=parts.pool.worker_id,
            metrics_registry=telemetry.metrics_registry,
            candidates=candidate_policies(config, telemetry, parts),
            remover=Remover(
                parts.clients,
                parts.store,
                wait=waiter(parts.store, timeout_s=settings.wait_s),
                wake=parts.pool.wake,
                sources=settings.sources,
                scope=scope,
                max_removals=settings.max_removals_per_run,
                audit=AuditTrail(log, telemetry.metrics_registry),
                metrics_registry=telemetry.metrics_registry,
            ),
        )
