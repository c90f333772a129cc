"""Measure bundle propagation: publish → every OPA serves the new revision, per store.

Run:  .venv/bin/python -m tests.bench.propagation [--rounds 20] [--stores s3,gcs,http] [--opas 2]

For each store (S3 on moto, GCS on fake-gcs-server, the built-in BundleServer) it starts the
store and ``--opas`` real OPAs with the config ``opa_config`` renders — by default the shipped
deploy/opa polling delays (2-4 s for object stores; long polling for the built-in server) — then
publishes alternating signed revisions ``--rounds`` times, timing each from the start of the
publish call until every OPA reports the new revision (``?provenance=true``, polled every 20 ms).
Rounds start at a random offset into OPA's polling cycle, as real publishes do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sidecar.bundles.keys import generate_keypair
from tests.support.bundle_stores import STORE_KINDS, bundle_store, polling_opa, wait_for
from tests.support.opa import SigningKeys, build_test_bundle, write_source_tree

_REQUIREMENT_S, _TARGET_P95_S = 30.0, 5.0


def _percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile: an observed value, no interpolation between rounds."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


async def _measure(
    kind: str, args: argparse.Namespace, work: Path, keys: SigningKeys
) -> list[float]:
    bundles = [
        build_test_bundle(
            write_source_tree(work / f"src-{rev}", settings={"mode": rev}), keys,
            work / f"{rev}.tar.gz", revision=rev,
        )
        for rev in ("rev-a", "rev-b")
    ]  # fmt: skip
    polling = {"min_delay_s": args.min_delay, "max_delay_s": args.max_delay}
    timings: list[float] = []
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(bundle_store(kind, work / kind))
        config = store.opa_config(keys.public, **polling)
        running = [
            await stack.enter_async_context(
                polling_opa(config, work / kind / f"opa-{index}", store.opa_env)
            )
            for index in range(args.opas)
        ]
        await store.publish(bundles[0])
        await wait_for(running, "rev-a", timeout_s=60)
        for index in range(args.rounds):
            bundle = bundles[(index + 1) % 2]
            # A random pause so publishes land anywhere in OPA's polling cycle.
            await asyncio.sleep(random.uniform(0, args.max_delay))  # noqa: S311
            started = time.monotonic()
            await store.publish(bundle)
            took = await wait_for(running, bundle.revision, since=started, timeout_s=60)
            timings.append(took)
            print(f"  {kind} round {index + 1}: {took:.3f}s", file=sys.stderr, flush=True)
    return timings


async def _main(args: argparse.Namespace) -> int:
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    rows: list[tuple[str, list[float]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-propagation-") as tmp:
        work = Path(tmp)
        keys = SigningKeys(*generate_keypair(work / "keys"))
        for kind in stores:
            rows.append((kind, await _measure(kind, args, work / kind, keys)))
    print(
        f"\nBundle propagation to {args.opas} OPAs, {args.rounds} publishes per store "
        f"(object-store polling {args.min_delay}-{args.max_delay} s; http = long polling)\n"
    )
    print("| store | p50 (s) | p95 (s) | max (s) | mean (s) |")
    print("|---|---|---|---|---|")
    worst_p95 = 0.0
    for kind, timings in rows:
        p95 = _percentile(timings, 0.95)
        worst_p95 = max(worst_p95, p95)
        print(
            f"| {kind} | {_percentile(timings, 0.50):.3f} | {p95:.3f} | {max(timings):.3f} "
            f"| {statistics.fmean(timings):.3f} |"
        )
    print(f"\nrequirement < {_REQUIREMENT_S:.0f} s; target p95 < {_TARGET_P95_S:.0f} s: "
          f"{'met' if worst_p95 < _TARGET_P95_S else 'MISSED'}")  # fmt: skip
    return 0 if worst_p95 < _REQUIREMENT_S else 1


def main() -> int:
    """Parse arguments, run the measurement and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=20, help="publishes per store")
    parser.add_argument("--stores", default=",".join(STORE_KINDS), help="comma-separated stores")
    parser.add_argument("--opas", type=int, default=2, help="OPA processes per store")
    parser.add_argument("--min-delay", type=int, default=2, help="OPA min polling delay (s)")
    parser.add_argument("--max-delay", type=int, default=4, help="OPA max polling delay (s)")
    return asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
