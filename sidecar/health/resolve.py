"""ResolvePull: where a client should pull an image now — the DR read path.

Candidates are every inventory registry under the image's repository, plus every destination a
copy of the digest succeeded to (a legacy rule may have renamed the repository). Healthy ones are
asked with a HEAD by digest; the answer is the *nearest* healthy holder:

1. a registry in the client's region (``us-east-1`` = ``us-east-1``),
2. else one in the same area — the region's first dash-separated part (``eu-west-1`` and
   ``eu-central-1`` are both ``eu``; ``europe-west1`` is ``europe``),
3. else any other;

within a tier the lower ``egress_cost_per_gb`` wins, then the name, so answers are stable.
No healthy holder is an error naming every registry and why it was passed over: NotFound when
nothing checked holds it, RegistryUnavailable when only unhealthy registries might.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sidecar.config import Limits, RegistryConfig
from sidecar.enrich import validate_request
from sidecar.errors import InvalidArgument, NotFound, RegistryUnavailable
from sidecar.health.source import HealthView
from sidecar.model.decision import DecideRequest, ImageRef, RegistryFacts
from sidecar.oci import RegistryClients
from sidecar.typing import Placements

__all__ = ["PullAnswer", "PullCandidate", "PullResolver", "area", "nearest", "proximity"]

Proximity = Literal["same_region", "same_area", "remote"]
_TIERS: tuple[Proximity, ...] = ("same_region", "same_area", "remote")


def area(region: str) -> str:
    """The region's area: its first dash-separated part, lower case (``eu-west-1`` → ``eu``)."""
    return region.strip().lower().split("-", 1)[0]


def proximity(client_region: str, region: str) -> Proximity:
    """How near a registry in ``region`` is to a client in ``client_region``."""
    if not client_region or not region:
        return "remote"
    if client_region.strip().lower() == region.strip().lower():
        return "same_region"
    return "same_area" if area(client_region) == area(region) else "remote"


def nearest(registries: Sequence[RegistryFacts], client_region: str) -> list[RegistryFacts]:
    """``registries`` nearest first: region, then area, then egress cost, then name."""
    return sorted(
        registries,
        key=lambda r: (
            _TIERS.index(proximity(client_region, r.region)),
            r.egress_cost_per_gb,
            r.name,
        ),
    )


@dataclass(frozen=True, slots=True)
class PullCandidate:
    """One place the image could be pulled from, and what the resolver found there."""

    registry: str
    repository: str
    region: str
    proximity: Proximity
    healthy: bool
    holds: bool | None  # None: not asked (unhealthy) or the HEAD failed
    problem: str  # why it is not the answer ("" for a healthy holder)
    pull_ref: str  # HOST/REPOSITORY@DIGEST, what `docker pull` takes


@dataclass(frozen=True, slots=True)
class PullAnswer:
    """The nearest healthy holder, the other healthy holders, and every candidate considered."""

    digest: str
    chosen: PullCandidate
    alternatives: tuple[PullCandidate, ...]
    candidates: tuple[PullCandidate, ...]


class PullResolver:
    """Answers ResolvePull from the inventory, the prober, the job store and HEAD requests."""

    def __init__(
        self,
        registries: Sequence[RegistryConfig],
        clients: RegistryClients,
        *,
        health: HealthView | None = None,
        store: Placements | None = None,
        timeout_s: float = 2.0,
    ) -> None:
        """Resolve over ``registries``; HEADs give up after ``timeout_s``."""
        self._configs = {r.name: r for r in registries}
        self._facts = tuple(r.facts for r in registries)
        self._clients, self._health, self._store = clients, health, store
        self._timeout_s = timeout_s

    def _healthy(self, facts: RegistryFacts) -> bool:
        return facts.healthy and (self._health is None or self._health.healthy(facts.name))

    async def resolve(self, image: ImageRef, client_region: str = "") -> PullAnswer:
        """Return where to pull ``image`` from now; raise NotFound/RegistryUnavailable if nowhere."""
        validate_request(DecideRequest(image=image), Limits(), self._facts)
        ordered = nearest(self._facts, client_region)
        digest = image.digest or await self._digest_of(image, ordered)
        pairs = [(f, image.repository) for f in ordered]
        if self._store is not None:
            by_name = {f.name: f for f in ordered}
            seen = {(f.name, repo) for f, repo in pairs}
            for name, repo in await self._store.placements(digest):
                if name in by_name and (name, repo) not in seen:
                    seen.add((name, repo))
                    pairs.append((by_name[name], repo))
            # Stable: each registry's own repository first, then the renamed ones.
            pairs.sort(key=lambda p: ordered.index(p[0]))
        candidates = await asyncio.gather(
            *(self._check(f, repo, digest, client_region) for f, repo in pairs)
        )
        holders = [c for c in candidates if c.healthy and c.holds]
        if holders:
            return PullAnswer(digest, holders[0], tuple(holders[1:]), tuple(candidates))
        what = f"{image.repository}@{digest}"
        summary = "; ".join(f"{c.registry}/{c.repository}: {c.problem}" for c in candidates)
        if any(not c.healthy for c in candidates):
            raise RegistryUnavailable(
                f"no healthy registry holds {what}; the ones that might are unavailable ({summary})"
            )
        raise NotFound(f"no registry holds {what} ({summary})")

    async def _check(
        self, facts: RegistryFacts, repository: str, digest: str, client_region: str
    ) -> PullCandidate:
        config = self._configs[facts.name]
        healthy = self._healthy(facts)
        holds: bool | None = None
        problem = "" if healthy else "registry is unhealthy (not asked)"
        if healthy:
            try:
                async with asyncio.timeout(self._timeout_s):
                    head = await self._clients.get(facts.name).head_manifest(repository, digest)
                holds = head is not None
                problem = "" if holds else "does not hold the digest"
            except TimeoutError:
                problem = f"HEAD timed out after {self._timeout_s:g} s"
            except Exception as exc:  # one registry failing must not fail the answer
                problem = f"HEAD failed: {exc}"
        return PullCandidate(
            registry=facts.name,
            repository=repository,
            region=facts.region,
            proximity=proximity(client_region, facts.region),
            healthy=healthy,
            holds=holds,
            problem=problem,
            pull_ref=f"{config.host or config.name}/{repository}@{digest}",
        )

    async def _digest_of(self, image: ImageRef, ordered: Sequence[RegistryFacts]) -> str:
        """Resolve the tag: at the image's own registry first, then at healthy others, nearest first."""
        home = [f for f in ordered if f.name == image.registry]
        others = [f for f in ordered if f.name != image.registry]
        problems: list[str] = []
        for facts in (*home, *others):
            if not self._healthy(facts):
                continue
            try:
                async with asyncio.timeout(self._timeout_s):
                    found = await self._clients.get(facts.name).head_manifest(
                        image.repository, image.tag
                    )
            except Exception as exc:
                problems.append(f"{facts.name}: {type(exc).__name__}: {exc}")
                continue
            if found is not None:
                return found.digest
        if not image.tag:
            raise InvalidArgument("image.tag", "a tag or a digest is required")
        detail = f" ({'; '.join(problems)})" if problems else ""
        raise NotFound(f"no healthy registry has the tag {image.repository}:{image.tag}{detail}")
