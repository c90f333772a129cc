"""Failover and recovery on real registries: a primary stops, work fails over, parks, comes back.

The fleet (tests/support/fleet.py) with its DR secondary ``prod-us-dr`` backing ``prod-us``; the
sidecar probes every registry. Every placement is asserted by digest against the registries.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

import grpc
import pytest

from sidecar._proto import policy_pb2 as pb
from sidecar.config import load_config
from sidecar.health import HealthMonitor, HealthState
from sidecar.oci import RegistryClients
from tests.support.fleet import Fleet, registry_fleet, restarted
from tests.support.images import push_image, push_manifest, scanned_labels
from tests.support.sidecar import RunningSidecar, isolated_config, running_sidecar

# clock: decisions here use the sidecar's wall clock (scan ages, token expiry)
pytestmark = [pytest.mark.timeout(300), pytest.mark.clock]

# Probes every 0.2 s; two failures fail a registry over, two successes bring it back.
HEALTH = {
    "interval_s": 0.2,
    "timeout_s": 1,
    "failure_threshold": 2,
    "success_threshold": 2,
    "min_dwell_s": 0,
    "sweep_interval_s": 60,
}
# One copy at a time, so the order jobs finish in is the order they were claimed in.
REPLICATION = {
    "workers": 1,
    "per_registry_concurrency": 1,
    "lease_s": 5,
    "retry": {"max_attempts": 3, "base_s": 0.05, "max_s": 0.2},
}


async def push(ci: RegistryClients, repo: str, tag: str, seed: int, criticality: str) -> str:
    """Push an image to ``ci`` and tag it last (the tag push is what notifies the sidecar)."""
    image = await push_image(
        ci.get("ci"), repo, seed=seed, labels=scanned_labels(criticality=criticality)
    )
    client = ci.get("ci")
    await push_manifest(client, repo, (await client.get_manifest(repo, image.digest)).json, tag)
    return image.digest


async def jobs_until(
    running: RunningSidecar, done: Callable[[list[pb.Job]], bool], timeout_s: float = 90
) -> list[pb.Job]:
    """Poll ListJobs until ``done(jobs)``; fail naming the jobs when it never happens."""
    deadline = time.monotonic() + timeout_s
    while True:
        jobs = list((await running.stub.ListJobs(pb.ListJobsRequest(limit=500))).jobs)
        if done(jobs):
            return jobs
        assert time.monotonic() < deadline, [(j.destination, j.state, j.error) for j in jobs]
        await asyncio.sleep(0.1)


def settled(count: int) -> Callable[[list[pb.Job]], bool]:
    """At least ``count`` jobs, none queued or running."""
    return lambda jobs: (
        len(jobs) >= count and all(j.state not in ("queued", "running") for j in jobs)
    )


async def holds(clients: RegistryClients, registry: str, repo: str, digest: str) -> bool:
    """Whether ``registry`` has ``repo@digest`` (HEAD)."""
    return await clients.get(registry).head_manifest(repo, digest) is not None


def finish_order(jobs: Iterable[pb.Job], registries: set[str]) -> list[int]:
    """Priorities of the succeeded jobs to ``registries``, in the order they finished."""
    done = [j for j in jobs if j.state == "succeeded" and j.destination.split("/")[0] in registries]
    return [j.priority for j in sorted(done, key=lambda j: j.updated_at)]


async def resolve(
    running: RunningSidecar, repo: str, *, digest: str = "", tag: str = "", region: str = ""
) -> pb.ResolvePullResponse:
    """Ask the sidecar where to pull ``ci``'s ``repo`` image from, for a client in ``region``."""
    image = pb.Image(registry="ci", repository=repo, tag=tag, digest=digest)
    request = pb.ResolvePullRequest(image=image, client_region=region)
    answer: pb.ResolvePullResponse = await running.stub.ResolvePull(request, timeout=30)
    return answer


def monitor_of(running: RunningSidecar) -> HealthMonitor:
    """The running sidecar's registry prober."""
    parts = running.sidecar.parts
    assert parts is not None and parts.health is not None
    return parts.health


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    """The registries plus the DR secondary of prod-us."""
    with registry_fleet(
        tmp_path, replication=REPLICATION, dr_secondary=True, health=HEALTH
    ) as running:
        yield running


@pytest.fixture
async def clients(fleet: Fleet) -> AsyncIterator[RegistryClients]:
    """Our OCI client for every registry of the fleet."""
    pool = RegistryClients(load_config(fleet.config_path).registries)
    try:
        yield pool
    finally:
        await pool.close()


