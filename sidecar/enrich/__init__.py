"""Enrichment: validating a request and turning it into the complete policy input (DESIGN §3.1)."""

from __future__ import annotations

from sidecar.enrich.pipeline import (
    Contribution,
    EnrichmentReport,
    FactSource,
    Finding,
    apply_sources,
)
from sidecar.enrich.rfc3339 import format_rfc3339, parse_rfc3339
from sidecar.enrich.sources import (
    RequestHealth,
    ScanLabels,
    TenantResolver,
    TenantUsageSource,
    scan_from_labels,
)
from sidecar.enrich.static import StaticEnricher, base_draft, static_sources, trust_of
from sidecar.enrich.trust import (
    DEFAULT_GATE_LABELS,
    DEFAULT_OVERRIDE_ROLES,
    OVERRIDE_FACTS,
    FactTrust,
    check_request_facts,
    merge_request_image,
)
from sidecar.enrich.validate import validate_request

__all__ = [
    "DEFAULT_GATE_LABELS",
    "DEFAULT_OVERRIDE_ROLES",
    "OVERRIDE_FACTS",
    "Contribution",
    "EnrichmentReport",
    "FactSource",
    "FactTrust",
    "Finding",
    "RequestHealth",
    "ScanLabels",
    "StaticEnricher",
    "TenantResolver",
    "TenantUsageSource",
    "apply_sources",
    "base_draft",
    "check_request_facts",
    "format_rfc3339",
    "merge_request_image",
    "parse_rfc3339",
    "scan_from_labels",
    "static_sources",
    "trust_of",
    "validate_request",
]
