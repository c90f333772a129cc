"""Wires a reconciler: the policy runtime, the replication parts and the audit trail it writes to."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from sidecar.app.candidate import spare_opa
from sidecar.app.policy import PolicyRuntime, decision_service, policy_runtime
from sidecar.app.replication import ReplicationParts, registry_rates, replication_parts
from sidecar.audit import AuditTrail, open_audit_log
from sidecar.config import Config
from sidecar.decide import DecisionService
from sidecar.model.decision import PolicyInput
from sidecar.reconcile import (
    CandidateFactory,
    CandidatePolicy,
    Observer,
    Reconciler,
    Remover,
    Scope,
    artifact_registry_listers,
    ecr_listers,
    waiter,
)
from sidecar.sensitive.runtime import gated
from sidecar.telemetry import Telemetry
from sidecar.typing import TagLister

__all__ = ["build_reconciler", "candidate_policies", "reconciler"]


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


def candidate_policies(
    config: Config, telemetry: Telemetry, parts: ReplicationParts
) -> CandidateFactory:
    """The impact preview's candidates: each verified, on its own spare OPA, decided like Decide."""

    @contextlib.asynccontextmanager
    async def candidate(raw: bytes) -> AsyncIterator[CandidatePolicy]:
        async with spare_opa(config, raw) as spare:
            managed = spare.managed
            runtime = PolicyRuntime(
                gated(spare.engine, spare.sensitive, lambda: managed.ready),
                managed.url,
                managed,
                spare.revision,
                spare.sensitive,
                spare.token,
                opa=spare.engine,
            )
            yield CandidatePolicy(
                decision_service(config, telemetry, runtime, parts), spare.engine, spare.revision
            )

    return candidate


def _listers(config: Config, parts: ReplicationParts) -> dict[str, TagLister]:
    """Registries observed through their own API instead of the OCI catalog: ECR, Artifact
    Registry (with the registry's own credentials and rate limit)."""
    settings = config.policy.reconcile
    return {
        **ecr_listers(config.registries),
        **artifact_registry_listers(
            config.registries, parts.clients, rate_limit_rps=registry_rates(config),
            concurrency=settings.concurrency, max_tags=settings.max_tags,
        ),
    }  # fmt: skip


def build_reconciler(
    config: Config,
    telemetry: Telemetry,
    runtime: PolicyRuntime,
    parts: ReplicationParts,
    *,
    decisions: DecisionService,
    audit: AuditTrail,
    on_decided: Callable[[Sequence[PolicyInput]], Awaitable[None]] | None = None,
) -> Reconciler:
    """A reconciler over ``parts`` (clients, store, workers) deciding with ``decisions``.

    ``on_decided``: given the inputs of every plan under the serving policy (scan expiries).
    """
    settings = config.policy.reconcile
    return Reconciler(
        config,
        observer=Observer(parts.clients, settings, listers=_listers(config, parts)),
        decisions=decisions,
        queries=runtime.opa,
        jobs=parts.store,
        copies=parts.store,
        wait_timeout_s=settings.wait_s,
        leases=parts.store,
        owner=parts.pool.worker_id,
        metrics_registry=telemetry.metrics_registry,
        candidates=candidate_policies(config, telemetry, parts),
        on_decided=on_decided,
        baselines=parts.store,
        remover=Remover(
            parts.clients,
            parts.store,
            wait=waiter(parts.store, timeout_s=settings.wait_s),
            wake=parts.pool.wake,
            sources=settings.sources,
            scope=Scope(settings),
            max_removals=settings.max_removals_per_run,
            audit=audit,
            metrics_registry=telemetry.metrics_registry,
        ),
    )
