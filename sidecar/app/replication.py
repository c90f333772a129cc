"""The replication half of a running sidecar: job store, registry clients, copier, worker pool.

:func:`replication_parts` opens them in dependency order and closes them in reverse, so the
composition root (sidecar/app/sidecar.py) only decides *when*; :func:`registry_sources` gives the decision
path the facts those same clients and store can read.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from sidecar.app.health import open_monitor
from sidecar.config import Config, job_store_url
from sidecar.enrich.access import PullAccessSource
from sidecar.enrich.ecr_scan import EcrScanSource
from sidecar.enrich.pipeline import FactSource
from sidecar.enrich.registry import ReferrerMarks, RegistryFactSource
from sidecar.errors import NotFound
from sidecar.health.monitor import HealthMonitor
from sidecar.model.decision import ImageRef
from sidecar.oci import RegistryClients
from sidecar.replicate.copy import ImageCopier
from sidecar.replicate.delete import ImageDeleter
from sidecar.replicate.metrics import QueueGauges
from sidecar.replicate.retry import RetryPolicy
from sidecar.replicate.workers import WorkerPool
from sidecar.secrets import RegistrySecrets
from sidecar.store import open_job_store
from sidecar.telemetry import Telemetry, get_logger
from sidecar.typing import JobStore

__all__ = [
    "ReplicationParts",
    "registry_rates",
    "registry_sources",
    "replication_parts",
    "worker_identity",
]

_log = get_logger("sidecar.replicate")


def registry_rates(config: Config) -> dict[str, float] | float | None:
    """Each registry's request rate: ``registry_rate_limit_rps``, else ``rate_limit_rps``."""
    settings = config.policy.replication
    rates: dict[str, float] | float | None = settings.rate_limit_rps
    if settings.registry_rate_limit_rps:
        rates = {
            r.name: settings.registry_rate_limit_rps.get(r.name, settings.rate_limit_rps or 0)
            for r in config.registries
        }
        rates = {name: rps for name, rps in rates.items() if rps}
    return rates


@dataclass(frozen=True, slots=True)
class ReplicationParts:
    """What copies images: the durable store, one client per registry, the copier and the pool."""

    store: JobStore
    clients: RegistryClients
    copier: ImageCopier
    pool: WorkerPool
    store_url: str
    # The registry prober (not started; sidecar.app.health starts it), None when off.
    health: HealthMonitor | None = None
    # Images whose referrers a registry event says changed: enrichment reads them again.
    referrer_marks: ReferrerMarks = field(default_factory=ReferrerMarks)

    async def resolve_digest(self, image: ImageRef) -> str:
        """Return the digest ``image``'s tag points at now in its source registry (HEAD)."""
        client = self.clients.get(image.registry)
        found = await client.head_manifest(image.repository, image.tag)
        if found is None:
            raise NotFound(f"image {image} not found in registry {image.registry!r}")
        return found.digest


def worker_identity() -> str:
    """Return a worker id unique to this process: host, pid and a random suffix (leases name it)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _redacted(url: str) -> str:
    """The store URL without its password (it is logged)."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


@contextlib.asynccontextmanager
async def replication_parts(
    config: Config, telemetry: Telemetry
) -> AsyncIterator[ReplicationParts]:
    """Open the job store and registry clients and build the pool (not started); close on exit."""
    settings = config.policy.replication
    url = job_store_url(settings, str(config.policy.state_dir))
    store = await open_job_store(url)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(store.close)
        rates = registry_rates(config)
        # One secret cache for the copying clients and the prober's: a rotation read by one is
        # seen by both, and the manager is asked once per TTL, not once per client.
        secrets = RegistrySecrets(config.registries, config.secrets)
        stack.callback(secrets.close)
        if secrets.names:
            _log.info("registry credentials from a secret manager", registries=list(secrets.names))
        clients = RegistryClients(
            config.registries,
            rate_limit_rps=rates,
            timeout_s=settings.request_timeout_s,
            credentials=secrets.credentials,
            tracer_provider=telemetry.provider,
        )
        stack.push_async_callback(clients.close)
        health = await stack.enter_async_context(
            open_monitor(config, store, telemetry.metrics_registry, credentials=secrets.credentials)
        )
        copier = ImageCopier(
            clients, blob_concurrency=settings.blob_concurrency, tracer=telemetry.tracer
        )
        retry = settings.retry
        pool = WorkerPool(
            store,
            copier,
            worker_id=worker_identity(),
            workers=settings.workers,
            per_registry_concurrency=settings.per_registry_concurrency,
            registry_concurrency=settings.registry_concurrency,
            retry=RetryPolicy(
                max_attempts=retry.max_attempts, base_s=retry.base_s, max_s=retry.max_s
            ),
            lease_s=settings.lease_s,
            metrics_registry=telemetry.metrics_registry,
            health=health,
            deleter=ImageDeleter(clients, sources=config.policy.reconcile.sources),
            registries=[r.name for r in config.registries],
        )
        gauges = QueueGauges(
            store,
            telemetry.metrics_registry,
            registries=[r.name for r in config.registries],
            interval_s=settings.queue_metrics_interval_s,
        )
        await stack.enter_async_context(gauges.running())
        _log.info("job store open", store=_redacted(url), worker_id=pool.worker_id)
        yield ReplicationParts(store, clients, copier, pool, url, health)


def registry_sources(config: Config, parts: ReplicationParts) -> tuple[FactSource, ...]:
    """Return the registry-backed enrichment sources, or none when ``registry_enrichment`` is off."""
    settings = config.policy.replication
    if not settings.registry_enrichment:
        return ()
    return (
        RegistryFactSource(
            parts.clients,
            timeout_s=settings.enrich_timeout_s,
            referrers_ttl_s=settings.referrers_ttl_s,
            marks=parts.referrer_marks,
        ),
        EcrScanSource(config.registries, timeout_s=settings.enrich_timeout_s),
        PullAccessSource(parts.store, window_s=settings.pull_window),
    )
