"""Crash storm: SIGKILL the sidecar at random points while images keep arriving, restart it each time.

A pusher tags images in ``ci`` at a steady pace (each tag push is a webhook event) while a seeded
RNG picks kill moments: some during startup, most while it serves and copies. After every kill —
while no sidecar runs, so the registries are frozen — no destination tag may point at an
incomplete image. At the end every pushed tag must have exactly its jobs, each succeeded once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tests.fault.check import (
    account,
    converge,
    half_written,
    intent,
    list_jobs,
    placement,
    wall_time,
)
from tests.fault.figures import FaultFigures, figures
from tests.fault.load import decide_load
from tests.fault.process import succeeded_attempts
from tests.fault.world import (
    DESTINATIONS,
    Pushed,
    World,
    decide_deadline_s,
    fault_world,
    push_one,
    settings,
)
from tests.support.fleet import registry_fleet

__all__ = ["CrashSize", "crash_storm"]

_SECONDS_PER_KILL = 4.0  # a restart (bundle build, OPA start) plus a while of serving


@dataclass(frozen=True)
class CrashSize:
    """How big a storm: images pushed, kills, the RNG seed, and the big layer of each image."""

    images: int
    kills: int
    seed: int = 5
    layer_kib: int = 256
    # Requests/s the sidecar may send each destination: slow enough that kills land mid-copy.
    destination_rps: float = 10.0
    converge_timeout_s: float = 180.0


async def _push_paced(world: World, pushed: list[Pushed], size: CrashSize) -> float:
    """Push the images in small bursts spread over the expected length of the kill phase.

    Returns when the last push ended (epoch seconds).
    """
    rng = random.Random(size.seed + 1)  # noqa: S311 - reproducible, not secret
    gap = size.kills * _SECONDS_PER_KILL / max(1, size.images)
    for n in range(size.images):
        pushed.append(await push_one(world.ci, f"storm/app{n}", rng, layer_kib=size.layer_kib))
        if rng.random() < 0.3:  # bursts of about three images, then a pause as long
            await asyncio.sleep(rng.uniform(0, 6 * gap))
    return time.time()


async def _running_jobs(world: World, since: float) -> set[str]:
    """Ids of the jobs this incarnation (started at ``since``, epoch s) is copying now.

    A job still ``running`` under a killed incarnation's lease was last written before ``since``.
    """
    try:
        jobs = await list_jobs(world.stub)
    except Exception:  # not serving yet
        return set()
    return {j.job_id for j in jobs if j.state == "running" and wall_time(j.updated_at) >= since}


async def _copy_in_flight(world: World, since: float, timeout_s: float) -> None:
    """Return once this incarnation copies something (or after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await _running_jobs(world, since):
            return
        await asyncio.sleep(0.05)


async def crash_storm(root: Path, size: CrashSize) -> FaultFigures:
    """Run the storm under ``root``; return its figures (violations say what broke)."""
    rng = random.Random(size.seed)  # noqa: S311 - reproducible, not secret
    limits = {name: size.destination_rps for name in DESTINATIONS}
    policy = settings(replication={"registry_rate_limit_rps": limits})
    began = time.monotonic()
    phases: Counter[str] = Counter()
    recover: list[float] = []
    broken: list[str] = []
    interrupted: set[str] = set()
    with registry_fleet(root / "fleet") as fleet:
        async with fault_world(fleet, root, policy) as world:
            pushed: list[Pushed] = []
            deadline = decide_deadline_s(policy)
            async with decide_load(
                fleet.grpc_address, pushed, deadline_s=deadline, clients=1, seed=size.seed
            ) as load:
                pusher = asyncio.create_task(_push_paced(world, pushed, size))
                restarted, restarted_wall = time.monotonic(), time.time()
                for k in range(size.kills):
                    roll = rng.random()
                    if k > 0 and roll < 0.25:
                        await asyncio.sleep(rng.uniform(0.1, 1.5))
                        phase = "startup" if world.sidecar.alive else "exited"
                    else:
                        await world.sidecar.wait_ready()
                        recover.append(time.monotonic() - restarted)
                        if roll < 0.75:  # aim at a copy in flight, at a random point of it
                            await _copy_in_flight(world, restarted_wall, timeout_s=4.0)
                            await asyncio.sleep(rng.uniform(0.0, 0.4))
                        else:
                            await asyncio.sleep(rng.uniform(0.2, 2.5))
                        running = await _running_jobs(world, restarted_wall)
                        interrupted |= running
                        phase = "mid-copy" if running else "idle"
                    phases[phase] += 1
                    world.sidecar.kill()
                    # Nothing writes to the registries now: every tag must be whole.
                    broken += await half_written(world.clients, list(pushed))
                    world.sidecar.start()
                    restarted, restarted_wall = time.monotonic(), time.time()
                await world.sidecar.wait_ready()
                recover.append(time.monotonic() - restarted)
                last_push = await pusher
                expected = await intent(world.stub, pushed)
                jobs, converge_s = await converge(
                    world.stub,
                    expected,
                    size.converge_timeout_s,
                    since=max(restarted_wall, last_push),
                )
            place = await placement(world.clients, pushed, expected)
            successes = succeeded_attempts(world.sidecar.log_path)
    retried = sum(j.attempts >= 2 for j in jobs)
    notes = (
        f"{size.images} images pushed through the webhook, {size.kills} SIGKILLs "
        f"({', '.join(f'{n} {p}' for p, n in sorted(phases.items()))}), "
        f"{len(interrupted)} jobs were being copied at a kill, {retried} jobs ran more than "
        "one attempt; "
        "recover = restart until serving, converged = after the last restart and push"
    )
    return figures(
        "sidecar SIGKILL storm",
        injections=size.kills,
        load=load,
        jobs=account(jobs, expected, successes),
        place=place,
        recover_s=max(recover, default=None),
        converge_s=converge_s,
        wall_s=time.monotonic() - began,
        notes=notes,
        extra=[f"after a kill: {b}" for b in sorted(set(broken))[:5]],
        details={
            "images": len(pushed),
            "kills_mid_copy": phases["mid-copy"],
            "kills_at_startup": phases["startup"],
            "jobs_interrupted": len(interrupted),
            "jobs_taken_over": retried,
        },
    )
