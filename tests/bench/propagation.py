"""Measure bundle propagation: publish → every OPA (or every sidecar's decisions) has the revision.

Run:  .venv/bin/python -m tests.bench.propagation [--rounds 20] [--stores s3,gcs,http] [--opas 2]
      .venv/bin/python -m tests.bench.propagation --via-sidecars [--rounds 20] [--sidecars 2]

For each store (S3 on moto, GCS on fake-gcs-server, the built-in BundleServer) it starts the
store, publishes alternating signed revisions ``--rounds`` times and times each round from the
start of the publish call. Rounds start at a random offset into OPA's polling cycle, as real
publishes do.
- Default: ``--opas`` bare OPAs with the config ``opa_config`` renders (the shipped deploy/opa
  delays, 2-4 s for object stores; long polling for the built-in server); a round ends when every
  OPA reports the new revision (``?provenance=true``, polled every 20 ms).
- ``--via-sidecars``: ``--sidecars`` in-process sidecars whose managed OPAs pull from the store
  (``policy.bundle.service``, its default polling unless ``--min-delay/--max-delay``) while each
  answers gRPC ``Decide`` calls back to back; a round ends when every sidecar has answered a
  decision whose ``bundle_revision`` is the new one. The production bundle is published.
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
from sidecar.config._bundle import BundleServiceSettings
from sidecar.telemetry import configure_logging
from tests.support.bundle_stores import STORE_KINDS, bundle_store, polling_opa, wait_for
from tests.support.opa import SigningKeys, build_test_bundle, write_source_tree
from tests.support.pulling import build_revision, feeding, pulling_config, signed_config
from tests.support.sidecar import running_sidecar

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


async def _measure_sidecars(
    kind: str, args: argparse.Namespace, work: Path, keys: SigningKeys
) -> list[float]:
    config = signed_config(keys)
    bundles = [build_revision(config, work / "built", rev) for rev in ("rev-a", "rev-b")]
    timings: list[float] = []
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(bundle_store(kind, work / kind))
        await store.publish(bundles[0])
        sidecars = [
            await stack.enter_async_context(
                running_sidecar(
                    pulling_config(
                        config, store, work / f"sidecar-{index}",
                        min_delay_s=args.min_delay, max_delay_s=args.max_delay,
                        long_poll_timeout_s=BundleServiceSettings("", "").long_poll_timeout_s,
                    )
                )
            )
            for index in range(args.sidecars)
        ]  # fmt: skip
        feeds = await stack.enter_async_context(feeding(sidecars))
        for feed, task in feeds:
            await feed.until("rev-a", task, timeout_s=60)
        for index in range(args.rounds):
            bundle = bundles[(index + 1) % 2]
            await asyncio.sleep(random.uniform(0, args.max_delay))  # noqa: S311
            started = time.monotonic()
            await store.publish(bundle)
            arrived = [
                await feed.until(bundle.revision, task, since=started, timeout_s=60)
                for feed, task in feeds
            ]
            timings.append(max(arrived) - started)
            print(f"  {kind} round {index + 1}: {timings[-1]:.3f}s", file=sys.stderr, flush=True)
        decided = sum(len(feed.answers) for feed, _ in feeds)
        degraded = sum(answer.degraded for feed, _ in feeds for answer in feed.answers)
        print(f"  {kind}: {decided} decisions, {degraded} degraded", file=sys.stderr, flush=True)
    return timings


async def _main(args: argparse.Namespace) -> int:
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    rows: list[tuple[str, list[float]]] = []
    measure = _measure_sidecars if args.via_sidecars else _measure
    with tempfile.TemporaryDirectory(prefix="bench-propagation-") as tmp:
        work = Path(tmp)
        keys = SigningKeys(*generate_keypair(work / "keys"))
        for kind in stores:
            rows.append((kind, await measure(kind, args, work / kind, keys)))
    reached = (
        f"the decisions of {args.sidecars} sidecars" if args.via_sidecars else f"{args.opas} OPAs"
    )
    print(
        f"\nBundle propagation to {reached}, {args.rounds} publishes per store "
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
    parser.add_argument(
        "--via-sidecars", action="store_true", help="measure at the decisions of pulling sidecars"
    )
    parser.add_argument("--sidecars", type=int, default=2, help="sidecars per store")
    parser.add_argument(
        "--min-delay", type=int, help="OPA min polling delay (s); default 2, sidecars: 1"
    )
    parser.add_argument(
        "--max-delay", type=int, help="OPA max polling delay (s); default 4, sidecars: 2"
    )
    args = parser.parse_args()
    # Bare OPAs: the shipped deploy/opa delays; sidecars: policy.bundle.service's defaults.
    pulled = BundleServiceSettings("", "")
    defaults = (pulled.min_delay_s, pulled.max_delay_s) if args.via_sidecars else (2, 4)
    args.min_delay = args.min_delay or defaults[0]
    args.max_delay = args.max_delay or defaults[1]
    # One JSON line per decision on stderr would drown the round figures (and cost CPU).
    configure_logging("warning")
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
