"""The static fact sources: facts from the request, its labels and the configuration only.

Each is a :class:`~sidecar.enrich.pipeline.FactSource`. A source fills a fact only when no
earlier source did, so a registry-backed source placed before it (ECR scan findings, OCI config
labels) takes precedence and these remain the fallback.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from sidecar.enrich.pipeline import Contribution
from sidecar.enrich.rfc3339 import parse_rfc3339
from sidecar.model.decision import DecideRequest, PolicyInput, ScanFacts, TenantUsage

__all__ = [
    "SCAN_LABELS",
    "TENANT_LABEL",
    "RequestHealth",
    "ScanLabels",
    "TenantResolver",
    "TenantUsageSource",
    "scan_from_labels",
]

TENANT_LABEL = "tenant"
_STATUS, _COMPLETED, _CRITICAL, _HIGH = (
    "security.scan.status",
    "security.scan.completed-at",
    "security.scan.critical",
    "security.scan.high",
)
SCAN_LABELS = (_STATUS, _COMPLETED, _CRITICAL, _HIGH)


def _count(labels: Mapping[str, str], key: str) -> int | str:
    """Return the count under ``key`` (missing → 0), or a problem description."""
    text = labels.get(key)
    if text is None:
        return 0
    stripped = text.strip()
    if not stripped.isdigit():
        return f"label {key}={text!r} is not a non-negative integer"
    return int(stripped)


def scan_from_labels(labels: Mapping[str, str]) -> tuple[ScanFacts | None, str | None]:
    """Return (scan facts, warning) from the ``security.scan.*`` labels.

    No status label → (None, None), or a warning when other scan labels are present. Any invalid
    value → (None, warning): an unreadable scan counts as no scan, which the policy gates.
    """
    status = labels.get(_STATUS)
    if status is None:
        stray = [k for k in SCAN_LABELS if k in labels]
        return None, (f"scan labels {stray} ignored: no {_STATUS} label" if stray else None)
    normalised = status.strip().lower()
    if normalised not in ("passed", "failed"):
        return None, f"label {_STATUS}={status!r} is not passed or failed; scan ignored"
    completed = labels.get(_COMPLETED)
    if completed is None or parse_rfc3339(completed.strip()) is None:
        return None, f"label {_COMPLETED}={completed!r} is not an RFC 3339 time; scan ignored"
    critical, high = _count(labels, _CRITICAL), _count(labels, _HIGH)
    for value in (critical, high):
        if isinstance(value, str):
            return None, f"{value}; scan ignored"
    verdict: Literal["passed", "failed"] = "passed" if normalised == "passed" else "failed"
    return ScanFacts(verdict, completed.strip(), int(critical), int(high), "label"), None


def _with_scan(draft: PolicyInput, scan: ScanFacts) -> PolicyInput:
    return dataclasses.replace(draft, image=dataclasses.replace(draft.image, scan=scan))


def _with_tenant(draft: PolicyInput, tenant: str) -> PolicyInput:
    return dataclasses.replace(draft, image=dataclasses.replace(draft.image, tenant=tenant))


@dataclass(frozen=True, slots=True)
class RequestHealth:
    """Overrides registries' ``healthy`` with what the caller observed (request.registry_health)."""

    name: str = "request.registry_health"

    async def contribute(self, request: DecideRequest, draft: PolicyInput) -> Contribution:
        """Return the draft with the caller's health observations applied."""
        if not request.registry_health:
            return Contribution(draft)
        registries = tuple(
            dataclasses.replace(r, healthy=request.registry_health[r.name])
            if r.name in request.registry_health
            else r
            for r in draft.registries
        )
        return Contribution(dataclasses.replace(draft, registries=registries))


@dataclass(frozen=True, slots=True)
class ScanLabels:
    """Scan facts from the ``security.scan.*`` labels (source ``label``)."""

    name: str = "labels.scan"

    async def contribute(self, request: DecideRequest, draft: PolicyInput) -> Contribution:
        """Return the draft with label scan facts, unless an earlier source found a scan."""
        if draft.image.scan is not None:
            return Contribution(draft)
        scan, warning = scan_from_labels(draft.image.labels)
        warnings = (warning,) if warning else ()
        return Contribution(_with_scan(draft, scan) if scan else draft, warnings)


@dataclass(frozen=True, slots=True)
class TenantResolver:
    """The image's tenant: label ``tenant``, else the longest matching repository prefix."""

    prefixes: Mapping[str, str]
    name: str = "tenancy.tenant"

    async def contribute(self, request: DecideRequest, draft: PolicyInput) -> Contribution:
        """Return the draft with ``image.tenant`` set when a label or prefix names one."""
        if draft.image.tenant is not None:
            return Contribution(draft)
        labelled = draft.image.labels.get(TENANT_LABEL, "").strip()
        if labelled:
            return Contribution(_with_tenant(draft, labelled))
        repository = draft.image.ref.repository
        # Longest prefix wins, so "acme/" can be shared while "acme/secret/" belongs to another.
        # Probing the repository's own prefixes, longest first, costs len(repository) dict
        # lookups instead of a scan of every configured prefix (thousands of tenants).
        for end in range(len(repository), 0, -1):
            tenant = self.prefixes.get(repository[:end])
            if tenant is not None:
                return Contribution(_with_tenant(draft, tenant))
        return Contribution(draft)


@dataclass(frozen=True, slots=True)
class TenantUsageSource:
    """The tenant's storage usage: from the request, else configured for the image's tenant."""

    usage: Mapping[str, TenantUsage]
    name: str = "tenancy.usage"

    async def contribute(self, request: DecideRequest, draft: PolicyInput) -> Contribution:
        """Return the draft with ``tenant`` usage filled when known."""
        if draft.tenant is not None:
            return Contribution(draft)
        if request.tenant_usage is not None:
            return Contribution(dataclasses.replace(draft, tenant=request.tenant_usage))
        tenant = draft.image.tenant
        configured = self.usage.get(tenant) if tenant is not None else None
        return Contribution(dataclasses.replace(draft, tenant=configured) if configured else draft)
