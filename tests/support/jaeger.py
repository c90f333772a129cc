"""A real Jaeger v2 (all-in-one, memory storage) for tests, on loopback ports picked at run time.

Jaeger's built-in all-in-one config listens on fixed ports (OTLP 4317/4318, query 16685/16686,
health 13133, metrics 8888, sampling 5778/5779, expvar 27777, zpages 27778, the Jaeger/Zipkin
receivers...). We never use it: ``jaeger_config`` writes a minimal config with only the components a
trace-export test needs, every listener on 127.0.0.1 and a free port, and the collector's own
metrics endpoint and self-tracing turned off — so two test runs can share a machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from sidecar.tools import find_tool
from tests.support.ports import free_ports

__all__ = [
    "JaegerPorts",
    "JaegerServer",
    "JaegerStartError",
    "JaegerTrace",
    "free_ports",
    "jaeger",
    "jaeger_config",
    "running_jaeger",
]

_HOST = "127.0.0.1"
_STARTUP_ATTEMPTS = 3  # a picked port can be taken by someone else before Jaeger binds it


class JaegerStartError(RuntimeError):
    """Jaeger exited or did not become ready; the message carries its log tail."""


@dataclass(frozen=True, slots=True)
class JaegerPorts:
    """Every port the test Jaeger listens on."""

    otlp_grpc: int
    otlp_http: int
    query_http: int
    query_grpc: int
    health: int


def jaeger_config(ports: JaegerPorts) -> dict[str, Any]:
    """Return a Jaeger v2 config: OTLP in, memory storage, query API, health check; nothing else."""
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
            "pipelines": {
                # No batch processor: spans become queryable as soon as they are received.
                "traces": {"receivers": ["otlp"], "exporters": ["jaeger_storage_exporter"]},
            },
            # level none: no Prometheus endpoint on the collector's default :8888.
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
        },
        "extensions": {
            "jaeger_storage": {"backends": {"mem": {"memory": {"max_traces": 10_000}}}},
            "jaeger_query": {
                "storage": {"traces": "mem"},
                # Self-tracing would export to the default localhost:4317, maybe someone else's.
                "enable_tracing": False,
                "http": {"endpoint": f"{_HOST}:{ports.query_http}"},
                "grpc": {"endpoint": f"{_HOST}:{ports.query_grpc}"},
            },
            "healthcheckv2": {
                "use_v2": True,
                "http": {"endpoint": f"{_HOST}:{ports.health}"},
            },
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"{_HOST}:{ports.otlp_grpc}"},
                    "http": {"endpoint": f"{_HOST}:{ports.otlp_http}"},
                }
            }
        },
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "mem"}},
    }


@dataclass(frozen=True, slots=True)
class JaegerTrace:
    """One trace as Jaeger's query API returns it (``data[0]`` of GET /api/traces/{id})."""

    raw: Mapping[str, Any]

    @property
    def spans(self) -> Sequence[Mapping[str, Any]]:
        """Every span of the trace, in Jaeger's JSON shape."""
        spans: Sequence[Mapping[str, Any]] = self.raw.get("spans", [])
        return spans

    def span(self, operation: str) -> Mapping[str, Any]:
        """The single span named ``operation``; AssertionError unless there is exactly one."""
        found = [s for s in self.spans if s["operationName"] == operation]
        if len(found) != 1:
            names = [s["operationName"] for s in self.spans]
            raise AssertionError(f"expected one {operation!r} span, got {len(found)} in {names}")
        return found[0]

    @staticmethod
    def tags(span: Mapping[str, Any]) -> dict[str, Any]:
        """The span's tags (attributes) as a plain dict."""
        return {t["key"]: t["value"] for t in span.get("tags", [])}

    @staticmethod
    def parent_id(span: Mapping[str, Any]) -> str | None:
        """The span id of the span's CHILD_OF parent, or None for a root span."""
        for ref in span.get("references", []):
            if ref.get("refType") == "CHILD_OF":
                return str(ref["spanID"])
        return None

    def service_of(self, span: Mapping[str, Any]) -> str:
        """The service name of the process that emitted ``span``."""
        return str(self.raw["processes"][span["processID"]]["serviceName"])


