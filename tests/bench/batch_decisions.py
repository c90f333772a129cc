"""Batched decisions (data.replication.batch) vs one OPA call per image, and the retention query.

Run:  .venv/bin/python -m tests.bench.batch_decisions [--images 2000] [--rounds 3]

One managed OPA on the checkout's real bundle (rego/ + bundles/default). The same ``--images``
DESIGN §3.1 inputs (a 12-registry inventory; tags, repositories, labels and present_at varied) are
decided four ways: one query per image in sequence, one query per image with 8 in flight, one
batch query holding every image, and two batch queries of half the images at once (OPA evaluates
one query on one core). Then ``data.replication.retention`` over 10,000 copies, 5 % over quota.
The batch is ``POST /v1/data/replication/batch`` (``{"decisions": [...]}``). The best round of
each is reported, with the CPU time OPA spent in it (from /proc: on a shared, loaded machine the
wall time says more about the neighbours than about the query; CPU time does not).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import os
import random
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from sidecar.bundles.keys import generate_keypair
from sidecar.policy import ManagedOpa
from sidecar.policy.opa import OpaEngine
from tests.bench.opa_client_compare import policy_input
from tests.support.opa import SigningKeys, build_test_bundle, running_opa

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[2]


def inputs(count: int) -> list[dict[str, Any]]:
    """``count`` distinct inputs: tags over every environment, some compliance-bound, some held."""
    base, rng = policy_input(), random.Random(7)  # noqa: S311 - reproducible inputs, not secrets
    names = [r["name"] for r in base["registries"]]
    items = []
    for i in range(count):
        doc = copy.deepcopy(base)
        image = doc["image"]
        image["repository"] = f"team/app{i % 97}"
        image["tag"] = rng.choice(["prod-", "dev-", "v"]) + str(i)
        if i % 3 == 0:
            image["labels"]["compliance-required"] = "true"
        image["present_at"] = rng.sample(names, rng.randint(0, 4))
        items.append(doc)
    return items


def copies(count: int) -> dict[str, Any]:
    """A retention query over ``count`` copies of one tenant, 5 % over its limit."""
    rng = random.Random(11)  # noqa: S311 - reproducible inputs, not secrets
    images = [
        {
            "registry": f"prod-{i % 5}", "repository": f"acme/app{(i // 5) % 20}",
            "tag": f"v{i}", "digest": f"sha256:{i:064x}",
            "created_at": f"2026-{rng.randint(1, 10):02d}-{rng.randint(1, 28):02d}T00:00:00Z",
            "size_bytes": rng.randint(1, 10**8), "pulls": rng.randint(0, 100),
            "last_pulled_at": None if rng.random() < 0.3 else "2026-11-01T00:00:00Z",
        }
        for i in range(count)
    ]  # fmt: skip
    used = sum(image["size_bytes"] for image in images)
    tenant = {"id": "acme", "storage_used_bytes": used, "storage_limit_bytes": int(used / 1.05)}
    return {"now": "2026-11-28T00:00:00Z", "tenant": tenant, "images": images}


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def best(call: Callable[[], Awaitable[Any]], rounds: int, pid: int) -> tuple[float, float]:
    """(best wall seconds, best OPA CPU seconds) over ``rounds`` runs of ``call``."""
    await call()  # warm the connections and OPA's compiled queries
    wall = cpu = float("inf")
    for _ in range(rounds):
        started, used = time.perf_counter(), _cpu_s(pid)
        await call()
        wall = min(wall, time.perf_counter() - started)
        cpu = min(cpu, _cpu_s(pid) - used)
    return wall, cpu


async def _compare(url: str, token: str, pid: int, count: int, rounds: int) -> None:
    items = inputs(count)
    single = OpaEngine(url, timeout_s=600, token=token)
    batch = OpaEngine(url, timeout_s=600, path="replication/batch", token=token)
    retention = OpaEngine(url, timeout_s=600, path="replication/retention", token=token)
    gate = asyncio.Semaphore(8)

    async def one_by_one() -> None:
        for item in items:
            await single.evaluate(item)

    async def in_flight() -> None:
        async def one(item: dict[str, Any]) -> None:
            async with gate:
                await single.evaluate(item)

        await asyncio.gather(*(one(item) for item in items))

    async def one_batch() -> None:
        answer = await batch.evaluate({"items": items})
        assert len(answer.result["decisions"]) == count

    async def two_batches() -> None:
        half = count // 2
        await asyncio.gather(
            batch.evaluate({"items": items[:half]}), batch.evaluate({"items": items[half:]})
        )

    print(f"{count} decisions, best of {rounds} rounds, OPA at {url}")
    timings = {
        "one query per image, sequential": await best(one_by_one, rounds, pid),
        "one query per image, 8 in flight": await best(in_flight, rounds, pid),
        "one batch query": await best(one_batch, rounds, pid),
        "two batch queries at once": await best(two_batches, rounds, pid),
    }
    for name, (wall, cpu) in timings.items():
        print(
            f"{name:<36} wall {wall:7.3f}s {count / wall:7.0f}/s"
            f"   OPA CPU {cpu:7.3f}s {cpu / count * 1e3:6.2f} ms/decision"
        )
    query = copies(10_000)
    wall, cpu = await best(lambda: retention.evaluate(query), rounds, pid)
    answer = (await retention.evaluate(query)).result
    print(
        f"retention over 10,000 copies: wall {wall:.3f}s, OPA CPU {cpu:.3f}s; "
        f"{len(answer['delete'])} deleted, {answer['bytes_freed']} bytes freed"
    )
    for engine in (single, batch, retention):
        await engine.close()


@contextlib.asynccontextmanager
async def default_bundle_opa() -> AsyncIterator[ManagedOpa]:
    """A managed OPA serving the repository's policy, signed with a throwaway key."""
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        keys = SigningKeys(*generate_keypair(root / "keys"))
        bundle = build_test_bundle(ROOT, keys, root / "b.tar.gz")
        async with running_opa(bundle.path, keys) as managed:
            assert managed.pid is not None
            yield managed


async def _run(count: int, rounds: int) -> None:
    async with default_bundle_opa() as managed:
        assert managed.pid is not None
        await _compare(managed.url, managed.token, managed.pid, count, rounds)


def main() -> None:
    """Parse arguments and run the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(_run(args.images, args.rounds))


if __name__ == "__main__":
    main()
