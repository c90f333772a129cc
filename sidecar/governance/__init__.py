"""Policy governance: the admin service (publish, rollback, audit), identities and OPA-decided authz."""

from __future__ import annotations

from sidecar.governance.admin import AdminService, Credentials
from sidecar.governance.ratelimit import CallRateLimiter, RateLimit, peer_bucket
from sidecar.governance.revisions import StoredRevision

__all__ = [
    "AdminService",
    "CallRateLimiter",
    "Credentials",
    "RateLimit",
    "StoredRevision",
    "peer_bucket",
]
