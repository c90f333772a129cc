"""Network faults between the sidecar and one destination (``prod-us``), injected by proxies.

- throttling: the registry answers ``429`` with ``Retry-After: 1``, then bursts of ``503``;
  no retry of a throttled request may come sooner than the registry asked;
- a slow link: a TCP proxy adds latency and cuts connections mid-transfer (mid-blob);
- a partition: reads and the ``/v2/`` probe pass, every write is held unanswered; no write may
  be held past the client's request timeout, and the jobs complete once the partition heals.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fault.check import list_jobs, settle
from tests.fault.figures import FaultFigures, settled_figures
from tests.fault.load import DecideLoad, decide_load
from tests.fault.world import (
    Pushed,
    World,
    decide_deadline_s,
    fault_world,
    push_images,
    settings,
)
from tests.support.fleet import Fleet, registry_fleet
from tests.support.oci_proxy import oci_proxy
from tests.support.tcp_proxy import LinkFaults, tcp_proxy

__all__ = ["NetworkSize", "partition", "slow_link", "throttling"]

_TARGET = "prod-us"


@dataclass(frozen=True)
class NetworkSize:
    """Images per phase, how long a fault lasts, how many 503 bursts, and the RNG seed."""

    images: int
    fault_s: float = 3.0
    bursts: int = 3
    seed: int = 11
    converge_timeout_s: float = 120.0


@contextlib.asynccontextmanager
async def _proxied(
    fleet: Fleet, root: Path, policy: Mapping[str, Any], url: str, pushed: list[Pushed]
) -> AsyncIterator[tuple[World, DecideLoad]]:
    """A sidecar reaching ``prod-us`` through the proxy at ``url``, under Decide load."""
    async with (
        fault_world(fleet, root, policy, endpoints={_TARGET: url}) as world,
        decide_load(fleet.grpc_address, pushed, deadline_s=decide_deadline_s(policy)) as load,
    ):
        yield world, load


def early_retries(
    timeline: Sequence[tuple[float, str]],
    answered: Sequence[tuple[float, str, int]],
    retry_after_s: float,
) -> list[str]:
    """Requests repeated sooner than ``Retry-After`` after a 429 (the periodic probe excepted)."""
    early = []
    for at, what, status in answered:
        if status != 429 or what.endswith(" /v2/"):
            continue
        again = next((t for t, w in timeline if w == what and t > at), None)
        if again is not None and again - at < retry_after_s - 0.05:
            early.append(f"{what} retried {again - at:.2f} s after a 429 with Retry-After: 1")
    return early


async def throttling(root: Path, size: NetworkSize) -> FaultFigures:
    """429 with Retry-After, then bursts of 503, from ``prod-us``; return the figures."""
    rng = random.Random(size.seed)  # noqa: S311 - reproducible, not secret
    policy = settings()
    began = time.monotonic()
    pushed: list[Pushed] = []
    with registry_fleet(root / "fleet") as fleet:
        async with oci_proxy(fleet.url(_TARGET)) as proxy:
            async with _proxied(fleet, root, policy, proxy.url, pushed) as (world, load):
                proxy.faults.status, proxy.faults.retry_after = 429, "1"
                pushed += await push_images(world.ci, "throttle/a", size.images, rng)
                await asyncio.sleep(size.fault_s)
                proxy.faults.status, proxy.faults.retry_after = None, ""
                unthrottled = time.time()
                for b in range(size.bursts):
                    proxy.faults.status, proxy.faults.status_budget = 503, 6
                    pushed += await push_images(world.ci, f"throttle/b{b}", 2, rng)
                    await asyncio.sleep(size.fault_s / size.bursts)
                proxy.faults.status = None
                end = await settle(
                    world, pushed, timeout_s=size.converge_timeout_s, since=unthrottled
                )
            statuses = [s for _, _, s in proxy.answered]
            early = early_retries(proxy.timeline, proxy.answered, 1.0)
    notes = (
        f"{len(pushed)} images; prod-us answered {statuses.count(429)} x 429 (Retry-After: 1) "
        f"for {size.fault_s:g} s, then {statuses.count(503)} x 503 in {size.bursts} bursts; "
        "converged = after the 429s stopped"
    )
    return settled_figures(
        "429 + Retry-After, 503 bursts",
        end,
        injections=1 + size.bursts,
        load=load,
        began=began,
        notes=notes,
        extra=early[:5],
        details={
            "images": len(pushed),
            "answered_429": statuses.count(429),
            "answered_503": statuses.count(503),
        },
    )


async def slow_link(root: Path, size: NetworkSize) -> FaultFigures:
    """Copies to ``prod-us`` over a link with latency that cuts connections; return the figures."""
    rng = random.Random(size.seed)  # noqa: S311 - reproducible, not secret
    policy = settings()
    began = time.monotonic()
    pushed: list[Pushed] = []
    link = LinkFaults(latency_s=0.02, cut_after=(32 << 10, 384 << 10))
    with registry_fleet(root / "fleet") as fleet:
        host, _, port = fleet.servers[_TARGET].host.rpartition(":")
        async with tcp_proxy(host, int(port), seed=size.seed, faults=link) as proxy:
            async with _proxied(fleet, root, policy, proxy.url, pushed) as (world, load):
                pushed += await push_images(world.ci, "slow/app", size.images, rng, layer_kib=256)
                last_push = time.time()
                end = await settle(
                    world, pushed, timeout_s=size.converge_timeout_s, since=last_push
                )
            cuts, connections = proxy.cuts, proxy.connections
    notes = (
        f"{len(pushed)} images with a 256 KiB layer; 20 ms per 16 KiB chunk each way, each "
        f"connection cut after 32-384 KiB: {cuts} of {connections} connections cut; "
        "the link stays bad throughout, converged = after the last push"
    )
    return settled_figures(
        "slow link, connections cut mid-blob",
        end,
        injections=cuts,
        load=load,
        began=began,
        notes=notes,
        details={"images": len(pushed), "connections": connections, "cuts": cuts},
    )


async def partition(root: Path, size: NetworkSize) -> FaultFigures:
    """Writes to ``prod-us`` hang while its probe passes; heal; return the figures."""
    rng = random.Random(size.seed)  # noqa: S311 - reproducible, not secret
    timeout_s = 2.0
    policy = settings(replication={"request_timeout_s": timeout_s})
    began = time.monotonic()
    pushed: list[Pushed] = []
    parked = 0
    with registry_fleet(root / "fleet") as fleet:
        async with oci_proxy(fleet.url(_TARGET)) as proxy:
            async with _proxied(fleet, root, policy, proxy.url, pushed) as (world, load):
                proxy.faults.partition = True
                pushed += await push_images(world.ci, "part/app", size.images, rng)
                waited = time.monotonic()
                while time.monotonic() - waited < size.fault_s:
                    jobs = await list_jobs(world.stub)
                    parked = max(parked, sum(j.state == "parked" for j in jobs))
                    await asyncio.sleep(0.25)
                proxy.faults.partition = False
                healed = time.time()
                end = await settle(world, pushed, timeout_s=size.converge_timeout_s, since=healed)
            held = list(proxy.held)
    hung = [f"a write held {h:.2f} s (request timeout {timeout_s:g} s)" for h in held]
    notes = (
        f"{len(pushed)} images; for {size.fault_s:g} s prod-us's /v2/ probe passed but "
        f"{len(held)} writes hung until the client's {timeout_s:g} s timeout (longest "
        f"{max(held, default=0):.2f} s); up to {parked} jobs parked at once; "
        "converged = after the partition healed"
    )
    return settled_figures(
        "partition: probe OK, uploads hang",
        end,
        injections=1,
        load=load,
        began=began,
        notes=notes,
        hung=[h for h, s in zip(hung, held, strict=True) if s > timeout_s + 1.0][:5],
        details={"images": len(pushed), "writes_held": len(held), "parked_max": parked},
    )
