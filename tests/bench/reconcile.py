"""Reconcile benchmark: observe, decide batched vs one query per image, plan, re-run.

Run:  .venv/bin/python -m tests.bench.reconcile [--images 300] [--batch 200] [--output r.json]
      [--copied-every 3] [--no-apply] [--rounds 3] [--referrers-ttl-s 600]

The five-registry fleet (tests/support/fleet.py) with ``--images`` tags pushed to ``ci`` across
``images / 10`` repositories (small images: the registries' work is listing and HEADs, not bytes),
every ``--copied-every``-th one (default: a third) already copied where its decision routes it
(``prod-eu`` and ``prod-us``); ``--copied-every 1 --no-apply`` seeds a fleet already converged
(the 10,000-tag run: 3,334 images in ``ci``, ``prod-eu`` and ``prod-us``) and skips the apply.
One reconciler on a managed OPA with the default bundle then observes every registry and
decides every ``ci`` tag once cold (reading each image's manifest, config and referrers from the
registry). Then, ``--rounds`` times, side by side:

- ``batched``: the reconciler's own decide step (``Reconciler.decide``) — every input enriched,
  then batches of at most ``batch_size`` inputs per OPA query, ``batch_concurrency`` in flight;
- ``single``: one ``DecisionService.decide()`` call per image, one after another;

both from the same enrichment caches. ``--referrers-ttl-s`` (``policy.replication.referrers_ttl_s``,
default here 600) keeps the referrers read cold valid through the rounds, so both sides compare
what a decision costs, not who re-read the registry first; what those reads cost is the cold
pass. Medians of the rounds are reported. Then — where the time goes — enrichment alone and the
same enriched inputs straight to OPA, batched and one query each; a plan, an apply (copies
through the worker pool; not with ``--no-apply``), and a plan again (the no-change re-run).
Wall times per phase go to stdout as JSON. Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sidecar.app.reconcile import reconciler
from sidecar.config import ReconcileSettings, load_config
from sidecar.model.decision import DecideRequest, ImageRef
from sidecar.oci import RegistryClients
from sidecar.reconcile import RECONCILER, Observer, batch_spans, present_at
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
    images: int,
    batch: int,
    *,
    copied_every: int = 3,
    apply: bool = True,
    rounds: int = 3,
    referrers_ttl_s: float = 600.0,
) -> dict[str, Any]:
    """Run every phase on a fresh fleet (the decide comparison ``rounds`` times); return the report."""
    report: dict[str, Any] = {
        "images": images,
        "batch_size": batch,
        "cpus": os.cpu_count(),
        "referrers_ttl_s": referrers_ttl_s,
    }
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
        policy = config.policy
        config = dataclasses.replace(
            config,
            policy=dataclasses.replace(
                policy,
                reconcile=settings,
                replication=dataclasses.replace(
                    policy.replication, referrers_ttl_s=referrers_ttl_s
                ),
            ),
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
                    caller=RECONCILER,
                    size_bytes=t.size_bytes,
                    present_at=present_at(t, observation, ("ci",)),
                )
                for t in originals
            ]
            decisions = rec._decisions

            async def batched() -> None:
                # The reconciler's own decide step: every input enriched, the tenants' usage
                # measured, then even batches, `batch_concurrency` queries in flight.
                await rec.decide(observation)

            async def single() -> None:
                for request in requests:
                    await decisions.decide(request)

            # The cold pass reads every image from the registry and fills the caches.
            await _timed("decide_cold_s", report, batched())
            for n in range(rounds):
                await _timed(f"decide_batched_s_{n}", report, batched())
                await _timed(f"decide_single_s_{n}", report, single())
            for side in ("batched", "single"):
                runs = [report.pop(f"decide_{side}_s_{n}") for n in range(rounds)]
                report[f"decide_{side}_rounds_s"] = runs
                report[f"decide_{side}_s"] = round(statistics.median(runs), 3)

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

                async def one(start: int, end: int) -> None:
                    async with limit:
                        answer = await engine.evaluate_batch(docs[start:end], timeout_s=60)
                    report["opa_batched_eval_ns"] = report.get("opa_batched_eval_ns", 0) + (
                        answer.eval_ns
                    )

                spans = batch_spans(len(docs), batch, settings.batch_concurrency)
                await asyncio.gather(*(one(start, end) for start, end in spans))

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
    parser.add_argument("--rounds", type=int, default=3, help="batched/single comparisons")
    parser.add_argument(
        "--referrers-ttl-s", type=float, default=600.0, help="policy.replication.referrers_ttl_s"
    )
    args = parser.parse_args()
    report = asyncio.run(
        run(
            args.images,
            args.batch,
            copied_every=args.copied_every,
            apply=not args.no_apply,
            rounds=args.rounds,
            referrers_ttl_s=args.referrers_ttl_s,
        )
    )
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
