"""What OPA's API token authorization costs: OPA CPU and latency per decision, with and without.

Run:  .venv/bin/python -m tests.bench.opa_api_auth [--queries 3000] [--rounds 3]

Two managed OPAs serve the case config's real bundle: one as the sidecar runs it (``--authentication
=token --authorization=basic``, the token policy of ``sidecar/policy/_api_guard.py``), one with
both switched off by later flags. The same DESIGN §3.1 input is sent sequentially to each; OPA's
CPU time (``/proc/PID/stat``) per request is the figure that matters (OPA's throughput bounds
the sidecar's), latency is reported too. Best round of each, so a noisy neighbour does not decide.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from sidecar.app.bundle import build_local_bundle
from sidecar.config import load_config
from sidecar.policy import ManagedOpa, OpaEngine
from sidecar.tools import find_tool
from tests.bench.opa_client_compare import policy_input
from tests.support.sidecar import isolated_config

__all__ = ["main"]

CASES = Path(__file__).resolve().parents[1] / "cases" / "sidecar.yaml"
OPEN_API = ("--authentication=off", "--authorization=off")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(managed: ManagedOpa, queries: int, rounds: int) -> tuple[float, float, float]:
    """Return the best round's (OPA CPU µs/request, mean µs, p50 µs)."""
    engine = OpaEngine(managed.url, timeout_s=10, token=managed.token)
    body = policy_input()
    pid = managed.pid
    assert pid is not None
    best: tuple[float, float, float] | None = None
    try:
        for _ in range(200):
            await engine.evaluate(body)
        for _ in range(rounds):
            latencies = []
            cpu = _cpu_s(pid)
            for _ in range(queries):
                started = time.perf_counter()
                await engine.evaluate(body)
                latencies.append(time.perf_counter() - started)
            used = (_cpu_s(pid) - cpu) / queries * 1e6
            latencies.sort()
            row = (used, statistics.mean(latencies) * 1e6, latencies[len(latencies) // 2] * 1e6)
            best = row if best is None or row[0] < best[0] else best
    finally:
        await engine.close()
    assert best is not None
    return best


async def _run(queries: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="opa-api-auth-") as tmp:
        config = isolated_config(load_config(CASES), Path(tmp))
        local = await asyncio.to_thread(build_local_bundle, config)
        for name, extra in (("token + authz", ()), ("no auth", OPEN_API)):
            async with ManagedOpa(
                find_tool("opa"),
                Path(local.bundle.path),
                verification_key=local.verification_key,
                extra_args=extra,
            ) as managed:
                cpu, mean, p50 = await _measure(managed, queries, rounds)
            print(
                f"{name:14s} OPA CPU {cpu:5.0f} µs/request  mean {mean:5.0f} µs  p50 {p50:5.0f} µs"
            )


def main() -> None:
    """Parse the arguments and print one line per variant."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(_run(args.queries, args.rounds))


if __name__ == "__main__":
    main()
