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

The report also holds OPA's own timers for one decision (``?metrics=true``:
``timer_rego_query_eval_ns``, ``timer_server_handler_ns``; medians of ``--opa-samples`` queries
one after another), the resident memory and CPU seconds of the sidecar and of OPA (each with its
process tree) after the run, and with ``--decision-cache`` the cache's lookups by result.
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
# ``python -c _PROFILED OUTPUT ARGS...``: the sidecar under cProfile timed by its event loop thread's
# CPU clock, so other work on a shared machine does not inflate the frames (wall time would).
_PROFILED = """
import cProfile, runpy, sys, time
output = sys.argv[1]
sys.argv = ["sidecar", *sys.argv[2:]]
profile = cProfile.Profile(time.thread_time)
profile.enable()
try:
    runpy.run_module("sidecar", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
finally:
    profile.disable()
    profile.dump_stats(output)
"""
# A call slower than this counts as an error on either path.
_CALL_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bench_config(workdir: Path, policies: int, *, decision_cache: bool = False) -> dict[str, Any]:
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
            # Scraped for the decision cache's hit counts; otherwise off (no per-scrape work).
            "metrics_listen": f"127.0.0.1:{_free_port()}" if decision_cache else "",
            # Only when on: a sidecar of an older tree (a profile of it) refuses the unknown key.
            **({"decision_cache": {"enabled": True}} if decision_cache else {}),
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


def _tree(pid: int) -> list[int]:
    """``pid`` and every live descendant."""
    found = [pid]
    for child in _children(pid):
        found.extend(_tree(child))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the live process ``pid`` (``/proc/<pid>/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_usage(pid: int) -> dict[str, float]:
    """RSS (MiB) and CPU seconds of ``pid``'s process tree: the sidecar's own and its OPA's."""
    opa = [p for child in _children(pid) for p in _tree(child)]
    return {
        "sidecar_rss_mib": _rss_mib(pid),
        "opa_rss_mib": round(sum(_rss_mib(p) for p in opa), 1),
        "sidecar_cpu_s": round(cpu_seconds(pid), 2),
        "opa_cpu_s": round(sum(cpu_seconds(p) for p in opa), 2),
    }


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out.extend(int(c) for c in text)
    return out


async def _wait_ready(proc: asyncio.subprocess.Process, address: str, log: Path) -> str:
    """Wait for the sidecar's 'sidecar ready' line in its ``log``; return its OPA URL."""
    deadline = time.monotonic() + 180
    seen = 0
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise PolicyUnavailable(f"bench sidecar exited with {proc.returncode}")
        lines = (await asyncio.to_thread(log.read_bytes)).splitlines()
        for line in lines[seen:]:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict) and event.get("event") == "sidecar ready":
                return str(event["opa_url"])
        seen = len(lines)
        await asyncio.sleep(0.2)
    raise PolicyUnavailable(f"bench sidecar at {address} not ready in 180 s")


