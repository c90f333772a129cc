"""Reconcile benchmark (a first stub): observe, decide batched vs one query per image, plan, re-run.

Run:  .venv/bin/python -m tests.bench.reconcile [--images 300] [--batch 200] [--output r.json]
      [--copied-every 3] [--no-apply]

The five-registry fleet (tests/support/fleet.py) with ``--images`` tags pushed to ``ci`` across
``images / 10`` repositories (small images: the registries' work is listing and HEADs, not bytes),
every ``--copied-every``-th one (default: a third) already copied where its decision routes it
(``prod-eu`` and ``prod-us``); ``--copied-every 1 --no-apply`` seeds a fleet already converged
(the 10,000-tag run: 3,334 images in ``ci``, ``prod-eu`` and ``prod-us``) and skips the apply.
One reconciler on a managed OPA with the default bundle then:
observes every registry, decides every ``ci`` tag once cold (filling the enrichment caches), then
batched (``batch_size`` per OPA query) and one query per image (same DecisionService, same
enrichment; batched as the reconciler does, ``batch_concurrency`` queries in flight, and one batch
at a time beside it), then — where the time goes — enrichment alone and the same enriched inputs straight to
OPA, batched and one query each; plans, applies (copies through the worker pool; not with
``--no-apply``), and plans again (the no-change re-run). Wall times per phase go to stdout as
JSON. Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from sidecar.app.reconcile import reconciler
from sidecar.config import ReconcileSettings, load_config
from sidecar.model.decision import DecideRequest, ImageRef
from sidecar.oci import RegistryClients
from sidecar.reconcile import Observer, present_at
from sidecar.telemetry import Telemetry
from tests.support.fleet import registry_fleet
from tests.support.images import push_image, scanned_labels
from tests.support.sidecar import isolated_config


async def _seed(clients: RegistryClients, images: int, copied_every: int) -> None:
    labels = scanned_labels()
    limit = asyncio.Semaphore(8)

    async def one(n: int) -> None:
        repository, tag = f"team{n % max(1, images // 10)}/app", f"prod-{n}"
        targets = ("ci", "prod-eu", "prod-us") if n % copied_every == 0 else ("ci",)
        async with limit:
            for name in targets:
                client = clients.get(name)
                await push_image(
                    client, repository, seed=n, labels=labels, layer_sizes=(512,), tag=tag
                )

    await asyncio.gather(*(one(n) for n in range(images)))


async def _timed(phase: str, report: dict[str, Any], work: Any) -> Any:
    started = time.perf_counter()
    result = await work
    report[phase] = round(time.perf_counter() - started, 3)
    return result


async def run(
    images: int, batch: int, *, copied_every: int = 3, apply: bool = True
) -> dict[str, Any]:
    """Run every phase once on a fresh fleet; return the report."""
    report: dict[str, Any] = {"images": images, "batch_size": batch, "cpus": os.cpu_count()}
    with (
        tempfile.TemporaryDirectory(prefix="reconcile-bench-") as tmp,
        registry_fleet(Path(tmp), replication={"workers": 8}) as fleet,
    ):
        loaded = load_config(fleet.config_path)
        clients = RegistryClients(loaded.registries)
        await _timed("seed_s", report, _seed(clients, images, copied_every))
        await clients.close()
        settings = ReconcileSettings(sources=("ci",), batch_size=batch, concurrency=8)
        config = isolated_config(loaded, Path(tmp) / "state")
        config = dataclasses.replace(
            config, policy=dataclasses.replace(config.policy, reconcile=settings)
        )
        telemetry = Telemetry("reconcile-bench")
        async with reconciler(config, telemetry, run_workers=True) as rec:
            parts_clients = RegistryClients(config.registries)
            observer = Observer(parts_clients, settings)
            observation = await _timed(
                "observe_s", report, observer.observe([r.name for r in config.registries])
            )
            report["tags_observed"] = len(observation.tags)
            report["observe_requests"] = observation.requests
            originals = [t for t in observation.tags if t.registry == "ci"]
            requests = [
                DecideRequest(
                    image=ImageRef(t.registry, t.repository, t.tag, t.digest),
                    event="reconcile",
                    present_at=present_at(t, observation, ("ci",)),
                )
                for t in originals
            ]
            decisions = rec._decisions

            async def batched(concurrency: int = settings.batch_concurrency) -> None:
                # As the reconciler decides: `batch_concurrency` batch queries in flight.
                limit = asyncio.Semaphore(concurrency)

                async def one(start: int) -> None:
                    async with limit:
                        await decisions.decide_batch(
                            requests[start : start + batch], enrich_concurrency=8, timeout_s=30
                        )

                await asyncio.gather(*(one(s) for s in range(0, len(requests), batch)))

            async def single() -> None:
                for request in requests:
                    await decisions.decide(request)

            # A cold pass first fills the enrichment caches (config blobs by digest), so the two
            # timed passes compare OPA round trips, not who read the registry first.
            await _timed("decide_cold_s", report, batched())
            await _timed("decide_batched_s", report, batched())
            await _timed("decide_batched_one_at_a_time_s", report, batched(1))
            await _timed("decide_single_s", report, single())

            # Where the time goes: the same enriched inputs straight to OPA, batched and one
            # query each (no enrichment), and the enrichment alone.
            docs: list[Any] = []

            async def enrich_only() -> None:
                for request in requests:
                    docs.append((await decisions._enricher.enrich(request)).to_json())

            async def opa_batched() -> None:
                engine = decisions._batch_engine
                assert engine is not None
                limit = asyncio.Semaphore(settings.batch_concurrency)

                async def one(start: int) -> None:
                    async with limit:
                        answer = await engine.evaluate_batch(
                            docs[start : start + batch], timeout_s=60
                        )
                    report["opa_batched_eval_ns"] = report.get("opa_batched_eval_ns", 0) + (
                        answer.eval_ns
                    )

                await asyncio.gather(*(one(s) for s in range(0, len(docs), batch)))

            async def opa_single() -> None:
                for doc in docs:
                    await decisions._engine.evaluate(doc)

            await _timed("enrich_only_s", report, enrich_only())
            await _timed("opa_only_batched_s", report, opa_batched())
            await _timed("opa_only_single_s", report, opa_single())
            plan = await _timed("plan_s", report, rec.plan())
            report["plan_counts"] = plan.counts()
            report["unreadable"] = dict(plan.unreadable)
            report["plan_degraded"] = plan.degraded
            if apply:
                _, applied = await _timed("apply_s", report, rec.run(dry_run=False))
                report["jobs"] = len(applied.jobs) if applied else 0
            again = await _timed("rerun_no_change_s", report, rec.plan())
            report["rerun_counts"] = again.counts()
            await parts_clients.close()
        telemetry.shutdown()
    report["decisions_per_s_batched"] = round(images / report["decide_batched_s"], 1)
    report["decisions_per_s_single"] = round(images / report["decide_single_s"], 1)
    report["batched_vs_single"] = round(report["decide_single_s"] / report["decide_batched_s"], 2)
    return report


def main() -> None:
    """Parse arguments, run, print (and optionally write) the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--copied-every", type=int, default=3, help="every n-th image pre-copied")
    parser.add_argument("--no-apply", action="store_true", help="plan twice, never apply")
    args = parser.parse_args()
    report = asyncio.run(
        run(args.images, args.batch, copied_every=args.copied_every, apply=not args.no_apply)
    )
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
