"""The policy alone: OPA's evaluation of one decision and of a batch, per source tree, side by side.

Run:  .venv/bin/python -m tests.bench.policy [--source DIR ...] [--reps 5] [--batch 200]

For each ``--source`` tree (a checkout: its ``rego/`` and ``bundles/default``; default: this
one; give two — e.g. a worktree of main and this one — to compare before and after) it builds two
bundles with this checkout's bundle builder: the default bundle, and the 10,000-policy bundle of
``policy-sidecar bench --policies 10000`` (5,000 tenant rules under 1,000 tenants and 5,000
Freightliner legacy rules; ``sidecar/cli/bench.py``). Then, repetition by repetition with the
trees interleaved (so a noisy neighbour hits every tree alike), it measures:

- ``opa bench`` of ``data.replication.decision`` on one input (the bench's enriched request for
  the 10k bundle, ``tests.bench.opa_client_compare.policy_input`` for the default one): ns/op,
  allocations/op (load-independent) and the median ``timer_rego_query_eval_ns``;
- the same on an image a legacy rule routes (10k bundle: ``legacy7/app``), the case that reads
  ``data.replication.legacy``;
- ``opa bench`` of ``data.replication.batch.decisions`` over ``--batch`` inputs, per item;
- over HTTP on a managed OPA: ``OpaEngine.evaluate`` once per input, one after another, against
  one ``OpaEngine.evaluate_batch`` of the same inputs (wall time, OPA's own eval time, and the
  OPA process's CPU time — on a loaded machine wall times of long and short operations stretch
  differently, allocations and CPU time do not).

Medians over ``--reps`` are printed as a table (and as JSON with ``--output``).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from sidecar.app.bundle import build_local_bundle
from sidecar.bundles.keys import generate_keypair
from sidecar.cli.bench import _bench_config, _request
from sidecar.config import load_config
from sidecar.enrich import FactTrust, StaticEnricher
from sidecar.policy.opa import OpaEngine
from sidecar.tools import find_tool
from tests.bench.batch_decisions import inputs as default_inputs
from tests.bench.opa_client_compare import policy_input
from tests.support.opa import SigningKeys, build_test_bundle, running_opa

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[2]
DECISION = "data.replication.decision"
BATCH = "data.replication.batch.decisions"


def _opa_bench(
    opa: Path, bundle: Path, policy_input: Any, query: str, work: Path
) -> dict[str, float]:
    """One ``opa bench`` run: ns/op, allocs/op, B/op and the median query eval ns."""
    path = work / "bench-input.json"
    path.write_text(json.dumps(policy_input), encoding="utf-8")
    out = subprocess.run(
        [str(opa), "bench", "-b", str(bundle), "-i", str(path), "--format", "json", query],
        check=True, capture_output=True, timeout=600,
    ).stdout  # fmt: skip
    doc = json.loads(out)
    n = doc["N"]
    return {
        "ns_op": doc["T"] / n,
        "allocs_op": doc["MemAllocs"] / n,
        "bytes_op": doc["MemBytes"] / n,
        "eval_ns_median": doc["Extra"]["histogram_timer_rego_query_eval_ns_median"],
    }


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _bench_inputs(config_path: Path, count: int) -> list[dict[str, Any]]:
    """The enriched inputs of ``policy-sidecar bench`` (its requests 0..count-1)."""
    enricher = StaticEnricher(load_config(config_path), trust=FactTrust.operator())
    return [(await enricher.enrich(_request(i))).to_json() for i in range(count)]


def _build(source: Path, work: Path, keys: SigningKeys) -> dict[str, Path]:
    """Build the default and the 10k-policy bundle of ``source`` under ``work``."""
    work.mkdir(parents=True)
    default = build_test_bundle(source, keys, work / "default.tar.gz").path
    big = work / "b10k"
    big.mkdir()
    doc = _bench_config(big, 10_000)
    doc["policy"]["bundle"].update(source_dir=str(source), output=str(work / "10k.tar.gz"))
    (big / "bench.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    built = build_local_bundle(load_config(big / "bench.yaml"), signing_key=keys.private)
    return {"default": default, "10k": built.bundle.path, "config": big / "bench.yaml"}


async def _http(bundle: Path, keys: SigningKeys, items: list[dict[str, Any]]) -> dict[str, float]:
    """Wall and OPA eval seconds of len(items) single queries and of one batch query."""
    async with running_opa(bundle, keys) as managed:
        engine = OpaEngine(managed.url, timeout_s=600, token=managed.token)
        try:
            await engine.evaluate(items[0])  # warm the connection and the compiled query
            await engine.evaluate_batch(items[:2], timeout_s=600)
            pid = managed.pid
            assert pid is not None
            started, cpu, eval_ns = time.perf_counter(), _cpu_s(pid), 0
            for item in items:
                eval_ns += (await engine.evaluate(item)).eval_ns
            single_wall, single_cpu = time.perf_counter() - started, _cpu_s(pid) - cpu
            started, cpu = time.perf_counter(), _cpu_s(pid)
            answer = await engine.evaluate_batch(items, timeout_s=600)
            batch_wall, batch_cpu = time.perf_counter() - started, _cpu_s(pid) - cpu
        finally:
            await engine.close()
    return {
        "single_wall_s": single_wall,
        "single_opa_cpu_s": single_cpu,
        "batch_opa_cpu_s": batch_cpu,
        "single_eval_s": eval_ns / 1e9,
        "batch_wall_s": batch_wall,
        "batch_eval_s": answer.eval_ns / 1e9,
    }


def _legacy_routed(item: dict[str, Any]) -> dict[str, Any]:
    routed = copy.deepcopy(item)
    routed["image"].update(repository="legacy7/app", tenant=None)
    return routed


async def _run(sources: list[Path], reps: int, batch: int, output: Path | None) -> None:
    opa = find_tool("opa")
    with tempfile.TemporaryDirectory(prefix="policy-bench-") as tmp:
        work = Path(tmp)
        keys = SigningKeys(*generate_keypair(work / "keys"))
        bundles = {str(s): _build(s, work / f"tree{i}", keys) for i, s in enumerate(sources)}
        big_items = await _bench_inputs(next(iter(bundles.values()))["config"], batch)
        cases = {
            "default": (policy_input(), default_inputs(batch)),
            "10k": (big_items[0], big_items),
        }
        samples: dict[str, dict[str, list[float]]] = {}
        for rep in range(reps):
            for source, built in bundles.items():
                for name, (single, items) in cases.items():
                    rows = {
                        f"{name} decision": _opa_bench(opa, built[name], single, DECISION, work),
                        f"{name} batch item": {
                            k: v / batch
                            for k, v in _opa_bench(
                                opa, built[name], {"items": items}, BATCH, work
                            ).items()
                        },
                        f"{name} http": await _http(built[name], keys, items),
                    }
                    if name == "10k":
                        routed = _legacy_routed(single)
                        rows["10k legacy-routed decision"] = _opa_bench(
                            opa, built[name], routed, DECISION, work
                        )
                    for row, values in rows.items():
                        for key, value in values.items():
                            samples.setdefault(f"{source}\t{row}", {}).setdefault(key, []).append(
                                value
                            )
            print(f"repetition {rep + 1}/{reps} done, load average {os.getloadavg()[0]:.1f}")
    report = {
        key: {k: statistics.median(v) for k, v in values.items()} for key, values in samples.items()
    }
    _print(report, batch)
    if output:
        await asyncio.to_thread(output.write_text, json.dumps(report, indent=2), encoding="utf-8")


def _print(report: dict[str, dict[str, float]], batch: int) -> None:
    for key, values in report.items():
        source, row = key.split("\t")
        if row.endswith("http"):
            single, batched = values["single_wall_s"], values["batch_wall_s"]
            print(
                f"{source}  {row:<28} {batch} single: {single:6.3f}s ({batch / single:6.0f}/s, "
                f"OPA eval {values['single_eval_s']:.3f}s)  one batch: {batched:6.3f}s "
                f"({batch / batched:6.0f}/s, OPA eval {values['batch_eval_s']:.3f}s)  "
                f"batch/single rate {single / batched:4.2f}x  OPA CPU single "
                f"{values['single_opa_cpu_s']:.3f}s batch {values['batch_opa_cpu_s']:.3f}s"
            )
        else:
            print(
                f"{source}  {row:<28} eval median {values['eval_ns_median'] / 1e6:7.3f} ms  "
                f"{values['ns_op'] / 1e6:7.3f} ms/op  {values['allocs_op']:8.0f} allocs/op  "
                f"{values['bytes_op'] / 1024:7.1f} KiB/op"
            )


def main() -> None:
    """Parse arguments and run the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, action="append", help="checkout to measure")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    sources = [s.resolve() for s in (args.source or [ROOT])]
    asyncio.run(_run(sources, args.reps, args.batch, args.output))


if __name__ == "__main__":
    main()