async def test_a_primary_outage_fails_over_parks_and_catches_up_by_priority(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    config = isolated_config(load_config(fleet.config_path), tmp_path / "state")
    async with running_sidecar(config) as running:
        monitor, stub = monitor_of(running), running.stub
        await monitor.wait_for("prod-us", HealthState.HEALTHY, 30)
        before = await push(clients, "web/before", "prod-1", 1, "normal")
        await jobs_until(running, settled(2))
        assert await holds(clients, "prod-us", "web/before", before)
        answer = await resolve(running, "web/before", digest=before, region="eu-central-1")
        assert (answer.registry, answer.proximity) == ("prod-eu", "same_area")

        fleet.servers["prod-us"].stop()
        await monitor.wait_for("prod-us", HealthState.UNHEALTHY, 30)
        # New decisions route to the secondary and defer the primary.
        during = await push(clients, "web/during", "prod-2", 2, "high")
        jobs = await jobs_until(running, settled(4))
        routed = {j.destination.split("/")[0] for j in jobs if "web/during" in j.destination}
        assert routed == {"prod-eu", "prod-us-dr"}
        image = pb.Image(registry="ci", repository="web/during", tag="prod-2", digest=during)
        decided = await stub.Decide(pb.DecideRequest(image=image))
        assert {d.registry: d.reason for d in decided.decision.deferred} == {
            "prod-us": "REGISTRY_UNAVAILABLE"
        }
        assert "FAILOVER_SECONDARY" in {r.code for r in decided.decision.reasons}
        # ResolvePull passes over the dead primary: the nearest healthy holder answers.
        answer = await resolve(running, "web/during", tag="prod-2", region="us-west-2")
        assert (answer.registry, answer.proximity, answer.digest) == (
            "prod-us-dr",
            "same_region",
            during,
        )
        down = {c.registry: c for c in answer.candidates}["prod-us"]
        assert (down.healthy, down.holds) == (False, False) and "unhealthy" in down.problem
        # A caller that insists prod-us is up gets jobs routed there: they park, not fail.
        parked = {}
        for seed, level in ((3, "low"), (4, "critical"), (5, "normal")):
            digest = await push(clients, f"web/c{seed}", "prod-3", seed, level)
            parked[f"web/c{seed}"] = digest
        await jobs_until(running, settled(10))
        for repo, digest in parked.items():
            image = pb.Image(registry="ci", repository=repo, tag="prod-3", digest=digest)
            # Stating registry health takes an override role (policy.facts.override_roles).
            operator = pb.Caller(subject="operator", roles=["fact-override"])
            insisting = pb.DecideRequest(
                image=image, registry_health={"prod-us": True}, caller=operator
            )
            await stub.Replicate(pb.ReplicateRequest(request=insisting))
        jobs = await jobs_until(
            running, lambda js: sum(j.state == "parked" for j in js) == 3 and settled(13)(js)
        )
        assert not [j for j in jobs if j.state == "failed"]
        assert {j.error_code for j in jobs if j.state == "parked"} == {"registry_unavailable"}

        # prod-us comes back restored from an empty disk: everything it should hold is missing.
        with restarted(fleet.servers["prod-us"], root=tmp_path / "prod-us-restored"):
            await monitor.wait_for("prod-us", HealthState.HEALTHY, 30)
            await monitor.idle()
            jobs = await jobs_until(running, settled(14))
            for repo, digest in {"web/before": before, "web/during": during, **parked}.items():
                assert await holds(clients, "prod-us", repo, digest), repo
            # Parked, deferred and reconciled work ran strictly by priority once released.
            order = finish_order(jobs, {"prod-us"})
            assert order == [90, 75, 60, 60, 45]
            metrics = running.sidecar.telemetry.metrics_registry
            recovered = {
                kind: metrics.get_sample_value(
                    "policy_sidecar_recovery_work_total", {"registry": "prod-us", "kind": kind}
                )
                for kind in ("requeued", "deferred", "reconciled")
            }
            assert recovered == {"requeued": 3, "deferred": 4, "reconciled": 1}
            assert running.sidecar.parts is not None
            assert await running.sidecar.parts.store.pending_deferrals({"prod-us"}) == []
            answer = await resolve(running, "web/during", digest=during, region="us-west-2")
            holders = {c.registry for c in answer.candidates if c.holds}
            assert holders == {"ci", "prod-eu", "prod-us", "prod-us-dr"}
            with pytest.raises(grpc.aio.AioRpcError) as nowhere:
                await resolve(running, "web/none", digest="sha256:" + "0" * 64)
            assert nowhere.value.code() == grpc.StatusCode.NOT_FOUND
            assert "prod-us/web/none: does not hold the digest" in (nowhere.value.details() or "")


async def test_with_several_registries_down_recovery_follows_priority(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    # Rounds are driven by the test, so both primaries come back in the same one.
    loaded = load_config(fleet.config_path)
    health = dataclasses.replace(loaded.policy.health, interval_s=3600.0)
    config = isolated_config(loaded, tmp_path / "state", health=health)
    async with running_sidecar(config) as running:
        monitor = monitor_of(running)
        for name in ("prod-eu", "prod-us"):
            await monitor.wait_for(name, HealthState.HEALTHY, 30)
            fleet.servers[name].stop()
        await monitor.probe_round()
        assert {t.registry for t in await monitor.probe_round()} == {"prod-eu", "prod-us"}
        images = {}
        for seed, level in ((11, "low"), (12, "critical"), (13, "normal"), (14, "high")):
            images[f"web/d{seed}"] = await push(clients, f"web/d{seed}", "prod-5", seed, level)
        # Only the secondary receives them while both primaries are down.
        jobs = await jobs_until(running, settled(4))
        assert {j.destination.split("/")[0] for j in jobs} == {"prod-us-dr"}
        with (
            restarted(fleet.servers["prod-eu"]),
            restarted(fleet.servers["prod-us"]),
        ):
            await monitor.probe_round()
            recovered = await monitor.probe_round()
            assert {t.registry for t in recovered if t.recovered} == {"prod-eu", "prod-us"}
            await monitor.idle()
            jobs = await jobs_until(running, settled(12))
            order = finish_order(jobs, {"prod-eu", "prod-us"})
            assert order == [90, 90, 75, 75, 60, 60, 45, 45]
            for repo, digest in images.items():
                for name in ("prod-eu", "prod-us"):
                    assert await holds(clients, name, repo, digest), (name, repo)
