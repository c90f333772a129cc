"""Two-replica storm: two sidecars on one PostgreSQL, SIGKILLs across both while work arrives.

Images are pushed to ``ci`` (each tag push notifies both replicas' endpoints) and ``Replicate``
is called on one replica or the other while a seeded RNG SIGKILLs a random replica at random
moments and restarts it; now and then both are down at once. The shared store's leases (jobs,
inbox events) are the only coordination. At the end every pushed tag must have exactly its jobs,
each succeeded once over both replicas' logs, every event completed, nothing stray or half-written.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import grpc

from sidecar._proto import policy_pb2 as pb
from tests.fault.check import account, converge, half_written, intent, placement
from tests.fault.figures import FaultFigures, figures
from tests.fault.load import DecideLoad
from tests.fault.replicas import Replica, ReplicaWorld, replica_world
from tests.fault.world import Pushed, decide_deadline_s, push_one, settings
from tests.support.postgres import start_postgres

__all__ = ["ReplicaStormSize", "replica_storm"]


@dataclass(frozen=True)
class ReplicaStormSize:
    """How big: images pushed, SIGKILLs, the RNG seed."""

    images: int = 12
    kills: int = 6
    seed: int = 7
    layer_kib: int = 128
    destination_rps: float = 8.0
    converge_timeout_s: float = 180.0


async def _replicate(replica: Replica, image: Pushed) -> bool:
    """Ask ``replica`` to replicate ``image``; False when it is down (killed) at that moment."""
    ref = pb.Image(registry="ci", repository=image.repository, tag=image.tag)
    try:
        await replica.stub.Replicate(
            pb.ReplicateRequest(request=pb.DecideRequest(image=ref)), timeout=30
        )
    except grpc.aio.AioRpcError:
        return False
    return True


async def _arrivals(
    world: ReplicaWorld, pushed: list[Pushed], size: ReplicaStormSize, calls: Counter[str]
) -> None:
    """Push images at a steady pace, each also ``Replicate``-d on a random replica."""
    rng = random.Random(size.seed + 1)  # noqa: S311 - reproducible, not secret
    for n in range(size.images):
        image = await push_one(world.ci, f"pair/app{n}", rng, layer_kib=size.layer_kib)
        pushed.append(image)
        target = rng.choice(world.replicas)
        if await _replicate(target, image):
            calls["answered"] += 1
        else:  # a caller behind a Service is retried on the other pod
            other = next(r for r in world.replicas if r is not target)
            calls["answered by the other" if await _replicate(other, image) else "refused"] += 1
        # Spread over the kill phase (about 4 s a kill), so kills land while work is in hand.
        await asyncio.sleep(rng.uniform(0.0, 2 * size.kills * 4.0 / max(1, size.images)))


async def _holding(world: ReplicaWorld, replica: Replica) -> int:
    """How many jobs and events ``replica``'s process holds leases on now."""
    process = replica.process.process
    if process is None or not replica.process.alive:
        return 0
    pattern = f"%-{process.pid}-%"
    rows = world.sql(
        "SELECT (SELECT count(*) FROM jobs WHERE state = 'running' AND lease_owner LIKE %s) + "
        "(SELECT count(*) FROM events WHERE completed_at = '' AND leased_by LIKE %s)",
        [pattern, pattern],
    )
    return int(rows[0][0])


async def _busy(world: ReplicaWorld, replica: Replica, *, within_s: float) -> int:
    """Wait up to ``within_s`` for ``replica`` to hold leases; return how many it holds."""
    deadline = time.monotonic() + within_s
    held = await _holding(world, replica)
    for _ in range(int(within_s / 0.05)):
        if held or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
        held = await _holding(world, replica)
    return held


