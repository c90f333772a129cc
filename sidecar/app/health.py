"""Builds the health half of a running sidecar: the prober, recovery and the pull resolver.

:func:`open_monitor` is opened with the replication parts (the worker pool asks the prober);
:func:`health_runtime` is opened once decisions and replication exist, and starts probing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from sidecar.config import Config
from sidecar.decide import DecisionService
from sidecar.enrich.pipeline import FactSource
from sidecar.health.monitor import HealthMonitor
from sidecar.health.recovery import Recovery
from sidecar.health.resolve import PullResolver
from sidecar.health.source import ProbedHealth
from sidecar.oci import RegistryClients
from sidecar.replicate.service import ReplicationService
from sidecar.typing import HealthLedger, JobStore, RegistryCredentialSource

__all__ = ["HealthRuntime", "health_runtime", "health_sources", "open_monitor"]


@dataclass(frozen=True, slots=True)
class HealthRuntime:
    """The running prober (None when probing is off), its recovery, and the pull resolver."""

    monitor: HealthMonitor | None
    recovery: Recovery | None
    resolver: PullResolver


@contextlib.asynccontextmanager
async def open_monitor(
    config: Config,
    store: HealthLedger,
    metrics_registry: CollectorRegistry,
    *,
    credentials: RegistryCredentialSource | None = None,
) -> AsyncIterator[HealthMonitor | None]:
    """Yield the (not yet started) prober, or None when ``policy.health.enabled`` is false.

    ``credentials`` are the secret-manager ones the copying clients use too: a registry whose
    secret cannot be used probes down, with the reason.
    """
    settings = config.policy.health
    if not settings.enabled or not config.registries:
        yield None
        return
    # Its own sessions: a probe must not queue behind blob uploads or their rate limit.
    clients = RegistryClients(
        config.registries, timeout_s=settings.timeout_s, credentials=credentials
    )

    async def ping(name: str) -> float:
        return await clients.get(name).ping()

    monitor = HealthMonitor(
        [r.name for r in config.registries],
        ping,
        settings,
        ledger=store,
        metrics_registry=metrics_registry,
    )
    try:
        yield monitor
    finally:
        await monitor.stop()
        await clients.close()


def health_sources(monitor: HealthMonitor | None) -> tuple[FactSource, ...]:
    """The enrichment source of probed health (none when probing is off)."""
    return () if monitor is None else (ProbedHealth(monitor),)


@contextlib.asynccontextmanager
async def health_runtime(
    config: Config,
    *,
    monitor: HealthMonitor | None,
    store: JobStore,
    clients: RegistryClients,
    decisions: DecisionService,
    replication: ReplicationService,
    wake: Callable[[], None],
) -> AsyncIterator[HealthRuntime]:
    """Start probing and recovery; stop both on exit (the prober itself closes with its owner)."""
    settings = config.policy.health
    resolver = PullResolver(
        config.registries, clients, health=monitor, store=store, timeout_s=settings.timeout_s
    )
    if monitor is None:
        yield HealthRuntime(None, None, resolver)
        return
    recovery = Recovery(
        monitor=monitor,
        store=store,
        replication=replication,
        decisions=decisions,
        clients=clients,
        wake=wake,
        settings=settings,
    )
    recovery.attach()
    await monitor.start()
    await recovery.start()
    try:
        yield HealthRuntime(monitor, recovery, resolver)
    finally:
        await recovery.stop()
        await monitor.stop()
