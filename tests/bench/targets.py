"""Every performance target of issue 18, side by side in one run, as one JSON and one table.

Run:  .venv/bin/python -m tests.bench.targets --output /tmp/targets.json --markdown /tmp/targets.md
(what each row means and the figures: docs/benchmarks.md, "Issue 18 targets in one command")

Three phases, one after another on the same machine:

1. ``decide`` — ``policy-sidecar bench`` (sidecar/cli/bench.py) on the 10,000-policy bundle:
   a closed loop of ``--concurrency`` callers through gRPC ``Decide`` and straight at OPA with the
   same enriched inputs (throughput), open-loop levels ``--rates`` for ``--duration`` s each
   (p50/p99, p50 ratio to bare OPA at each level), OPA's own ``timer_rego_query_eval_ns`` for one
   decision (medians of ``--opa-samples`` single queries), and the RSS of the sidecar and of its
   OPA after the run.
2. ``cache`` — the same with ``policy.decision_cache`` enabled (skipped by ``--no-cache``): its
   hit rate and what it changes. The bench cycles through 200 distinct requests, so after the
   first 200 every lookup can hit — the best case; a real stream has fewer repeats.
3. ``replication`` — the policy's share of replication CPU: two CNCF ``docker-registry``
   instances (``ci`` → ``prod-us``), ``--images`` scanned ``prod-*`` images of ``--image-mb`` MiB
   in ``ci``, one sidecar process (managed OPA, default bundle, registry enrichment on). First
   one ``Decide`` per image (what a decision costs, caches cold), then one ``Replicate`` per image
   and a wait until every copy job succeeded. CPU = utime + stime from ``/proc`` of the sidecar
   and of its OPA, read before and after each part. Share = CPU of the decide part ÷ CPU of the
   replicate part (which includes its own decisions): the policy's cost against the whole
   replication in the same process tree. The registries' CPU is counted in neither.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import yaml

from sidecar._proto import policy_pb2 as pb
from sidecar._proto import policy_pb2_grpc as pb_grpc
from sidecar.cli.bench import cpu_seconds, process_usage, run_bench
from sidecar.config import load_config
from sidecar.oci import RegistryClients
from tests.support.images import push_image, scanned_labels
from tests.support.ports import free_port
from tests.support.registry import registry_server

__all__ = ["main", "run_targets"]

_MIB = 1 << 20
_DONE = ("succeeded", "failed", "skipped")


def _bench_args(args: argparse.Namespace, *, cache: bool) -> argparse.Namespace:
    return argparse.Namespace(
        concurrency=str(args.concurrency),
        requests=args.requests,
        rate=args.rates,
        duration=args.duration,
        policies=args.policies,
        decision_cache=cache,
        opa_samples=args.opa_samples if not cache else 0,
        sidecar_tree=args.sidecar_tree,
    )


def _replication_config(root: Path, ci: str, prod: str) -> Path:
    def entry(name: str, url: str, environment: str) -> dict[str, Any]:
        return {
            "name": name,
            "type": "generic",
            "endpoint": url,
            "region": "us-east-1",
            "auth": {"type": "anonymous"},
            "metadata": {"environment": environment, "egress_cost_per_gb": 0.01},
        }

    doc = {
        "registries": [entry("ci", ci, "ci"), entry("prod-us", prod, "prod")],
        "policy": {
            "listen": f"127.0.0.1:{free_port()}",
            "metrics_listen": "",
            "state_dir": str(root / "state"),
            "bundle": {"output": str(root / "state" / "bundle.tar.gz")},
            "telemetry": {"log_level": "warning"},
        },
    }
    path = root / "sidecar.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


async def _serve(config_path: Path, tree: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", "--config", str(config_path), "--log-level", "info",
        "serve", stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, cwd=tree or None,
    )  # fmt: skip
    assert proc.stderr is not None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(proc.stderr.readline(), timeout=180)
        if not line:
            raise RuntimeError(f"replication sidecar exited with {await proc.wait()}")
        if b'"sidecar ready"' in line:
            return proc
    raise RuntimeError("replication sidecar not ready in 180 s")


def _tree_cpu(pid: int) -> dict[str, float]:
    usage = process_usage(pid)
    return {"sidecar": usage["sidecar_cpu_s"], "opa": usage["opa_cpu_s"]}


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    out = {k: round(after[k] - before[k], 2) for k in before}
    out["total"] = round(sum(out.values()), 2)
    return out


async def _replication(args: argparse.Namespace) -> dict[str, Any]:
    """Phase 3 (module docstring): decide-only CPU against replicate CPU, same images."""
    with tempfile.TemporaryDirectory(prefix="targets-replication-") as tmp:
        root = Path(tmp)
        with (
            registry_server(root / "ci") as ci,
            registry_server(root / "prod-us") as prod,
        ):
            config_path = _replication_config(root, ci.url, prod.url)
            config = load_config(config_path)
            clients = RegistryClients(config.registries)
            size = max(1, int(args.image_mb * _MIB))
            images = []
            try:
                for i in range(args.images):
                    pushed = await push_image(
                        clients.get("ci"), f"bench/app{i}", tag=f"prod-{i}", seed=i + 1,
                        layer_sizes=(size * 3 // 4, size - size * 3 // 4),
                        labels=scanned_labels(criticality="high"),
                    )  # fmt: skip
                    images.append((f"bench/app{i}", f"prod-{i}", pushed.digest))
            finally:
                await clients.close()
            proc = await _serve(config_path, args.sidecar_tree)
            drain = asyncio.create_task(_drain(proc))
            try:
                return await _drive(proc, config.policy.listen, images, args)
            finally:
                drain.cancel()
                proc.terminate()
                await asyncio.wait_for(proc.wait(), timeout=30)


async def _drain(proc: asyncio.subprocess.Process) -> None:
    assert proc.stderr is not None
    while await proc.stderr.readline():
        pass


async def _drive(
    proc: asyncio.subprocess.Process,
    address: str,
    images: Sequence[tuple[str, str, str]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    def request(repo: str, tag: str, digest: str) -> pb.DecideRequest:
        return pb.DecideRequest(
            image=pb.Image(registry="ci", repository=repo, tag=tag, digest=digest),
            event="push",
        )

    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.PolicyServiceStub(channel)
        limit = asyncio.Semaphore(args.replicate_concurrency)

        async def decide(image: tuple[str, str, str]) -> bool:
            async with limit:
                answer = await stub.Decide(request(*image), timeout=60)
            return bool(answer.decision.routes)

        before = _tree_cpu(proc.pid)
        started = time.perf_counter()
        routed = await asyncio.gather(*(decide(i) for i in images))
        decide_wall = time.perf_counter() - started
        decide_cpu = _delta(before, _tree_cpu(proc.pid))

        async def replicate(image: tuple[str, str, str]) -> list[str]:
            async with limit:
                answer = await stub.Replicate(
                    pb.ReplicateRequest(request=request(*image)), timeout=60
                )
            return list(answer.job_ids)

        before = _tree_cpu(proc.pid)
        started = time.perf_counter()
        job_ids = [j for ids in await asyncio.gather(*(replicate(i) for i in images)) for j in ids]
        states = await _wait_jobs(stub, job_ids, timeout_s=args.replicate_timeout)
        replicate_wall = time.perf_counter() - started
        replicate_cpu = _delta(before, _tree_cpu(proc.pid))

        before = _tree_cpu(proc.pid)
        await asyncio.gather(*(decide(i) for i in images))
        warm_cpu = _delta(before, _tree_cpu(proc.pid))
    succeeded = sum(1 for s in states.values() if s == "succeeded")
    return {
        "images": len(images),
        "image_mib": args.image_mb,
        "routed": sum(routed),
        "jobs": len(job_ids),
        "jobs_succeeded": succeeded,
        "decide": {"wall_s": round(decide_wall, 2), "cpu_s": decide_cpu},
        "decide_warm": {"cpu_s": warm_cpu},
        "replicate": {"wall_s": round(replicate_wall, 2), "cpu_s": replicate_cpu},
        "policy_share": round(decide_cpu["total"] / replicate_cpu["total"], 4)
        if replicate_cpu["total"]
        else None,
        "policy_share_warm": round(warm_cpu["total"] / replicate_cpu["total"], 4)
        if replicate_cpu["total"]
        else None,
        "sidecar_cpu_now_s": round(cpu_seconds(proc.pid), 2),
    }


async def _wait_jobs(
    stub: pb_grpc.PolicyServiceStub, job_ids: Sequence[str], *, timeout_s: float
) -> dict[str, str]:
    states: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for job_id in job_ids:
            if states.get(job_id) not in _DONE:
                states[job_id] = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).state
        if all(s in _DONE for s in states.values()):
            break
        await asyncio.sleep(0.2)
    return states


def _ratio_levels(report: dict[str, Any]) -> list[tuple[float, float | None]]:
    return [(row["rate"], row["p50_ratio"]) for row in report.get("open_loop", [])]


def _at_rate(report: dict[str, Any], rate: float) -> dict[str, Any] | None:
    return next((r for r in report.get("open_loop", []) if r["rate"] == rate), None)


def _table(result: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """The targets of issue 18: what was measured and whether it met the target."""
    rows: list[dict[str, Any]] = []
    decide = result["decide"]
    closed = decide["levels"][-1] if decide["levels"] else None
    if closed is not None:
        rps = closed["sidecar"]["throughput_rps"]
        rows.append({
            "target": f"throughput ≥ 2,000 decisions/s ({closed['concurrency']} callers)",
            "measured": f"{rps:,.0f}/s (bare OPA {closed['opa']['throughput_rps']:,.0f}/s)",
            "met": rps >= 2000,
        })  # fmt: skip
    top = _at_rate(decide, 1000.0)
    if top is not None:
        p99 = top["sidecar"]["p99_ms"]
        rows.append({
            "target": "open loop at 1,000/s: sidecar p99 ≤ 20 ms",
            "measured": f"p99 {p99} ms (achieved {top['sidecar']['achieved_rps']}/s; "
            f"bare OPA p99 {top['opa']['p99_ms']} ms)",
            "met": p99 <= 20,
        })  # fmt: skip
    ratios = _ratio_levels(decide)
    if ratios:
        rows.append({
            "target": "open loop: sidecar p50 ÷ bare OPA p50 ≤ 1.5x at every level",
            "measured": ", ".join(f"{rate:g}/s: {ratio}x" for rate, ratio in ratios),
            "met": all(r is not None and r <= 1.5 for _, r in ratios),
        })  # fmt: skip
    timers = decide.get("opa_timers") or {}
    if timers:
        rows.append({
            "target": "OPA evaluation of one decision (10k bundle) ≤ 0.4 ms",
            "measured": f"timer_rego_query_eval_ns p50 {timers['eval_ms_p50']} ms "
            f"(handler {timers['handler_ms_p50']} ms)",
            "met": timers["eval_ms_p50"] <= 0.4,
        })  # fmt: skip
    rss = decide.get("rss_mib_after_closed_loop") or decide["rss_mib"]
    end = decide["rss_mib"]
    rows.append({
        "target": "RSS of sidecar + OPA ≤ 250 MiB (10k policies)",
        "measured": f"{rss['total']} MiB after the closed loop (sidecar {rss['sidecar']} + OPA "
        f"{rss['opa']}); {end['total']} MiB after the open loop",
        "met": rss["total"] <= 250,
    })  # fmt: skip
    rep = result.get("replication")
    if rep:
        share = rep["policy_share"]
        rows.append({
            "target": "policy CPU < 10 % of replication CPU",
            "measured": f"{share * 100:.1f} % cold, {rep['policy_share_warm'] * 100:.1f} % warm "
            f"({rep['decide']['cpu_s']['total']} s decide vs {rep['replicate']['cpu_s']['total']} s "
            f"replicate, {rep['images']} x {rep['image_mib']} MiB)"
            if share is not None else "no CPU measured",
            "met": share is not None and share < 0.10,
        })  # fmt: skip
    cached = result.get("cache")
    if cached and cached["levels"]:
        row = cached["levels"][-1]
        counts = cached.get("decision_cache") or {}
        top_cached = _at_rate(cached, 1000.0)
        rows.append({
            "target": "lever: decision cache (throughput / p99 at 1,000/s, hit rate)",
            "measured": f"{row['sidecar']['throughput_rps']:,.0f}/s; "
            + (f"p99 {top_cached['sidecar']['p99_ms']} ms; " if top_cached else "")
            + f"hit rate {counts.get('hit_rate', 0) * 100:.1f} %",
            "met": None,
        })  # fmt: skip
    return rows


def _markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| target | measured | met? |", "|---|---|---|"]
    for row in rows:
        met = "—" if row["met"] is None else ("yes" if row["met"] else "**no**")
        lines.append(f"| {row['target']} | {row['measured']} | {met} |")
    return "\n".join(lines) + "\n"


async def run_targets(args: argparse.Namespace) -> dict[str, Any]:
    """Run the phases the module docstring describes; return the report."""
    started = time.perf_counter()
    config = load_config(None)  # unused by the bench: it writes its own config
    result: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "load_before": os.getloadavg()}}
    if "decide" in args.phases:
        result["decide"] = await run_bench(config, _bench_args(args, cache=False))
    if "cache" in args.phases:
        result["cache"] = await run_bench(config, _bench_args(args, cache=True))
    if "replication" in args.phases:
        result["replication"] = await _replication(args)
    result["machine"]["load_after"] = os.getloadavg()
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["targets"] = _table(result, args) if "decide" in result else []
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run, print the table; write JSON/markdown when asked."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.targets", description=__doc__)
    parser.add_argument("--policies", type=int, default=10_000)
    parser.add_argument("--concurrency", default="100", help="closed-loop callers (comma list)")
    parser.add_argument("--requests", type=int, default=3000, help="requests per closed level")
    parser.add_argument("--rates", default="250,500,1000", help="open-loop rates (decisions/s)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per open-loop rate")
    parser.add_argument("--opa-samples", type=int, default=200)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--image-mb", type=float, default=32.0)
    parser.add_argument("--replicate-concurrency", type=int, default=4)
    parser.add_argument("--replicate-timeout", type=float, default=300.0)
    parser.add_argument(
        "--phases", default="decide,cache,replication", help="comma list of phases to run"
    )
    parser.add_argument(
        "--sidecar-tree",
        default="",
        help="run another checkout's sidecar (its root), for the before column; "
        "with an older tree use --phases decide,replication",
    )
    parser.add_argument("--output", help="write the JSON report here")
    parser.add_argument("--markdown", help="write the targets table here")
    args = parser.parse_args(argv)
    args.phases = {p for p in str(args.phases).split(",") if p}
    result = asyncio.run(run_targets(args))
    table = _markdown(result["targets"])
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if args.markdown:
        Path(args.markdown).write_text(table, encoding="utf-8")
    print(json.dumps(result, indent=2))
    print(table)
    print(f"wall time {result['wall_s']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
