"""Builds the admin side of a running sidecar: audit log, revisions, validation, delivery, authn/z.

Also the data plane's gate (policy.auth) and the listeners the gRPC server binds for both.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from sidecar.api.server import Listener, tls_credentials
from sidecar.app.bundle import signing_keys
from sidecar.audit import AuditLog, AuditTrail, RefusalWindow
from sidecar.bundles.validate import validator_for
from sidecar.config import AuthSettings, Config, job_store_url
from sidecar.governance.admin import AdminService
from sidecar.governance.authz import OpaAuthorizer
from sidecar.governance.delivery import BundleDelivery, StoreTarget
from sidecar.governance.gate import DataPlaneGate, TenantScope
from sidecar.governance.identity import Authenticator
from sidecar.governance.ratelimit import CallRateLimiter, RateLimit, rate_limited_counter
from sidecar.governance.revisions import RevisionStore
from sidecar.policy.managed import ManagedOpa
from sidecar.store import store_backend
from sidecar.tools import find_tool

__all__ = ["AdminRuntime", "admin_runtime", "bundle_keys", "data_plane_gate", "listeners"]

# gRPC's transport cap on one message, above the bundle limit so that a bundle somewhat over the
# limit still reaches the admin API, which refuses it by name and audits the refusal.
_TRANSPORT_MARGIN = 1024 * 1024


@dataclass(frozen=True, slots=True)
class AdminRuntime:
    """The admin service plus what the gRPC server needs to host it."""

    service: AdminService
    audit: AuditTrail
    max_message_bytes: int
    # The published archives, pruned by sidecar.app.retention (None: not kept here).
    revisions: RevisionStore | None = None


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
        audit = AuditTrail(log, registry)
        limit = settings.rate_limit
        refusals = settings.audit_refusals
        service = AdminService(
            authenticator=Authenticator(
                settings.tokens, require_tls=settings.tls is not None and settings.require_tls
            ),
            authorizer=authorizer,
            validator=validator_for(
                config,
                verification_key,
                max_bytes=settings.max_bundle_bytes,
                max_unpacked_bytes=settings.max_unpacked_bytes,
                limits_from="policy.admin",
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
            limiter=CallRateLimiter(
                RateLimit(limit.rate, limit.burst, limit.max_identities, "policy.admin.rate_limit"),
                surface="admin",
                metric=rate_limited_counter(registry),
            ),
            parse_timeout_s=settings.parse_timeout_s,
            refusals=RefusalWindow(
                refusals.per_window,
                refusals.window_s,
                refusals.max_rows_per_window,
                limit.max_identities,
            ),
        )
        if managed is not None and policy.bundle.service is None and managed.bundle_path:
            raw = await asyncio.to_thread(Path(managed.bundle_path).read_bytes)
            await service.adopt(raw, "sidecar:startup")
        try:
            yield AdminRuntime(
                service, audit, settings.max_bundle_bytes + _TRANSPORT_MARGIN, revisions
            )
        finally:
            await service.close()  # refusal summaries still held back reach the audit log
    finally:
        await authorizer.close()
        await backend.close()


async def listeners(config: Config) -> tuple[Listener, ...]:
    """Return the listeners beside policy.listen: the admin and data-plane mTLS ones, the socket."""
    found: list[Listener] = []
    admin, auth = config.policy.admin, config.policy.auth
    if admin.tls is not None and admin.listen:
        tls = admin.tls
        credentials = await asyncio.to_thread(
            tls_credentials, "policy.admin.tls", tls.cert_file, tls.key_file, tls.client_ca_file
        )
        found.append(Listener("admin-tls", admin.listen, credentials))
    if auth is not None and auth.tls is not None and auth.listen:
        tls = auth.tls
        credentials = await asyncio.to_thread(
            tls_credentials, "policy.auth.tls", tls.cert_file, tls.key_file, tls.client_ca_file
        )
        found.append(Listener("tls", auth.listen, credentials))
    if auth is not None and auth.unix is not None:
        unix = auth.unix
        found.append(
            Listener("unix", f"unix:{unix.path}", bound=f"unix:{unix.subject}", mode=unix.file_mode)
        )
    return tuple(found)


@contextlib.asynccontextmanager
async def data_plane_gate(
    config: Config, *, opa_url: str, registry: CollectorRegistry, opa_token: str | None = None
) -> AsyncIterator[DataPlaneGate | None]:
    """Yield the gate PolicyService calls pass with policy.auth (None without: trusted callers).

    ``opa_token`` is the managed OPA's API token (None: an external OPA).
    """
    auth = config.policy.auth
    if auth is None:
        yield None
        return
    refusals = Counter(
        "policy_sidecar_data_plane_refusals",
        "PolicyService calls refused by policy.auth, by action and error code.",
        ["action", "code"],
        registry=registry,
    )
    authorizer = OpaAuthorizer(
        opa_url, timeout_s=config.policy.opa.timeout_ms / 1000, token=opa_token
    )
    scope = TenantScope(
        dict(config.policy.tenancy.prefixes),
        {f.name: tuple(f.tenants) for f in config.inventory()},
    )
    failures, limiter = _data_plane_limiters(auth, registry)
    try:
        yield DataPlaneGate(
            Authenticator(auth.tokens, "policy.auth.tokens", require_tls=False),
            authorizer,
            scope,
            on_refused=lambda action, code: refusals.labels(action=action, code=code).inc(),
            failures=failures,
            limiter=limiter,
        )
    finally:
        await authorizer.close()


def _data_plane_limiters(
    auth: AuthSettings, registry: CollectorRegistry
) -> tuple[CallRateLimiter, CallRateLimiter | None]:
    """The gate's limiters: failed authentications per peer, and calls per identity if set."""
    # Its own metric (the admin limiter's is registered once per registry by admin_runtime).
    metric = Counter(
        "policy_sidecar_data_plane_rate_limited_calls",
        "PolicyService calls refused RESOURCE_EXHAUSTED before authorisation: a peer over "
        "policy.auth.failed_auth_limit (unauthenticated) or an identity over "
        "policy.auth.rate_limit (authenticated).",
        ["surface", "caller"],
        registry=registry,
    )
    failed = auth.failed_auth_limit
    limit = auth.rate_limit
    return (
        CallRateLimiter(
            RateLimit(
                failed.rate, failed.burst, failed.max_identities, "policy.auth.failed_auth_limit"
            ),
            surface="policy",
            metric=metric,
        ),
        None
        if limit is None
        else CallRateLimiter(
            RateLimit(limit.rate, limit.burst, limit.max_identities, "policy.auth.rate_limit"),
            surface="policy",
            metric=metric,
        ),
    )


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
