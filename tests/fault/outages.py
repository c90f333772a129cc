"""Outages of the parts the sidecar depends on: its managed OPA, and a destination registry.

OPA: under Decide load and while images keep arriving, the managed OPA is frozen (SIGSTOP: it
accepts connections and never answers), then killed (SIGKILL); the sidecar restarts it. Decisions
must keep answering within their deadline — degraded while OPA is gone — and pushes that arrived
meanwhile must still get the jobs OPA wants once it is back.

Registry: ``prod-us`` is stopped while images are pushed, then started on the same data. Its
jobs park (or are deferred by decisions that see it down) and complete after it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from sidecar._proto import policy_pb2 as pb
from sidecar._proto import policy_pb2_grpc as pb_grpc
from tests.fault.check import list_jobs, settle
from tests.fault.figures import FaultFigures, settled_figures
from tests.fault.load import decide_load
from tests.fault.world import (
    Pushed,
    decide_deadline_s,
    fault_world,
    push_images,
    push_one,
    settings,
)
from tests.support.fleet import registry_fleet, restarted

__all__ = ["OutageSize", "opa_outage", "registry_outage"]


@dataclass(frozen=True)
class OutageSize:
    """Images pushed per phase, how many outages, how long each lasts, and the RNG seed."""

    images: int
    outages: int
    outage_s: float = 2.0
    seed: int = 7
    converge_timeout_s: float = 120.0


async def opa_outage(root: Path, size: OutageSize) -> FaultFigures:
    """Freeze, then kill the managed OPA ``size.outages`` times under load; return the figures."""
    rng = random.Random(size.seed)  # noqa: S311 - reproducible, not secret
    policy = settings()
    began = time.monotonic()
    recover: list[float] = []
    with registry_fleet(root / "fleet") as fleet:
        async with fault_world(fleet, root, policy) as world:
            pushed: list[Pushed] = []
            deadline = decide_deadline_s(policy)
            async with decide_load(
                fleet.grpc_address, pushed, deadline_s=deadline, clients=3, seed=size.seed
            ) as load:
                pushed += await push_images(world.ci, "opa/before", size.images, rng)
                for k in range(size.outages):
                    pid = world.sidecar.opa_pid()
                    assert pid is not None, "the sidecar runs no OPA"
                    os.kill(pid, signal.SIGSTOP)  # hung: connections accepted, no answers
                    pushed += await push_images(world.ci, f"opa/hung{k}", size.images, rng)
                    await asyncio.sleep(size.outage_s)
                    os.kill(pid, signal.SIGKILL)  # dead: the sidecar must start another
                    killed, killed_wall = time.monotonic(), time.time()
                    pushed += await push_images(world.ci, f"opa/dead{k}", size.images, rng)
                    while (back := load.first_served_after(killed)) is None:
                        assert time.monotonic() - killed < 60, "OPA never came back"
                        await asyncio.sleep(0.1)
                    recover.append(back)
                    assert world.sidecar.opa_pid() not in (None, pid)
                    await asyncio.sleep(0.5)
            end = await settle(world, pushed, timeout_s=size.converge_timeout_s, since=killed_wall)
    notes = (
        f"{len(pushed)} images pushed, {size.images * 2} per outage while OPA was frozen "
        f"({size.outage_s:g} s) or dead; fail mode closed; recover = SIGKILL until OPA "
        "answers again, converged = after the last SIGKILL"
    )
    return settled_figures(
        "OPA frozen, then killed",
        end,
        injections=size.outages,
        load=load,
        began=began,
        recover_s=max(recover, default=None),
        notes=notes,
        details={"images": len(pushed)},
    )


async def _routes_to(stub: pb_grpc.PolicyServiceStub, image: Pushed, registry: str) -> bool:
    ref = pb.Image(registry="ci", repository=image.repository, tag=image.tag, digest=image.digest)
    answer = await stub.Decide(pb.DecideRequest(image=ref), timeout=10)
    return registry in {r.registry for r in answer.decision.routes}


async def registry_outage(root: Path, size: OutageSize) -> FaultFigures:
    """Stop ``prod-us`` while images arrive, start it again; return the figures."""
    rng = random.Random(size.seed)  # noqa: S311 - reproducible, not secret
    policy = settings()
    began = time.monotonic()
    recover: list[float] = []
    parked_seen = 0
    with registry_fleet(root / "fleet") as fleet, contextlib.ExitStack() as restarts:
        async with fault_world(fleet, root, policy) as world:
            pushed: list[Pushed] = []
            deadline = decide_deadline_s(policy)
            async with decide_load(
                fleet.grpc_address, pushed, deadline_s=deadline, clients=2, seed=size.seed
            ) as load:
                pushed += await push_images(world.ci, "reg/before", size.images, rng)
                # A prod image: decisions about it show when prod-us is routed again.
                probe = await push_one(world.ci, "reg/probe", rng, kind="prod")
                pushed.append(probe)
                original = fleet.servers["prod-us"]
                for k in range(size.outages):
                    restarts.close()  # the copy started by the previous round
                    original.stop()
                    pushed += await push_images(world.ci, f"reg/down{k}", size.images, rng)
                    await asyncio.sleep(size.outage_s)
                    jobs = await list_jobs(world.stub)
                    parked_seen += sum(j.state == "parked" for j in jobs)
                    restarts.enter_context(restarted(original))
                    up, up_wall = time.monotonic(), time.time()
                    while not await _routes_to(world.stub, probe, "prod-us"):
                        assert time.monotonic() - up < 60, "prod-us never came back"
                        await asyncio.sleep(0.1)
                    recover.append(time.monotonic() - up)
                    pushed += await push_images(world.ci, f"reg/up{k}", size.images, rng)
            end = await settle(world, pushed, timeout_s=size.converge_timeout_s, since=up_wall)
    notes = (
        f"{len(pushed)} images pushed (before, during and after each {size.outage_s:g} s "
        f"outage of prod-us); {parked_seen} jobs seen parked during outages; recover = "
        "restart until decisions route to prod-us again, converged = after the last restart"
    )
    return settled_figures(
        "registry stopped and started",
        end,
        injections=size.outages,
        load=load,
        began=began,
        recover_s=max(recover, default=None),
        notes=notes,
        details={"images": len(pushed), "parked_seen": parked_seen},
    )
