"""What a fault scenario checks: the policy's intent, job accounting, and what the registries hold.

The intent is what ``Decide`` answers for every pushed tag once the fault is over (OPA up, every
registry healthy): one job per route. Jobs are read through ``ListJobs``; placements by HEAD and
GET against the registries themselves, never through a fault proxy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sidecar._proto import policy_pb2 as pb
from sidecar._proto import policy_pb2_grpc as pb_grpc
from sidecar.oci import RegistryClient, RegistryClients
from tests.fault.process import succeeded_attempts
from tests.fault.world import DESTINATIONS, Pushed, World

__all__ = [
    "JobKey",
    "Jobs",
    "Outcome",
    "Placement",
    "account",
    "converge",
    "half_written",
    "intent",
    "job_key",
    "list_jobs",
    "placement",
    "settle",
    "wall_time",
]

JobKey = tuple[str, str, str, str]
"""(digest, destination registry, destination repository, tag): what one job copies."""

_BUSY = ("queued", "running")
_GATE = 16  # registry reads in flight while checking placements


def job_key(job: pb.Job) -> JobKey:
    """The key of a listed job (its destination is ``REGISTRY/REPOSITORY[:TAG]``)."""
    registry, _, rest = job.destination.partition("/")
    repository, colon, tag = rest.rpartition(":")
    if not colon:
        repository, tag = rest, ""
    return job.digest, registry, repository, tag


async def list_jobs(stub: pb_grpc.PolicyServiceStub) -> list[pb.Job]:
    """Every job the sidecar knows (real copies only, not dry runs)."""
    listed = await stub.ListJobs(pb.ListJobsRequest(limit=10_000), timeout=30)
    return [j for j in listed.jobs if not j.dry_run]


async def intent(stub: pb_grpc.PolicyServiceStub, pushed: Iterable[Pushed]) -> set[JobKey]:
    """One key per route of every pushed tag, as OPA (not a fail mode) decides it now."""
    keys: set[JobKey] = set()
    for image in pushed:
        ref = pb.Image(
            registry="ci", repository=image.repository, tag=image.tag, digest=image.digest
        )
        answer = await stub.Decide(pb.DecideRequest(image=ref), timeout=30)
        assert not answer.degraded, f"intent of {image} decided by the fail mode"
        for route in answer.decision.routes:
            keys.add((image.digest, route.registry, route.repository, route.tag))
    return keys


def wall_time(stamp: str) -> float:
    """A job timestamp (RFC3339 UTC) as seconds since the epoch."""
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def converge(
    stub: pb_grpc.PolicyServiceStub, expected: set[JobKey], timeout_s: float, since: float
) -> tuple[list[pb.Job], float | None]:
    """Poll until every expected job succeeded and nothing is queued or running.

    Returns the jobs and how long after ``since`` (epoch seconds: the fault's end) the last of
    them succeeded, by the jobs' own timestamps; None when ``timeout_s`` passed first.
    """
    started = time.monotonic()
    while True:
        try:
            jobs = await list_jobs(stub)
        except Exception:  # the sidecar may be restarting; try again
            jobs = []
        done = {job_key(j): j for j in jobs if j.state == "succeeded"}
        if jobs and expected <= set(done) and not [j for j in jobs if j.state in _BUSY]:
            last = max((wall_time(done[k].updated_at) for k in expected), default=since)
            return jobs, max(0.0, last - since)
        if time.monotonic() - started > timeout_s:
            return jobs, None
        await asyncio.sleep(0.25)


@dataclass(frozen=True)
class Jobs:
    """Job accounting against the intent."""

    expected: int
    completed: int
    duplicated: int
    lost: int
    unexpected: int
    failed: int

    def problems(self) -> list[str]:
        """What broke the exactly-once promise, as sentences."""
        out = []
        if self.duplicated:
            out.append(f"{self.duplicated} job(s) duplicated")
        if self.lost:
            out.append(f"{self.lost} of {self.expected} job(s) lost (never succeeded)")
        if self.unexpected:
            out.append(f"{self.unexpected} job(s) the intent does not call for")
        return out


def account(
    jobs: Sequence[pb.Job], expected: set[JobKey], successes: Mapping[str, int] | None = None
) -> Jobs:
    """Count jobs: one per expected key and succeeded once, or duplicated/lost/unexpected.

    ``successes`` (attempts logged ``succeeded`` per job id) catches a job run to success twice.
    """
    per_key = Counter(job_key(j) for j in jobs)
    duplicated = sum(n - 1 for n in per_key.values())
    duplicated += sum(n - 1 for n in (successes or {}).values() if n > 1)
    succeeded = {job_key(j) for j in jobs if j.state == "succeeded"}
    return Jobs(
        expected=len(expected),
        completed=len(expected & succeeded),
        duplicated=duplicated,
        lost=len(expected - succeeded),
        unexpected=len(set(per_key) - expected),
        failed=sum(j.state == "failed" for j in jobs),
    )


async def _complete(client: RegistryClient, repository: str, digest: str) -> bool:
    """Whether ``repository@digest`` and everything it references (children, blobs) exist."""
    manifest = await client.get_manifest(repository, digest)
    for child in manifest.children():
        if not await _complete(client, repository, child.digest):
            return False
    for blob in manifest.blobs():
        if not await client.blob_exists(repository, blob.digest):
            return False
    return True


async def half_written(clients: RegistryClients, pushed: Iterable[Pushed]) -> list[str]:
    """Every destination tag of a pushed image that points elsewhere or at an incomplete image."""
    gate = asyncio.Semaphore(_GATE)
    bad: list[str] = []

    async def check(registry: str, image: Pushed) -> None:
        client = clients.get(registry)
        async with gate:
            tagged = await client.head_manifest(image.repository, image.tag)
            if tagged is None:
                return
            where = f"{registry}/{image.repository}:{image.tag}"
            if tagged.digest != image.digest:
                bad.append(f"{where} points at {tagged.digest}, not {image.digest}")
            elif not await _complete(client, image.repository, image.digest):
                bad.append(f"{where} points at an image with missing parts")

    await asyncio.gather(*(check(r, i) for r in DESTINATIONS for i in pushed))
    return sorted(bad)


@dataclass(frozen=True)
class Placement:
    """Where images are versus where the intent puts them."""

    complete: int
    missing: tuple[str, ...]
    misplaced: tuple[str, ...]
    incomplete: tuple[str, ...]


async def placement(
    clients: RegistryClients, pushed: Sequence[Pushed], expected: set[JobKey]
) -> Placement:
    """HEAD every route of the intent, and every other destination for strays."""
    wanted = {(k[0], k[1]) for k in expected}
    gate = asyncio.Semaphore(_GATE)
    missing: list[str] = []
    misplaced: list[str] = []

    async def holds(registry: str, repository: str, digest: str) -> bool:
        async with gate:
            return await clients.get(registry).head_manifest(repository, digest) is not None

    async def route(key: JobKey) -> None:
        digest, registry, repository, _ = key
        if not await holds(registry, repository, digest):
            missing.append(f"{registry}/{repository}@{digest[:19]}")

    async def stray(registry: str, image: Pushed) -> None:
        if (image.digest, registry) in wanted:
            return
        if await holds(registry, image.repository, image.digest):
            misplaced.append(f"{registry}/{image.repository}@{image.digest[:19]}")

    await asyncio.gather(
        *(route(k) for k in expected), *(stray(r, i) for r in DESTINATIONS for i in pushed)
    )
    incomplete = await half_written(clients, pushed)
    return Placement(
        len(expected) - len(missing),
        tuple(sorted(missing)),
        tuple(sorted(misplaced)),
        tuple(incomplete),
    )


@dataclass(frozen=True)
class Outcome:
    """A scenario's end state: the intent, the jobs, how long they took, where images are."""

    expected: set[JobKey]
    jobs: list[pb.Job]
    converge_s: float | None
    place: Placement
    accounting: Jobs


async def settle(
    world: World, pushed: Sequence[Pushed], *, timeout_s: float, since: float
) -> Outcome:
    """Decide the intent now, wait for its jobs, then check the registries and the sidecar's log.

    ``since`` (epoch seconds) is when the fault ended: convergence is timed from it.
    """
    expected = await intent(world.stub, pushed)
    jobs, converge_s = await converge(world.stub, expected, timeout_s, since)
    place = await placement(world.clients, pushed, expected)
    successes = succeeded_attempts(world.sidecar.log_path)
    return Outcome(expected, jobs, converge_s, place, account(jobs, expected, successes))
