"""What ``policy.reconcile.on_scan_expiry`` adds to a plan: the expiry query beside the batch.

Run:  .venv/bin/python -m tests.bench.scan_expiry_query [--images 2000] [--batch 200] [--rounds 3]

One managed OPA on the checkout's real bundle; the same inputs as tests/bench/batch_decisions.py
(a 12-registry inventory, every input scanned). Each round sends them in batches of ``--batch``,
one query at a time, to ``data.replication.batch.decisions`` (what every plan costs) and to
``data.replication.expiry.next_ns`` (what an enabled trigger adds after it). The best round of
each is reported, wall and the CPU time OPA spent (from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from sidecar.policy.opa import BATCH_PATH, OpaEngine
from sidecar.reconcile import EXPIRY_PATH
from tests.bench.batch_decisions import best, default_bundle_opa, inputs

__all__ = ["main"]


async def _compare(url: str, token: str, pid: int, count: int, *, size: int, rounds: int) -> None:
    items = inputs(count)
    batches: list[list[dict[str, Any]]] = [items[i : i + size] for i in range(0, count, size)]
    engine = OpaEngine(url, timeout_s=600, token=token)
    found: list[Any] = []

    def query(path: str) -> Any:
        async def run() -> None:
            found.clear()
            for batch in batches:
                answer, _, _ = await engine.query(path, {"items": batch}, timeout_s=600)
                found.extend(answer)

        return run

    results = {}
    for name, path in (("batch decisions", BATCH_PATH), ("expiry next_ns", EXPIRY_PATH)):
        results[name] = await best(query(path), rounds, pid)
        wall, cpu = results[name]
        print(f"{name}: {count} inputs in batches of {size}: wall {wall:.3f}s, OPA CPU {cpu:.3f}s")
    ahead = [n for n in found if n is not None]
    print(f"expiry instants ahead: {len(ahead)} of {len(found)}")
    decide, expiry = results["batch decisions"], results["expiry next_ns"]
    print(
        f"expiry / decisions: wall {expiry[0] / decide[0]:.2f}, OPA CPU {expiry[1] / decide[1]:.2f}"
    )
    await engine.close()


async def _run(count: int, size: int, rounds: int) -> None:
    async with default_bundle_opa() as managed:
        assert managed.pid is not None
        await _compare(managed.url, managed.token, managed.pid, count, size=size, rounds=rounds)


def main() -> None:
    """Parse arguments and run the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(_run(args.images, args.batch, args.rounds))


if __name__ == "__main__":
    main()
