"""``policy-sidecar bench``: Decide latency/throughput next to direct OPA REST calls on the same bundle.

The benchmark starts a real sidecar *process* (its own managed OPA, signed bundle carrying
``--policies`` rules as bundle data: tenant rules and Freightliner legacy rules), then drives
closed-loop load at each concurrency level twice — through gRPC ``Decide`` and straight at OPA's
REST API with the identical, already-enriched input — and reports p50/p99/throughput, their ratio,
and the resident memory of both processes.

``--rate`` adds open-loop levels: requests *arrive* at a fixed rate (as a replication service's
events do) whether or not earlier ones were answered, and each latency runs from the request's
scheduled arrival, not from when the generator got round to sending it — so a saturated server
shows as growing latency instead of as a politely slower client (coordinated omission).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import yaml

from sidecar._proto import policy_pb2 as pb
from sidecar._proto import policy_pb2_grpc as pb_grpc
from sidecar.config import Config, load_config
from sidecar.enrich import FactTrust, StaticEnricher
from sidecar.errors import PolicyUnavailable
from sidecar.model.decision import Caller, DecideRequest, ImageRef

__all__ = ["run_bench"]

_REGIONS = ("us-east-1", "eu-west-1", "ap-south-1")
# A call slower than this counts as an error on either path.
_CALL_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bench_config(workdir: Path, policies: int) -> dict[str, Any]:
    """Return a config with a realistic inventory and ``policies`` rules split tenant/legacy."""
    registries: list[dict[str, Any]] = [
        {
            "name": "ci",
            "type": "generic",
            "endpoint": "http://127.0.0.1:1",
            "region": "us-east-1",
            "metadata": {"environment": "ci"},
        },
    ]
    for env in ("prod", "dev", "sandbox"):
        for region in _REGIONS:
            gdpr = region.startswith("eu")
            registries.append(
                {
                    "name": f"{env}-{region}",
                    "type": "generic",
                    "endpoint": "http://127.0.0.1:1",
                    "region": region,
                    "metadata": {"environment": env, "gdpr": gdpr, "egress_cost_per_gb": 0.09},
                }
            )
    tenants = max(1, policies // 10)
    tenant_rules = policies // 2
    legacy = policies - tenant_rules
    data: dict[str, Any] = {}
    for i in range(tenant_rules):
        tenant = f"t{i % tenants}"
        data.setdefault(tenant, {"rules": []})["rules"].append(
            {
                "id": f"{tenant}-r{i}",
                "priority": i % 7,
                "match": {"repository": f"{tenant}/*", "tag": "prod-*"},
                "set": {"priority": 40 + i % 50},
            }
        )
    data_dir = workdir / "data" / "replication" / "tenants"
    data_dir.mkdir(parents=True)
    (data_dir / "data.json").write_text(json.dumps(data), encoding="utf-8")
    rules = [
        {
            "source_registry": "ci",
            "source_repository": f"legacy{i}/*",
            "destination_registry": "prod-eu-west-1",
            "destination_repository": f"mirror/legacy{i}/$1",
        }
        for i in range(legacy)
    ]
    return {
        "registries": registries,
        "policy": {
            "listen": f"127.0.0.1:{_free_port()}",
            "metrics_listen": "",
            "state_dir": str(workdir / "state"),
            # Both paths get the same deadline, so saturation shows up as latency on both
            # instead of as 500 ms policy timeouts on the sidecar path only.
            # The fail mode's deadline too: a degraded answer would not be a measurement.
            "opa": {
                "timeout_ms": int(_CALL_TIMEOUT_S * 1000),
                "deadline_ms": int(_CALL_TIMEOUT_S * 1000),
                # The direct-to-OPA path needs the managed OPA's API token.
                "token_file": str(workdir / "opa.token"),
            },
            # The bench images exist in no registry: measure policy, not connection refusals.
            "replication": {"registry_enrichment": False},
            "bundle": {
                "data_dirs": [str(workdir / "data")],
                "output": str(workdir / "bundle.tar.gz"),
            },
            "tenancy": {
                "tenants": [f"t{i}" for i in range(tenants)],
                "prefixes": {f"t{i}/": f"t{i}" for i in range(tenants)},
            },
            "legacy": {"rules": rules},
            "telemetry": {"log_level": "warning"},
        },
    }


def _request(i: int) -> DecideRequest:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return DecideRequest(
        image=ImageRef("ci", f"t{i % 100}/app", f"prod-{i % 50}", "sha256:" + "ab" * 32),
        labels={
            "security.scan.status": "passed",
            "security.scan.completed-at": now,
            "security.scan.critical": "0",
            "criticality": "high",
        },
        size_bytes=300_000_000,
        # The bench states its facts (scan labels, access): a caller with an override role.
        caller=Caller("bench", roles=("replay",)),
        access={"eu-west-1": 120, "us-east-1": 40},
    )


def _to_proto(req: DecideRequest) -> pb.DecideRequest:
    return pb.DecideRequest(
        image=pb.Image(
            registry=req.image.registry,
            repository=req.image.repository,
            tag=req.image.tag,
            digest=req.image.digest,
            labels=dict(req.labels),
            size_bytes=req.size_bytes,
        ),
        caller=pb.Caller(subject=req.caller.subject, roles=list(req.caller.roles)),
        access=dict(req.access),
        event=req.event,
    )


async def _load(
    call: Callable[[int], Awaitable[None]], total: int, concurrency: int
) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    next_index = 0

    async def worker() -> None:
        nonlocal next_index, errors
        while next_index < total:
            i = next_index
            next_index += 1
            started = time.perf_counter()
            try:
                await call(i)
            except (grpc.aio.AioRpcError, aiohttp.ClientError, PolicyUnavailable, TimeoutError):
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return {
        **_percentiles(latencies),
        "throughput_rps": round(len(latencies) / wall, 1),
        "errors": errors,
        "requests": total,
    }


def _percentiles(latencies: list[float]) -> dict[str, float]:
    """p50 and p99 of ``latencies`` (seconds) in milliseconds, nearest rank (0 for none)."""
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0

    return {"p50_ms": round(pct(0.50), 3), "p99_ms": round(pct(0.99), 3)}


async def _open_loop(
    call: Callable[[int], Awaitable[None]], rate: float, total: int
) -> dict[str, float]:
    """Start ``total`` calls at ``rate`` per second on a fixed schedule; latency from arrival."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0
    in_flight: set[asyncio.Task[None]] = set()
    peak = 0

    async def one(i: int, due: float) -> None:
        nonlocal errors
        try:
            await call(i)
        except (grpc.aio.AioRpcError, aiohttp.ClientError, PolicyUnavailable, TimeoutError):
            errors += 1
            return
        latencies.append(loop.time() - due)

    start = loop.time() + 0.01
    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(i, due))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        peak = max(peak, len(in_flight))
    await asyncio.gather(*in_flight)
    wall = loop.time() - start
    return {
        **_percentiles(latencies),
        "offered_rps": rate,
        "achieved_rps": round(len(latencies) / wall, 1),
        "peak_in_flight": peak,
        "errors": errors,
        "requests": total,
    }


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out.extend(int(c) for c in text)
    return out


