"""Two ``policy-sidecar serve`` processes on one PostgreSQL behind the same registries (issue 16).

``ci`` notifies both replicas' webhook endpoints (every push reaches both), pull events are sent
to both or to one replica each, ``Replicate`` is called on both (the same image on each, and some
images on one only), and both drain the one
inbox and job queue in the shared store. Every job runs once and every push event is processed
once; a reconcile asked of both replicas at the same moment runs once (the other is refused) and
its plan is executed once; a replica SIGKILLed mid-work leaves its leases to expire and the other
finishes its jobs. Each is asserted on the shared store's rows, the replicas' logs and the
registries read back by digest.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import yaml

from sidecar._proto import policy_pb2 as pb
from sidecar.oci import OCI_MANIFEST
from sidecar.webhooks import ENVELOPE_MEDIA_TYPE
from tests.fault.check import account, converge, intent, placement
from tests.fault.process import succeeded_attempts
from tests.fault.replicas import Replica, ReplicaWorld, replica_world
from tests.fault.world import Pushed, push_one, settings

# clock: decisions use the wall clock (scan ages)
pytestmark = [pytest.mark.timeout(600), pytest.mark.clock]

_LEASE_S = 2


def _policy() -> dict[str, Any]:
    return settings(
        replication={
            "lease_s": _LEASE_S,
            "workers": 2,
            # Slow enough that a replica is still copying when it is killed.
            "registry_rate_limit_rps": {"prod-eu": 15.0, "prod-us": 15.0, "dev-us": 15.0},
        },
        # Short inbox leases, and each replica polls the inbox often: the race is hot.
        webhook={"lease_s": _LEASE_S, "retry_interval_s": 0.1},
        reconcile={"sources": ["ci"]},
    )


async def _replicate(replica: Replica, image: Pushed, fallback: Replica) -> None:
    """Replicate ``image`` on ``replica``; killed under the call, on ``fallback`` (as a caller
    behind a Service would be retried on the other pod)."""
    ref = pb.Image(registry="ci", repository=image.repository, tag=image.tag)
    request = pb.ReplicateRequest(request=pb.DecideRequest(image=ref))
    if replica.process.alive:
        try:
            await replica.stub.Replicate(request, timeout=60)
            return
        except grpc.aio.AioRpcError:
            if replica.process.alive:
                raise
    await fallback.stub.Replicate(request, timeout=60)


async def _push_and_replicate(
    world: ReplicaWorld, prefix: str, count: int, seed: int
) -> list[Pushed]:
    """Push ``count`` images (each a webhook event to both replicas); ``Replicate`` each too:
    the first of every three on both replicas at once, the others on one replica each."""
    rng = random.Random(seed)  # noqa: S311 - reproducible, not secret
    pushed: list[Pushed] = []
    calls = []
    one, two = world.replicas
    for n in range(count):
        image = await push_one(
            world.ci, f"{prefix}/app{n}", rng, kind=("prod", "dev", "plain")[n % 3]
        )
        pushed.append(image)
        targets: Sequence[Replica] = ((one, two), (one,), (two,))[n % 3]
        calls += [
            asyncio.create_task(_replicate(r, image, two if r is one else one)) for r in targets
        ]
    await asyncio.gather(*calls)
    return pushed


async def _notify_pulls(world: ReplicaWorld, pulls: int) -> None:
    """Send ``pulls`` Distribution pull events of ``pair/pulled``: the first third to both
    replicas, the next to the first only, the rest to the second only (as ``ci`` would)."""
    doc = yaml.safe_load(world.fleet.config_path.read_text(encoding="utf-8"))
    secret = doc["policy"]["replication"]["webhook"]["secret"]
    host = world.fleet.servers["ci"].host
    one, two = world.replicas
    digest = "sha256:" + "ab" * 32
    async with aiohttp.ClientSession() as session:
        for n in range(pulls):
            event = {
                "id": f"pull-{n}",
                "timestamp": "2026-01-01T00:00:00Z",
                "action": "pull",
                "target": {"mediaType": OCI_MANIFEST, "digest": digest, "size": 400,
                           "repository": "pair/pulled", "tag": "prod-1",
                           "url": f"http://{host}/v2/pair/pulled/manifests/{digest}"},
                "request": {"addr": "127.0.0.1:5555", "host": host, "method": "GET",
                            "useragent": "t"},
                "source": {"addr": "ci:5000", "instanceID": "x"},
            }  # fmt: skip
            targets = ((one, two), (one,), (two,))[n * 3 // pulls]
            for replica in targets:
                async with session.post(
                    replica.webhook_url,
                    json={"events": [event]},
                    headers={
                        "Authorization": f"Bearer {secret}",
                        "Content-Type": ENVELOPE_MEDIA_TYPE,
                    },
                ) as answer:
                    assert answer.status == 200, await answer.text()


async def _settled(world: ReplicaWorld, pushed: list[Pushed], since: float) -> set[Any]:
    stub = world.live().stub
    expected = await intent(stub, pushed)
    jobs, converged = await converge(stub, expected, 180.0, since)
    assert converged is not None, (
        f"jobs never converged: {[(j.destination, j.state) for j in jobs]}"
    )
    jobs_once = account(jobs, expected, world.successes())
    assert jobs_once.problems() == [], jobs_once
    assert jobs_once.completed == len(expected)
    place = await placement(world.clients, pushed, expected)
    assert (place.missing, place.misplaced, place.incomplete) == ((), (), ())
    return expected


async def test_two_replicas_run_every_job_once_process_every_event_once_and_reconcile_once(
    postgres_dsn: str, tmp_path: Path
) -> None:
    async with replica_world(tmp_path, postgres_dsn, _policy()) as world:
        one, two = world.replicas
        began = time.time()
        pushed = await _push_and_replicate(world, "pair", 9, seed=11)
        await _notify_pulls(world, 30)
        expected = await _settled(world, pushed, began)
        # One row per job in the shared store, each succeeded once (the logs of both replicas).
        rows = world.sql("SELECT kind, state, count(*) FROM jobs GROUP BY kind, state")
        assert rows == [("copy", "succeeded", len(expected))]
        assert set(world.successes().values()) == {1}
        # Every tag push reached both endpoints, was recorded once and processed once.
        assert len(world.pushes()) == len(pushed)
        assert set(world.pushes().values()) == {1}, world.pushes()
        for _ in range(100):  # the last pull events may still be in flight
            if world.sql("SELECT count(*) FROM events WHERE completed_at = ''") == [(0,)]:
                break
            await asyncio.sleep(0.1)
        assert world.sql("SELECT count(*) FROM events WHERE completed_at = ''") == [(0,)]
        assert world.sql("SELECT count(*) FROM events WHERE leased_by <> ''") == [(0,)]
        # Pull events sent to both, or to one replica each: every pull counted once.
        pulled = "SELECT coalesce(sum(pulls_count), 0) FROM pull_buckets WHERE repository = %s"
        assert world.sql(pulled, ["pair/pulled"]) == [(30,)]

        # A reconcile asked of both replicas at once: one plans and applies, one is refused.
        gone = [p for p in pushed if p.tag == "prod-1"]
        for image in gone:
            assert await world.clients.get("prod-us").delete_manifest(
                image.repository, image.digest
            )
        before = world.successes()

        async def reconcile(replica: Replica) -> list[pb.ReconcileEvent] | grpc.aio.AioRpcError:
            try:
                call = replica.stub.Reconcile(pb.ReconcileRequest(dry_run=False), timeout=120)
                return [e async for e in call]
            except grpc.aio.AioRpcError as err:
                return err

        answers = await asyncio.gather(reconcile(one), reconcile(two))
        refused = [a for a in answers if isinstance(a, grpc.aio.AioRpcError)]
        applied = [a for a in answers if not isinstance(a, grpc.aio.AioRpcError)]
        assert len(refused) == 1 and len(applied) == 1, answers
        assert refused[0].code() == grpc.StatusCode.ABORTED, refused[0].details()
        [events] = applied
        planned = [e.planned for e in events if e.WhichOneof("event") == "planned"]
        copies = sorted((a.registry, a.repository, a.digest) for a in planned if a.kind == "copy")
        assert copies == sorted(("prod-us", p.repository, p.digest) for p in gone)
        assert events[-1].done == "applied"
        # The plan was executed once: each re-copied job ran once more, nothing else ran.
        after = world.successes()
        ran_again = {job: n - before[job] for job, n in after.items() if n != before[job]}
        assert sorted(ran_again.values()) == [1] * len(gone)
        for image in gone:
            held = await world.clients.get("prod-us").head_manifest(image.repository, image.tag)
            assert held is not None and held.digest == image.digest


async def test_a_replica_killed_mid_work_leaves_its_jobs_to_the_other(
    postgres_dsn: str, tmp_path: Path
) -> None:
    async with replica_world(tmp_path, postgres_dsn, _policy()) as world:
        one, two = world.replicas
        began = time.time()
        arriving = asyncio.create_task(_push_and_replicate(world, "kill", 9, seed=23))
        # Kill the first replica as soon as it holds job leases (it is copying).
        pid = one.process.process.pid if one.process.process else 0
        held: list[tuple[Any, ...]] = []
        while not held and not arriving.done():
            held = world.sql(
                "SELECT job_id FROM jobs WHERE state = 'running' AND lease_owner LIKE %s",
                [f"%-{pid}-%"],
            )
            await asyncio.sleep(0.02)
        assert held, "the first replica never copied anything"
        one.process.kill()
        # What it held when it died (it may have finished some between the query and the kill).
        held = world.sql(
            "SELECT job_id FROM jobs WHERE state = 'running' AND lease_owner LIKE %s",
            [f"%-{pid}-%"],
        )
        assert held, "the first replica finished its copies before it was killed"
        events_held = world.sql(
            "SELECT event_id FROM events WHERE completed_at = '' AND leased_by LIKE %s",
            [f"%-{pid}-%"],
        )
        pushed = await arriving
        expected = await _settled(world, pushed, began)
        # The other replica took the killed one's jobs over once their leases expired, and its
        # attempt is the one that succeeded (each job succeeded once over both logs: _settled).
        taken = world.sql("SELECT state FROM jobs WHERE job_id = ANY(%s)", [[h[0] for h in held]])
        assert [t[0] for t in taken] == ["succeeded"] * len(held)
        by_two = succeeded_attempts(two.process.log_path)
        assert all(by_two[str(h[0])] == 1 for h in held), (held, by_two)
        assert len(expected) >= len(held)
        # Events it had claimed were taken over too: none is left open or leased.
        left = world.sql("SELECT count(*) FROM events WHERE completed_at = '' OR leased_by <> ''")
        assert left == [(0,)], events_held
