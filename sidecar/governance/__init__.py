"""Policy governance: the admin service (publish, rollback, audit), identities and OPA-decided authz."""

from __future__ import annotations

from sidecar.governance.admin import AdminService
from sidecar.governance.gate import Admission, DataPlaneGate, TenantScope
from sidecar.governance.identity import Credentials, PeerCertificate, certificate_from_pem
from sidecar.governance.ratelimit import CallRateLimiter, RateLimit, peer_bucket
from sidecar.governance.revisions import StoredRevision

__all__ = [
    "AdminService",
    "Admission",
    "CallRateLimiter",
    "Credentials",
    "DataPlaneGate",
    "PeerCertificate",
    "RateLimit",
    "StoredRevision",
    "TenantScope",
    "certificate_from_pem",
    "peer_bucket",
]