async def _wait_ready(proc: asyncio.subprocess.Process, address: str) -> str:
    """Wait for the sidecar's 'sidecar ready' log line; return its OPA URL."""
    if proc.stderr is None:
        raise PolicyUnavailable("bench sidecar has no stderr pipe")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(proc.stderr.readline(), timeout=120)
        if not line:
            raise PolicyUnavailable(f"bench sidecar exited with {await proc.wait()}")
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("event") == "sidecar ready":
            return str(event["opa_url"])
    raise PolicyUnavailable(f"bench sidecar at {address} not ready in 120 s")


async def run_bench(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark described in the module docstring and return the report."""
    levels = [int(c) for c in str(args.concurrency).split(",") if c]
    rates = [float(r) for r in str(getattr(args, "rate", "") or "").split(",") if r]
    duration_s = float(getattr(args, "duration", 5.0))
    with tempfile.TemporaryDirectory(prefix="policy-bench-") as tmp:
        workdir = Path(tmp)
        doc = _bench_config(workdir, args.policies)
        config_path = workdir / "bench.yaml"
        config_path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        bench_config = load_config(config_path)
        address = doc["policy"]["listen"]
        # The bench logs at info so the ready line (with the OPA URL) reaches us.
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sidecar",
            "--config",
            str(config_path),
            "--log-level",
            "info",
            "serve",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            opa_url = await _wait_ready(proc, address)
            drain = asyncio.create_task(_drain(proc))
            report = await _measure(
                bench_config, address, opa_url, levels, args.requests, rates=rates,
                duration_s=duration_s,
            )  # fmt: skip
            opa_pids = _children(proc.pid)
            report.update(
                {
                    "policies": args.policies,
                    "rss_mib": {
                        "sidecar": _rss_mib(proc.pid),
                        "opa": sum(_rss_mib(p) for p in opa_pids),
                    },
                    "machine": {"cpus": os.cpu_count()},
                }
            )
            drain.cancel()
            return report
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), timeout=30)


async def _drain(proc: asyncio.subprocess.Process) -> None:
    if proc.stderr is None:
        return
    while await proc.stderr.readline():
        pass


async def _measure(
    config: Config,
    address: str,
    opa_url: str,
    levels: list[int],
    total: int,
    *,
    rates: list[float],
    duration_s: float,
) -> dict[str, Any]:
    enricher = StaticEnricher(config, trust=FactTrust.operator())  # the bench states its facts
    inputs = [(await enricher.enrich(_request(i))).to_json() for i in range(200)]
    protos = [_to_proto(_request(i)) for i in range(200)]
    rows = []
    channels = [grpc.aio.insecure_channel(address) for _ in range(4)]
    stubs = [pb_grpc.PolicyServiceStub(c) for c in channels]
    connector = aiohttp.TCPConnector(limit=1000)
    # Same per-call deadline on both paths; aiohttp's default 5-minute session timeout would make
    # a saturated OPA look like a crash instead of a slow (or failed) request.
    timeout = aiohttp.ClientTimeout(total=_CALL_TIMEOUT_S)
    token_file = Path(str(config.policy.opa.token_file))
    token = (await asyncio.to_thread(token_file.read_text, encoding="utf-8")).strip()
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as http:
        url = f"{opa_url}/v1/data/replication/decision?provenance=true"

        async def via_sidecar(i: int) -> None:
            await stubs[i % len(stubs)].Decide(protos[i % len(protos)], timeout=_CALL_TIMEOUT_S)

        async def via_opa(i: int) -> None:
            async with http.post(url, json={"input": inputs[i % len(inputs)]}) as resp:
                resp.raise_for_status()
                await resp.read()

        await _load(via_sidecar, 200, 10)  # warm-up: connections, OPA caches
        await _load(via_opa, 200, 10)
        for level in levels:
            count = max(total, level * 2)
            sidecar = await _load(via_sidecar, count, level)
            opa = await _load(via_opa, count, level)
            rows.append(
                {
                    "concurrency": level,
                    "sidecar": sidecar,
                    "opa": opa,
                    "p50_ratio": round(sidecar["p50_ms"] / opa["p50_ms"], 2)
                    if opa["p50_ms"]
                    else None,
                }
            )
        open_rows = [await _open_level(via_sidecar, via_opa, r, duration_s) for r in rates]
    for channel in channels:
        await channel.close(None)
    return {"levels": rows, "open_loop": open_rows}


async def _open_level(
    via_sidecar: Callable[[int], Awaitable[None]],
    via_opa: Callable[[int], Awaitable[None]],
    rate: float,
    duration_s: float,
) -> dict[str, Any]:
    """One open-loop level: the same arrival schedule through the sidecar, then at bare OPA."""
    count = max(1, int(rate * duration_s))
    sidecar = await _open_loop(via_sidecar, rate, count)
    opa = await _open_loop(via_opa, rate, count)
    ratio = round(sidecar["p50_ms"] / opa["p50_ms"], 2) if opa["p50_ms"] else None
    return {"rate": rate, "sidecar": sidecar, "opa": opa, "p50_ratio": ratio}