async def run_bench(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark described in the module docstring and return the report."""
    levels = [int(c) for c in str(args.concurrency).split(",") if c]
    rates = [float(r) for r in str(getattr(args, "rate", "") or "").split(",") if r]
    duration_s = float(getattr(args, "duration", 5.0))
    with tempfile.TemporaryDirectory(prefix="policy-bench-") as tmp:
        workdir = Path(tmp)
        cache = bool(getattr(args, "decision_cache", False))
        doc = _bench_config(workdir, args.policies, decision_cache=cache)
        config_path = workdir / "bench.yaml"
        config_path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        bench_config = load_config(config_path)
        address = doc["policy"]["listen"]
        # The bench logs at info so the ready line (with the OPA URL) reaches us. Into a file,
        # not a pipe: a pipe the load generator drains late blocks the sidecar's log writes
        # (its event loop) and measures the bench, not the sidecar.
        profile = str(getattr(args, "profile", "") or "")
        # Another checkout's sidecar (a "before" figure): run from its root, its package is the
        # first on sys.path (python -m / -c put the working directory there).
        tree = str(getattr(args, "sidecar_tree", "") or "") or None
        log_path = workdir / "sidecar.log"
        log_file = log_path.open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            # cProfile of the whole sidecar process, written when it stops (SIGTERM below).
            *(("-c", _PROFILED, profile) if profile else ("-m", "sidecar")),
            "--config",
            str(config_path),
            "--log-level",
            "info",
            "serve",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log_file,
            cwd=tree,
        )
        try:
            opa_url = await _wait_ready(proc, address, log_path)
            report = await _measure(
                bench_config, address, opa_url, levels, args.requests, rates=rates,
                duration_s=duration_s, opa_samples=int(getattr(args, "opa_samples", 0)),
                rss=lambda: _rss(process_usage(proc.pid)),
            )  # fmt: skip
            usage = process_usage(proc.pid)
            report.update(
                {
                    "policies": args.policies,
                    "rss_mib": _rss(usage),
                    "cpu_s": {"sidecar": usage["sidecar_cpu_s"], "opa": usage["opa_cpu_s"]},
                    "decision_cache": await _cache_counts(doc["policy"]["metrics_listen"])
                    if cache
                    else None,
                    "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
                }
            )
            return report
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), timeout=60)
            log_file.close()


def _rss(usage: dict[str, float]) -> dict[str, float]:
    sidecar, opa = usage["sidecar_rss_mib"], usage["opa_rss_mib"]
    return {"sidecar": sidecar, "opa": opa, "total": round(sidecar + opa, 1)}


async def _cache_counts(listen: str) -> dict[str, float]:
    """The sidecar's ``policy_sidecar_decision_cache_lookups_total`` by result, and the hit rate."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://{listen}/metrics") as resp,
    ):
        text = await resp.text()
    counts: dict[str, float] = {}
    prefix = 'policy_sidecar_decision_cache_lookups_total{result="'
    for line in text.splitlines():
        if line.startswith(prefix):
            result, _, value = line[len(prefix) :].partition('"} ')
            counts[result] = float(value)
    total = sum(counts.values())
    counts["hit_rate"] = round(counts.get("hit", 0) / total, 4) if total else 0.0
    return counts


async def _opa_timers(
    call: Callable[[int], Awaitable[dict[str, Any]]], samples: int
) -> dict[str, float]:
    """Medians of OPA's own timers over ``samples`` single queries, one after another (ms)."""
    evals: list[float] = []
    handlers: list[float] = []
    for i in range(samples):
        metrics = await call(i)
        evals.append(metrics.get("timer_rego_query_eval_ns", 0) / 1e6)
        handlers.append(metrics.get("timer_server_handler_ns", 0) / 1e6)
    if not evals:
        return {}
    evals.sort()
    handlers.sort()
    return {
        "samples": samples,
        "eval_ms_p50": round(evals[len(evals) // 2], 3),
        "eval_ms_p90": round(evals[int(len(evals) * 0.9)], 3),
        "handler_ms_p50": round(handlers[len(handlers) // 2], 3),
    }


async def _measure(
    config: Config,
    address: str,
    opa_url: str,
    levels: list[int],
    total: int,
    *,
    rates: list[float],
    duration_s: float,
    opa_samples: int = 0,
    rss: Callable[[], dict[str, float]] | None = None,
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

        async def opa_metrics(i: int) -> dict[str, Any]:
            body = {"input": inputs[i % len(inputs)]}
            async with http.post(url + "&metrics=true", json=body) as resp:
                resp.raise_for_status()
                doc = await resp.json()
            metrics = doc.get("metrics")
            return metrics if isinstance(metrics, dict) else {}

        await _load(via_sidecar, 200, 10)  # warm-up: connections, OPA caches
        await _load(via_opa, 200, 10)
        timers = await _opa_timers(opa_metrics, opa_samples)
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
        # After the closed loops, before any open-loop overload queues requests in memory.
        rss_closed = rss() if rss is not None else None
        open_rows = [await _open_level(via_sidecar, via_opa, r, duration_s) for r in rates]
    for channel in channels:
        await channel.close(None)
    return {
        "levels": rows,
        "open_loop": open_rows,
        "opa_timers": timers,
        "rss_mib_after_closed_loop": rss_closed,
    }


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
