"""What keeping a revision's reconcile outcomes in the job store adds to a recorded plan.

Run:  .venv/bin/python -m tests.bench.baselines [--images 10002] [--rounds 3] [--postgres]

A plan under the serving policy records every image's outcome (sidecar.reconcile.baselines): the
revision's row is read (once per process), added to, encoded off the event loop and written in one
statement. This times that record for ``--images`` outcomes with two routes each, and the read a
restarted process makes, on a SQLite job store in a temporary directory (or a fresh database on
a throwaway PostgreSQL server with ``--postgres``). Best of ``--rounds``; the row's size is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator

from sidecar.model.decision import Decision, DecisionResult, Route
from sidecar.reconcile.baselines import Baselines, Place
from sidecar.store import SqlJobStore, open_job_store
from tests.support.postgres import start_postgres

__all__ = ["main"]


def _outcomes(count: int, revision: str) -> list[tuple[Place, DecisionResult]]:
    out = []
    for n in range(count):
        repository, tag = f"team-{n % 50}/app-{n % 1111}", f"v{n}"
        decision = Decision(allow=True, routes=tuple(
            Route(registry=r, repository=repository, tag=tag, rank=i + 1)
            for i, r in enumerate(("prod-eu", "prod-us"))
        ))  # fmt: skip
        place = ("ci", repository, tag, f"sha256:{n:064x}")
        out.append((place, DecisionResult(decision, f"d{n}", revision)))
    return out


@contextlib.asynccontextmanager
async def _store(postgres: bool) -> AsyncIterator[SqlJobStore]:
    with tempfile.TemporaryDirectory() as work:
        if postgres:
            with start_postgres() as server:  # its own maintenance database: thrown away after
                store = await open_job_store(server.dsn())
                try:
                    yield store
                finally:
                    await store.close()
            return
        store = await open_job_store(f"sqlite://{work}/jobs.db")
        try:
            yield store
        finally:
            await store.close()


async def _run(images: int, rounds: int, postgres: bool) -> None:
    outcomes = _outcomes(images, "bench-1")
    recorded, read = [], []
    async with _store(postgres) as store:
        for _ in range(rounds):
            baselines = Baselines(store)
            started = time.perf_counter()
            await baselines.record(outcomes, [])
            recorded.append(time.perf_counter() - started)
            restarted = Baselines(store)
            started = time.perf_counter()
            assert await restarted.get("bench-1") is not None
            read.append(time.perf_counter() - started)
        size = len(await store.load_baseline("bench-1") or "")
    backend = "PostgreSQL" if postgres else "SQLite"
    print(f"{images} outcomes, {backend}: record {min(recorded) * 1000:.0f} ms, "
          f"read by a new process {min(read) * 1000:.0f} ms, row {size / 1024:.0f} KiB "
          f"(best of {rounds})")  # fmt: skip


def main() -> None:
    """Parse the flags and print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_002)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    asyncio.run(_run(args.images, args.rounds, args.postgres))


if __name__ == "__main__":
    main()
