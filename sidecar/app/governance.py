"""Builds the admin side of a running sidecar: audit log, revisions, validation, delivery, authn/z.

Also runs the TLS admin listener, which needs the gRPC server's relay port (started after it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from sidecar.app.bundle import signing_keys
from sidecar.audit import AuditLog, AuditTrail
from sidecar.bundles.validate import validator_for
from sidecar.config import Config, job_store_url
from sidecar.governance.admin import AdminService
from sidecar.governance.authz import OpaAuthorizer
from sidecar.governance.delivery import BundleDelivery, StoreTarget
from sidecar.governance.identity import Authenticator, ConnectionRegistry
from sidecar.governance.revisions import RevisionStore
from sidecar.governance.tls_front import TlsFront
from sidecar.policy.managed import ManagedOpa
from sidecar.store import store_backend
from sidecar.tools import find_tool

__all__ = ["AdminRuntime", "admin_runtime", "bundle_keys", "tls_listener"]

# gRPC's transport cap on one message, above the bundle limit so that a bundle somewhat over the
# limit still reaches the admin API, which refuses it by name and audits the refusal.
_TRANSPORT_MARGIN = 1024 * 1024


@dataclass(frozen=True, slots=True)
class AdminRuntime:
    """The admin service plus what the gRPC server needs to host it."""

    service: AdminService
    audit: AuditTrail
    connections: ConnectionRegistry | None
    max_message_bytes: int
    # The published archives, pruned by sidecar.app.retention (None: not kept here).
    revisions: RevisionStore | None = None

    @property
    def wants_relay(self) -> bool:
        """Whether a TLS admin listener relays to the gRPC server."""
        return self.connections is not None


def bundle_keys(config: Config) -> tuple[Path | None, Path]:
    """Return (signing key or None, verification key) the admin API signs and verifies with."""
    bundle = config.policy.bundle
    if bundle.verification_key and not bundle.signing_key:
        # Pull mode may know only the public key: uploads must then come signed.
        return None, Path(bundle.verification_key)
    private, public = signing_keys(config)
    return private, public


@contextlib.asynccontextmanager
async def admin_runtime(
    config: Config, *, opa_url: str, managed: ManagedOpa | None, registry: CollectorRegistry
) -> AsyncIterator[AdminRuntime]:
    """Open the audit log and revision tables and yield the admin service; close them after."""
    settings = config.policy.admin
    policy = config.policy
    backend = store_backend(job_store_url(policy.replication, str(policy.state_dir)))
    await backend.connect()
    authorizer = OpaAuthorizer(
        opa_url,
        timeout_s=policy.opa.timeout_ms / 1000,
        token=managed.token if managed is not None else None,
    )
    try:
        log = AuditLog(backend, description="audit")
        await log.create_schema()
        revisions = RevisionStore(backend)
        await revisions.create_schema()
        signing_key, verification_key = bundle_keys(config)
        connections = ConnectionRegistry() if settings.tls is not None else None
        audit = AuditTrail(log, registry)
        service = AdminService(
            authenticator=Authenticator(
                settings.tokens,
                connections,
                require_tls=connections is not None and settings.require_tls,
            ),
            authorizer=authorizer,
            validator=validator_for(
                config,
                verification_key,
                max_bytes=settings.max_bundle_bytes,
                max_unpacked_bytes=settings.max_unpacked_bytes,
            ),
            delivery=BundleDelivery(
                opa_binary=find_tool("opa", policy.opa.binary),
                signing_key=signing_key,
                work_dir=Path(policy.state_dir) / "admin" / "bundles",
                store=_store(config),
                # A managed OPA that pulls from the store gets the bundle from there.
                managed=managed if policy.bundle.service is None else None,
            ),
            revisions=revisions,
            audit=audit,
        )
        if managed is not None and policy.bundle.service is None and managed.bundle_path:
            raw = await asyncio.to_thread(Path(managed.bundle_path).read_bytes)
            await service.adopt(raw, "sidecar:startup")
        yield AdminRuntime(
            service,
            audit,
            connections,
            settings.max_bundle_bytes + _TRANSPORT_MARGIN,
            revisions,
        )
    finally:
        await authorizer.close()
        await backend.close()


@contextlib.asynccontextmanager
async def tls_listener(
    config: Config, admin: AdminRuntime, backend_port: int
) -> AsyncIterator[TlsFront | None]:
    """Run the TLS admin listener relaying to ``backend_port`` (None when not configured)."""
    settings = config.policy.admin
    if settings.tls is None or admin.connections is None:
        yield None
        return
    front = TlsFront(
        settings.listen,
        cert_file=settings.tls.cert_file,
        key_file=settings.tls.key_file,
        client_ca_file=settings.tls.client_ca_file,
        backend_port=backend_port,
        connections=admin.connections,
    )
    await front.start()
    try:
        yield front
    finally:
        await front.stop()


def _store(config: Config) -> StoreTarget | None:
    publish = config.policy.admin.publish
    bundle = config.policy.bundle
    if publish.to:
        return StoreTarget(
            publish.to,
            publish.endpoint_url,
            publish.region,
            publish.token or bundle.serve.token or None,
            publish.timeout_s,
        )
    if bundle.service is not None:
        # The store this sidecar's OPA pulls from: publishing there reaches it and the fleet.
        service = bundle.service
        return StoreTarget(
            service.url,
            service.endpoint_url,
            service.region,
            publish.token or bundle.serve.token or None,
            publish.timeout_s,
        )
    return None
