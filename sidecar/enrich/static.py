"""The first enricher: the policy input from the request, its labels and the config alone.

It builds a base draft from the request and the configured inventory, then runs the static fact
sources. A registry-backed enricher later adds its own sources (OCI config labels, referrers, ECR
scan findings, a health prober) to the same list via ``extra_sources``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from opentelemetry import trace

from sidecar.config import Config
from sidecar.enrich.pipeline import EnrichmentReport, FactSource, apply_sources
from sidecar.enrich.rfc3339 import format_rfc3339
from sidecar.enrich.sources import RequestHealth, ScanLabels, TenantResolver, TenantUsageSource
from sidecar.model.decision import Caller, DecideRequest, ImageFacts, PolicyInput
from sidecar.telemetry import get_logger

__all__ = ["StaticEnricher", "base_draft", "static_sources"]

_log = get_logger("sidecar.enrich")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def base_draft(request: DecideRequest, config: Config, now: str) -> PolicyInput:
    """Return the policy input holding only what the request and the inventory state directly."""
    caller = request.caller
    return PolicyInput(
        now=now,
        event=request.event,
        image=ImageFacts(
            ref=request.image,
            labels=dict(request.labels),
            annotations=dict(request.annotations),
            created_at=request.created_at,
            size_bytes=request.size_bytes,
            platforms=tuple(request.platforms),
            present_at=tuple(request.present_at),
        ),
        registries=config.inventory(),
        access=dict(request.access),
        caller=Caller(subject=caller.subject, tenant=caller.tenant or None, roles=caller.roles),
    )


def static_sources(config: Config) -> tuple[FactSource, ...]:
    """Return the static sources in order: caller-observed health, scan labels, tenant, usage."""
    tenancy = config.policy.tenancy
    return (
        RequestHealth(),
        ScanLabels(),
        TenantResolver(tenancy.prefixes),
        TenantUsageSource(tenancy.usage),
    )


class StaticEnricher:
    """Implements typing.Enricher from the request and config alone."""

    def __init__(
        self,
        config: Config,
        clock: Callable[[], datetime] = _utc_now,
        *,
        extra_sources: Sequence[FactSource] = (),
        source_timeout_s: float | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        # Extra (registry-backed) sources run first, so their facts win over the label fallbacks.
        self._sources = (*extra_sources, *static_sources(config))
        self._timeout_s = source_timeout_s

    async def enrich_with_report(
        self, request: DecideRequest
    ) -> tuple[PolicyInput, EnrichmentReport]:
        """Return the policy input for ``request`` and how each fact source fared."""
        now = request.now or format_rfc3339(self._clock())
        draft = base_draft(request, self._config, now)
        return await apply_sources(self._sources, request, draft, timeout_s=self._timeout_s)

    async def enrich(self, request: DecideRequest) -> PolicyInput:
        """Return the policy input for ``request``; problems are logged, never raised."""
        policy_input, report = await self.enrich_with_report(request)
        # The decision span's child (policy.enrich) is current: a missing fact must be visible in
        # the trace of the decision it degraded, not only in a log line.
        span = trace.get_current_span()
        span.set_attribute("enrich.sources", list(report.applied))
        if report.failures:
            span.set_attribute("enrich.failed_sources", [f.source for f in report.failures])
            for finding in report.failures:
                span.add_event(
                    "enrichment source failed",
                    {"source": finding.source, "problem": finding.message},
                )
        for finding in report.warnings:
            _log.warning(
                "enrichment warning",
                source=finding.source,
                problem=finding.message,
                image=str(request.image),
            )
        for finding in report.failures:
            _log.error(
                "enrichment source failed",
                source=finding.source,
                problem=finding.message,
                image=str(request.image),
            )
        return policy_input
