"""Tenant usage measured from the registries: the bytes of each tenant's copies, per pass.

Registries store content by digest, so a digest held under several tags or repositories of one
registry occupies it once: usage counts each (registry, digest) once. Only copies count, in the
observed registries that are not sources (the originals are the tenant's input, not its copies).
A tenant's digests are those of the source images its decisions attributed to it
(``input.image.tenant``: label or repository prefix).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence

from sidecar.model.decision import PolicyInput, TenantUsage
from sidecar.reconcile.observe import Observation

__all__ = ["measured_usage", "with_measured_usage"]


def measured_usage(
    inputs: Sequence[PolicyInput], observation: Observation, sources: Collection[str]
) -> dict[str, int]:
    """Return the bytes each tenant's copies occupy in the observed non-source registries."""
    owners: dict[str, set[str]] = {}  # digest → the tenants it was attributed to
    used: dict[str, int] = {}
    for policy_input in inputs:
        tenant = policy_input.image.tenant
        if tenant:
            owners.setdefault(policy_input.image.ref.digest, set()).add(tenant)
            used.setdefault(tenant, 0)
    held: dict[tuple[str, str], int] = {}  # (registry, digest) → size: one copy per registry
    for tag in observation.tags:
        if tag.registry not in sources and tag.digest in owners:
            held.setdefault((tag.registry, tag.digest), tag.size_bytes)
    for (_, digest), size in held.items():
        for tenant in owners[digest]:
            used[tenant] += size
    return used


def with_measured_usage(
    policy_input: PolicyInput, measured: Mapping[str, int], limits: Mapping[str, TenantUsage]
) -> PolicyInput:
    """Return ``policy_input`` with ``tenant.storage_used_bytes`` = its tenant's measured bytes.

    The limit stays what enrichment found (the configured one), else the configured one, else 0
    (no limit). An input without a tenant, or whose tenant was not measured, is unchanged.
    """
    tenant = policy_input.image.tenant
    if not tenant or tenant not in measured:
        return policy_input
    known = policy_input.tenant if policy_input.tenant is not None else limits.get(tenant)
    limit = known.storage_limit_bytes if known is not None and known.id == tenant else 0
    usage = TenantUsage(tenant, measured[tenant], limit)
    return dataclasses.replace(policy_input, tenant=usage)
