"""The enrichment seam: fact sources applied in order to a draft policy input, failures isolated.

A :class:`FactSource` receives the request and the draft built so far and returns a new draft plus
warnings. Sources compose in order, so a later source sees what earlier ones found (scan facts
read from labels that an OCI-config source added, say). A source that raises or overruns its
deadline is skipped — the draft stays as it was before it — and the failure is reported, because
a missing fact must degrade a decision (e.g. to SCAN_MISSING), never block it.

A source that reads a fact from the world (the registry, its scanner) names the fact paths it
observed in its contribution; the report maps each to the source, so the enricher knows which
facts were observed and which only the request states (``enrich/trust.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sidecar.model.decision import DecideRequest, PolicyInput

__all__ = ["Contribution", "EnrichmentReport", "FactSource", "Finding", "apply_sources"]


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one source returns: the updated draft and any warnings about facts it could not use."""

    draft: PolicyInput
    warnings: tuple[str, ...] = ()
    # Fact paths this source read from the world (e.g. "image.labels", "image.scan").
    observed: tuple[str, ...] = ()


class FactSource(Protocol):
    """Contributes facts to the draft policy input (labels, scan, tenant, health, usage, …)."""

    @property
    def name(self) -> str:
        """A stable name for reports and logs, e.g. ``labels.scan``."""
        ...

    async def contribute(self, request: DecideRequest, draft: PolicyInput) -> Contribution:
        """Return ``draft`` with this source's facts added; may raise, the caller isolates it."""
        ...


@dataclass(frozen=True, slots=True)
class Finding:
    """A warning or failure of one source."""

    source: str
    message: str


@dataclass(frozen=True, slots=True)
class EnrichmentReport:
    """How enrichment went: sources applied, facts ignored (warnings), sources that failed."""

    applied: tuple[str, ...] = ()
    warnings: tuple[Finding, ...] = ()
    failures: tuple[Finding, ...] = ()
    observed: Mapping[str, str] = field(default_factory=dict)  # fact path → source name


async def apply_sources(
    sources: Sequence[FactSource],
    request: DecideRequest,
    draft: PolicyInput,
    *,
    timeout_s: float | None = None,
) -> tuple[PolicyInput, EnrichmentReport]:
    """Apply ``sources`` in order to ``draft``; each gets at most ``timeout_s`` seconds."""
    applied: list[str] = []
    warnings: list[Finding] = []
    failures: list[Finding] = []
    observed: dict[str, str] = {}
    for source in sources:
        try:
            async with asyncio.timeout(timeout_s):
                contribution = await source.contribute(request, draft)
        except TimeoutError:
            failures.append(Finding(source.name, f"timed out after {timeout_s:g} s"))
            continue
        except Exception as exc:  # one broken source must not fail the decision
            failures.append(Finding(source.name, f"{type(exc).__name__}: {exc}"))
            continue
        draft = contribution.draft
        applied.append(source.name)
        warnings.extend(Finding(source.name, w) for w in contribution.warnings)
        observed.update(dict.fromkeys(contribution.observed, source.name))
    return draft, EnrichmentReport(tuple(applied), tuple(warnings), tuple(failures), observed)
