"""The enrichment source that puts probed registry health into ``input.registries[].healthy``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

from sidecar.enrich.pipeline import Contribution
from sidecar.model.decision import DecideRequest, PolicyInput

__all__ = ["HealthView", "ProbedHealth"]


class HealthView(Protocol):
    """Answers whether a registry is healthy right now."""

    def healthy(self, registry: str) -> bool:
        """Whether decisions may treat ``registry`` as healthy."""
        ...


@dataclass(frozen=True, slots=True)
class ProbedHealth:
    """Marks registries the prober found down as unhealthy.

    It only ever lowers health: a registry configured ``healthy: false`` (maintenance) stays
    down whatever the probe says. It runs before the request's ``registry_health``, so what a
    caller observed and supplied still wins.
    """

    view: HealthView
    name: str = "health.probe"

    async def contribute(self, request: DecideRequest, draft: PolicyInput) -> Contribution:
        """Return ``draft`` with probed-down registries marked unhealthy."""
        registries = tuple(
            dataclasses.replace(r, healthy=False)
            if r.healthy and not self.view.healthy(r.name)
            else r
            for r in draft.registries
        )
        if registries == draft.registries:
            return Contribution(draft)
        return Contribution(dataclasses.replace(draft, registries=registries))
