"""CPU cost of OpenTelemetry's aiohttp client instrumentation per HTTP request.

Run:  .venv/bin/python -m tests.bench.http_instrumentation [--requests 2000]

Starts a bare OPA (the pinned binary) and sends ``--requests`` small queries through one aiohttp
session inside a sampled span, with and without the trace configs of
``sidecar.telemetry.http_client_tracing``: once with a recording tracer provider (spans kept in
memory) and once with OpenTelemetry's global no-op provider. Reports the client's process CPU per
request (OPA runs in its own process, so only our side is counted). Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import Iterator

import aiohttp

from sidecar.telemetry import Telemetry, http_client_tracing
from sidecar.testing import InMemorySpans
from sidecar.tools import find_tool
from tests.support.ports import free_port


async def _cpu_per_request(url: str, configs: list[aiohttp.TraceConfig], requests: int) -> float:
    async with aiohttp.ClientSession(trace_configs=configs) as session:
        for _ in range(200):  # warm the connection pool and the code paths
            async with session.get(url) as resp:
                await resp.read()
        started = time.process_time()
        for _ in range(requests):
            async with session.get(url) as resp:
                await resp.read()
        return (time.process_time() - started) / requests


@contextlib.contextmanager
def _bare_opa() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [str(find_tool("opa")), "run", "--server", f"--addr=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


async def _ready(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{url}/health") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"OPA at {url} did not start")


async def main(requests: int) -> dict[str, float]:
    telemetry = Telemetry("http-instrumentation-bench", span_exporter=InMemorySpans())
    report: dict[str, float] = {}
    with _bare_opa() as base:
        await _ready(base)
        url = f"{base}/v1/data/system"
        with telemetry.tracer.start_as_current_span("bench"):
            for label, configs in (
                ("plain", []),
                ("instrumented, recording provider", http_client_tracing(telemetry.provider)),
                ("instrumented, no-op provider", http_client_tracing(None)),
                ("plain (again)", []),
            ):
                report[label] = round(await _cpu_per_request(url, configs, requests) * 1e6, 1)
    telemetry.shutdown()
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    print(json.dumps({"cpu_us_per_request": asyncio.run(main(args.requests))}, indent=2))