async def replica_storm(root: Path, size: ReplicaStormSize) -> FaultFigures:
    """Run the storm under ``root``; return its figures (violations say what broke)."""
    rng = random.Random(size.seed)  # noqa: S311 - reproducible, not secret
    limits = dict.fromkeys(("prod-eu", "prod-us", "dev-us", "sandbox"), size.destination_rps)
    policy = settings(
        replication={"registry_rate_limit_rps": limits, "workers": 2},
        webhook={"lease_s": 2, "retry_interval_s": 0.2},
    )
    began = time.monotonic()
    broken: list[str] = []
    kills: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    recover: list[float] = []
    # No Decide traffic of its own: the crash class measures that; this one counts the work.
    load = DecideLoad(deadline_s=decide_deadline_s(policy))
    with start_postgres() as server:
        async with replica_world(root, server.dsn(), policy) as world:
            pushed: list[Pushed] = []
            arrivals = asyncio.create_task(_arrivals(world, pushed, size, calls))
            try:
                for _ in range(size.kills):
                    await asyncio.sleep(rng.uniform(0.5, 3.0))
                    victim = rng.choice(world.replicas)
                    # Aim at a replica with work in hand (a job copying, an event claimed).
                    held = await _busy(world, victim, within_s=3.0)
                    kills["holding leases" if held else "idle"] += 1
                    victim.process.kill()
                    if rng.random() < 0.3:  # now and then both are down at once
                        other = next(r for r in world.replicas if r is not victim)
                        other.process.kill()
                        kills["both down"] += 1
                        broken += await half_written(world.clients, list(pushed))
                        other.process.start()
                    await asyncio.sleep(rng.uniform(0.0, 1.5))
                    restarted = time.monotonic()
                    victim.process.start()
                    for replica in world.replicas:
                        await replica.process.wait_ready()
                    recover.append(time.monotonic() - restarted)
                await arrivals
            finally:
                if not arrivals.done():
                    arrivals.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await arrivals
            last = time.time()
            stub = world.live().stub
            expected = await intent(stub, pushed)
            jobs, converge_s = await converge(stub, expected, size.converge_timeout_s, since=last)
            place = await placement(world.clients, pushed, expected)
            successes = world.successes()
            open_events = world.sql(
                "SELECT count(*) FROM events WHERE completed_at = '' OR leased_by <> ''"
            )[0][0]
            pushes = world.pushes()
        _combined_log(world, root / "sidecar.log")
    if open_events:
        broken.append(f"{open_events} inbox event(s) never completed")
    # One tag push per image: Replicate calls would hide a lost event from the job accounting.
    if len(pushes) < len(pushed):
        broken.append(f"{len(pushed) - len(pushes)} push event(s) never processed")
    retried = sum(j.attempts >= 2 for j in jobs)
    notes = (
        f"two replicas on one PostgreSQL; {len(pushed)} images pushed (both endpoints notified), "
        f"{calls['answered']} Replicate calls answered, {calls['answered by the other']} more on "
        f"the other replica after hitting a dead one, {calls['refused']} with both down, "
        f"{size.kills} SIGKILLs ({', '.join(f'{n} {k}' for k, n in sorted(kills.items()))}); "
        f"{retried} jobs ran more than one attempt; "
        f"{sum(n > 1 for n in pushes.values())} push events processed again after a kill"
    )
    return figures(
        "two replicas on PostgreSQL, SIGKILLs across both",
        injections=size.kills + kills["both down"],
        load=load,
        jobs=account(jobs, expected, successes),
        place=place,
        recover_s=max(recover, default=None),
        converge_s=converge_s,
        wall_s=time.monotonic() - began,
        notes=notes,
        extra=sorted(set(broken))[:5],
        details={
            "images": len(pushed),
            "kills_holding_leases": kills["holding leases"],
            "both_down": kills["both down"],
            "jobs_taken_over": retried,
        },
    )


def _combined_log(world: ReplicaWorld, path: Path) -> None:
    """Both replicas' logs in one file, each line prefixed by its replica (kept on failure)."""
    with path.open("w", encoding="utf-8") as out:
        for replica in world.replicas:
            log = replica.process.log_path
            if log.exists():
                for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
                    out.write(f"{replica.name} {line}\n")