@dataclass(frozen=True, slots=True)
class JaegerServer:
    """A running test Jaeger: where to send OTLP and where to query."""

    ports: JaegerPorts
    log_path: Path

    @property
    def otlp_grpc_endpoint(self) -> str:
        """OTLP/gRPC endpoint, plaintext, as ``http://127.0.0.1:PORT``."""
        return f"http://{_HOST}:{self.ports.otlp_grpc}"

    @property
    def otlp_http_endpoint(self) -> str:
        """OTLP/HTTP base URL."""
        return f"http://{_HOST}:{self.ports.otlp_http}"

    @property
    def query_url(self) -> str:
        """Base URL of the query HTTP API (``/api/traces/{id}``, ``/api/services``)."""
        return f"http://{_HOST}:{self.ports.query_http}"

    async def find_trace(
        self, trace_id: str, timeout_s: float = 15.0, *, min_spans: int = 1
    ) -> JaegerTrace:
        """Poll GET /api/traces/{id} until it has ``min_spans`` spans; AssertionError on timeout."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            while True:
                try:
                    async with http.get(f"{self.query_url}/api/traces/{trace_id}") as resp:
                        body = await resp.json(content_type=None)
                        last = f"HTTP {resp.status}: {body}"
                        found = resp.status == 200 and isinstance(body, dict) and body.get("data")
                        if found and len(found[0].get("spans", [])) >= min_spans:
                            return JaegerTrace(found[0])
                except aiohttp.ClientError as exc:
                    last = repr(exc)
                if time.monotonic() >= deadline:
                    raise AssertionError(
                        f"trace {trace_id} not in Jaeger after {timeout_s}s: {last}"
                    )
                await asyncio.sleep(0.1)


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def _wait_ready(
    proc: asyncio.subprocess.Process, server: JaegerServer, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    urls = (f"http://{_HOST}:{server.ports.health}/status", f"{server.query_url}/api/services")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            if proc.returncode is not None:
                raise JaegerStartError(
                    f"jaeger exited with {proc.returncode}:\n{_log_tail(server.log_path)}"
                )
            ready = True
            for url in urls:
                try:
                    async with http.get(url) as resp:
                        ready = ready and resp.status == 200
                except aiohttp.ClientError:
                    ready = False
            if ready:
                return
            if time.monotonic() >= deadline:
                raise JaegerStartError(
                    f"jaeger not ready after {timeout_s}s:\n{_log_tail(server.log_path)}"
                )
            await asyncio.sleep(0.1)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def running_jaeger(
    workdir: Path, *, startup_timeout_s: float = 30.0
) -> AsyncIterator[JaegerServer]:
    """Start the pinned ``jaeger`` binary in ``workdir``, yield it when ready, always stop it."""
    binary = find_tool("jaeger")
    # Jaeger must not pick up an OTLP exporter setup meant for the test process itself.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["JAEGER_LISTEN_HOST"] = _HOST
    for attempt in range(1, _STARTUP_ATTEMPTS + 1):
        ports = JaegerPorts(*free_ports(5))
        config_path = workdir / f"jaeger-{attempt}.yaml"
        config_path.write_text(yaml.safe_dump(jaeger_config(ports), sort_keys=False))
        server = JaegerServer(ports=ports, log_path=workdir / f"jaeger-{attempt}.log")
        with server.log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                str(binary),
                "--config",
                f"file:{config_path}",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
            )
        try:
            try:
                await _wait_ready(proc, server, startup_timeout_s)
            except JaegerStartError:
                lost_port_race = "address already in use" in _log_tail(server.log_path, 200)
                if lost_port_race and attempt < _STARTUP_ATTEMPTS:
                    continue
                raise
            yield server
            return
        finally:
            await _stop(proc)
    raise AssertionError("unreachable: the last attempt either yields or raises")


@pytest.fixture
async def jaeger(tmp_path: Path) -> AsyncIterator[JaegerServer]:
    """A running test Jaeger, stopped after the test."""
    async with running_jaeger(tmp_path) as server:
        yield server
