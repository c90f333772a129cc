"""Measure throughput from one to two ``serve`` replicas on one PostgreSQL (issue 16, item 4).

Run:  .venv/bin/python -m tests.bench.replicas [--images 60] [--decide-s 10] [--clients 8]
      .venv/bin/python -m tests.bench.replicas --replicas 1,2 --output build/bench/replicas.json

For each replica count it starts a fresh database on one throwaway PostgreSQL, the five registries
of tests/support/fleet.py (``ci`` notifying every replica's endpoint, as a load balancer would
not: each event reaches each replica, and the inbox lease decides who processes it) and that many
``policy-sidecar serve`` processes. Then:

* **events and jobs** — ``--images`` images are pushed to ``ci`` by ``--pushers`` concurrent
  pushers while no replica runs (each tag push is one webhook event; a ``prod-`` tag routes to two
  destinations, others to one); ``ci`` keeps its notifications and delivers them once the replicas
  are up, so the replicas drain a backlog at their own pace. Figures come from the shared store,
  on the database's clock: events/s = inbox events (every blob and manifest notification)
  completed / (last completion - first receipt); jobs/s = copy jobs succeeded / (last success -
  first job created). Every job must succeed once; the run fails otherwise.
* **Decide** — ``--clients`` concurrent clients per replica call ``Decide`` for ``--decide-s``
  seconds on every replica at once: rps is the sum over replicas.

Prints one JSON document (also written to ``--output``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from sidecar._proto import policy_pb2 as pb
from tests.fault.check import account, converge, intent
from tests.fault.replicas import ReplicaWorld, pushes_processed, replica_world
from tests.fault.world import Pushed, push_one, settings
from tests.support.postgres import start_postgres


def _policy() -> dict[str, Any]:
    return settings(
        replication={"lease_s": 10, "workers": 4},
        webhook={"lease_s": 30, "retry_interval_s": 0.5},
    )


async def _push_all(world: ReplicaWorld, images: int, pushers: int, seed: int) -> list[Pushed]:
    rng = random.Random(seed)  # noqa: S311 - reproducible, not secret
    kinds = [rng.choice(("prod", "dev", "plain")) for _ in range(images)]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(images):
        queue.put_nowait(n)
    pushed: list[Pushed] = []

    async def pusher(k: int) -> None:
        own = random.Random(seed * 100 + k)  # noqa: S311
        while not queue.empty():
            n = queue.get_nowait()
            pushed.append(await push_one(world.ci, f"bench/app{n}", own, kind=kinds[n]))

    await asyncio.gather(*(pusher(k) for k in range(pushers)))
    return pushed


def _span_s(dsn: str, query: str) -> tuple[int, float]:
    """(rows, seconds between the earliest and latest RFC3339 stamps) of ``query``."""
    with contextlib.closing(psycopg.connect(dsn, autocommit=True)) as conn:
        count, first, last = conn.execute(query).fetchone() or (0, None, None)
    if not count or not first or not last:
        return 0, 0.0
    parse = lambda s: dt.datetime.fromisoformat(str(s).replace("Z", "+00:00"))  # noqa: E731
    return int(count), max(1e-3, (parse(last) - parse(first)).total_seconds())


async def _decide_rps(
    world: ReplicaWorld, pushed: list[Pushed], clients: int, seconds: float
) -> float:
    answered = 0
    stop = time.monotonic() + seconds

    async def client(k: int, stub: Any) -> None:
        nonlocal answered
        rng = random.Random(k)  # noqa: S311
        while time.monotonic() < stop:
            image = rng.choice(pushed)
            ref = pb.Image(
                registry="ci", repository=image.repository, tag=image.tag, digest=image.digest
            )
            await stub.Decide(pb.DecideRequest(image=ref), timeout=10)
            answered += 1

    began = time.monotonic()
    await asyncio.gather(*(client(k, r.stub) for r in world.replicas for k in range(clients)))
    return answered / (time.monotonic() - began)


async def _one(count: int, server_dsn: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with contextlib.closing(psycopg.connect(server_dsn, autocommit=True)) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = server_dsn.rsplit("/", 1)[0] + f"/{name}"
    async with replica_world(root / f"r{count}", dsn, _policy(), replicas=count, start=0) as world:
        # A backlog first: pushed while no replica runs, ``ci`` holds its notifications and
        # delivers them once the endpoints answer, so the replicas (not the pushers) set the pace.
        began = time.monotonic()
        pushed = await _push_all(world, args.images, args.pushers, args.seed)
        pushed_s = time.monotonic() - began
        for replica in world.replicas:
            replica.process.start()
        for replica in world.replicas:
            await replica.process.wait_ready()
        began = time.monotonic()
        stub = world.live().stub
        expected = await intent(stub, pushed)
        jobs, converged = await converge(stub, expected, args.timeout, since=time.time())
        wall_s = time.monotonic() - began
        books = account(jobs, expected, world.successes())
        if converged is None or books.problems():
            raise SystemExit(f"{count} replica(s): jobs did not all succeed once: {books}")
        # Completed events: wait until the inbox is empty (pull and push events alike).
        for _ in range(200):
            if world.sql("SELECT count(*) FROM events WHERE completed_at = ''") == [(0,)]:
                break
            await asyncio.sleep(0.1)
        events, events_s = _span_s(
            dsn, "SELECT count(*), min(received_at), max(completed_at) FROM events"
        )
        done, jobs_s = _span_s(
            dsn,
            "SELECT count(*), min(created_at), max(updated_at) FROM jobs WHERE state = 'succeeded'",
        )
        rps = await _decide_rps(world, pushed, args.clients, args.decide_s)
        per_replica = {
            r.name: sum(pushes_processed(r.process.log_path).values()) for r in world.replicas
        }
    return {
        "replicas": count,
        "images": len(pushed),
        "push_s": round(pushed_s, 2),
        "drain_wall_s": round(wall_s, 2),
        "events": events,
        "events_per_s": round(events / events_s, 2),
        "jobs": done,
        "jobs_per_s": round(done / jobs_s, 2),
        "push_events_by_replica": per_replica,
        "decide_rps": round(rps, 1),
        "decide_clients_per_replica": args.clients,
    }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    counts = [int(c) for c in args.replicas.split(",")]
    runs = []
    with start_postgres() as server, tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp:
        for count in counts:
            print(f"== {count} replica(s)", file=sys.stderr, flush=True)
            runs.append(await _one(count, server.dsn(), Path(tmp), args))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    base = runs[0]
    return {
        "bench": "replicas",
        "command": "python -m tests.bench.replicas " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "runs": runs,
        "speedup": {
            f"{r['replicas']}/{base['replicas']}": {
                k: round(r[k] / base[k], 2) if base[k] else None
                for k in ("events_per_s", "jobs_per_s", "decide_rps")
            }
            for r in runs[1:]
        },
    }


def main() -> None:
    """Parse arguments, run, print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", default="1,2", help="replica counts to compare")
    parser.add_argument("--images", type=int, default=60, help="images pushed per run")
    parser.add_argument("--pushers", type=int, default=4, help="concurrent pushers")
    parser.add_argument("--clients", type=int, default=8, help="Decide clients per replica")
    parser.add_argument("--decide-s", type=float, default=10.0, help="seconds of Decide load")
    parser.add_argument("--timeout", type=float, default=600.0, help="convergence timeout (s)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    result = asyncio.run(_main(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
