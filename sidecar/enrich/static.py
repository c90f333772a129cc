"""The enricher: the policy input from observation, the request, its labels and the config.

It runs in two phases. First the observation sources (``extra_sources``: the health prober, OCI
config labels and referrers, ECR scan findings, pull counts) fill a draft holding only the image
reference, so what they read is what the registry says. Then the request's image facts join the
observed ones by the rules of ``enrich/trust.py`` (observed facts win; gate facts need an
observation or an override role), and the static sources (caller-observed health, scan labels,
tenant, usage) complete the draft. The provenance of every fact comes out alongside.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from opentelemetry import trace

from sidecar.config import Config
from sidecar.enrich.pipeline import EnrichmentReport, FactSource, apply_sources
from sidecar.enrich.rfc3339 import format_rfc3339
from sidecar.enrich.sources import RequestHealth, ScanLabels, TenantResolver, TenantUsageSource
from sidecar.enrich.trust import FactTrust, merge_request_image, provenance_of, strip_overrides
from sidecar.model.decision import (
    Caller,
    DecideRequest,
    FactProvenance,
    ImageFacts,
    PolicyInput,
)
from sidecar.telemetry import get_logger

__all__ = ["StaticEnricher", "base_draft", "static_sources", "trust_of"]

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


def trust_of(config: Config) -> FactTrust:
    """Return the fact trust ``policy.facts`` configures."""
    facts = config.policy.facts
    return FactTrust(frozenset(facts.override_roles), tuple(facts.gate_labels))


def _joined(first: EnrichmentReport, second: EnrichmentReport) -> EnrichmentReport:
    return EnrichmentReport(
        applied=(*first.applied, *second.applied),
        warnings=(*first.warnings, *second.warnings),
        failures=(*first.failures, *second.failures),
        observed={**first.observed, **second.observed},
    )


class StaticEnricher:
    """Implements typing.Enricher: observation sources, then the request, then static sources."""

    def __init__(
        self,
        config: Config,
        clock: Callable[[], datetime] = _utc_now,
        *,
        extra_sources: Sequence[FactSource] = (),
        source_timeout_s: float | None = None,
        trust: FactTrust | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        # Observation (registry-backed) sources run first, on a draft without the request's
        # image facts, so what they report is what they observed.
        self._observers = tuple(extra_sources)
        self._sources = static_sources(config)
        self._timeout_s = source_timeout_s
        self._trust = trust if trust is not None else trust_of(config)

    async def enrich_with_provenance(
        self, request: DecideRequest
    ) -> tuple[PolicyInput, EnrichmentReport, FactProvenance]:
        """Return the policy input for ``request``, how each source fared, and each fact's origin."""
        request, dropped = strip_overrides(request, self._trust)
        now = request.now or format_rfc3339(self._clock())
        draft = base_draft(request, self._config, now)
        # present_at is no image fact a source observes: it is where a reconcile found copies
        # (DESIGN §3.1), and only the reconciler acts on the removals it yields.
        bare = dataclasses.replace(
            draft, image=ImageFacts(ref=request.image, present_at=draft.image.present_at)
        )
        bare, observing = await apply_sources(
            self._observers, request, bare, timeout_s=self._timeout_s
        )
        draft, origins, refused = merge_request_image(
            bare, request, observing.observed, self._trust
        )
        draft, completing = await apply_sources(
            self._sources, request, draft, timeout_s=self._timeout_s
        )
        report = _joined(observing, completing)
        provenance = provenance_of(draft, request, origins, report.observed, (*dropped, *refused))
        return draft, report, provenance

    async def enrich_with_report(
        self, request: DecideRequest
    ) -> tuple[PolicyInput, EnrichmentReport]:
        """Return the policy input for ``request`` and how each fact source fared."""
        policy_input, report, _ = await self.enrich_with_provenance(request)
        return policy_input, report

    async def enrich(self, request: DecideRequest) -> PolicyInput:
        """Return the policy input for ``request``; problems are logged, never raised."""
        policy_input, _ = await self.enrich_traced(request)
        return policy_input

    async def enrich_traced(self, request: DecideRequest) -> tuple[PolicyInput, FactProvenance]:
        """Return the policy input and its provenance; problems are logged and traced, never raised."""
        policy_input, report, provenance = await self.enrich_with_provenance(request)
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
        if provenance.dropped:
            # A dropped request fact is what an attacker's forgery looks like: visible, not loud.
            span.set_attribute("enrich.dropped_facts", [d.fact for d in provenance.dropped])
            _log.info(
                "request facts dropped",
                facts=[d.fact for d in provenance.dropped],
                caller=request.caller.subject,
                image=str(request.image),
            )
        return policy_input, provenance
