"""The metrics HTTP server over real HTTP: /metrics, /healthz, /readyz and extra routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from sidecar.telemetry import Metrics, MetricsServer, Readiness


class Servers:
    """Starts MetricsServers on free loopback ports and stops them all at the end of the test."""

    def __init__(self) -> None:
        self.started: list[MetricsServer] = []

    async def start(
        self,
        registry: CollectorRegistry | None = None,
        *,
        ready: Readiness | None = None,
        routes: Iterable[web.RouteDef] = (),
    ) -> MetricsServer:
        server = MetricsServer(
            registry or CollectorRegistry(), "127.0.0.1", 0, ready=ready, routes=routes
        )
        await server.start()
        self.started.append(server)
        return server


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    pool = Servers()
    yield pool
    for server in pool.started:
        await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def test_metrics_endpoint_serves_prometheus_text(
    servers: Servers, http: aiohttp.ClientSession
) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.observe_decision("deny", True, 0.01)
    metrics.set_active_revision("rev-7")
    server = await servers.start(registry)

    assert server.port > 0
    async with http.get(f"{server.url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = await resp.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    key = ("policy_sidecar_decisions_total", (("degraded", "true"), ("outcome", "deny")))
    assert samples[key] == 1
    assert samples[("policy_sidecar_bundle_revision_info", (("revision", "rev-7"),))] == 1


async def test_metrics_endpoint_speaks_openmetrics_when_asked(
    servers: Servers, http: aiohttp.ClientSession
) -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    server = await servers.start(registry)
    headers = {"Accept": "application/openmetrics-text; version=1.0.0"}
    async with http.get(f"{server.url}/metrics", headers=headers) as resp:
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await resp.text()).rstrip().endswith("# EOF")


async def test_healthz_is_ok_even_when_not_ready(
    servers: Servers, http: aiohttp.ClientSession
) -> None:
    server = await servers.start(ready=lambda: (False, "opa down"))
    async with http.get(f"{server.url}/healthz") as resp:
        # Liveness is independent of readiness: a process waiting for OPA must not be restarted.
        assert resp.status == 200
        assert await resp.text() == "ok"


async def test_readyz_follows_the_readiness_callable(
    servers: Servers, http: aiohttp.ClientSession
) -> None:
    state = {"ready": False}

    def readiness() -> tuple[bool, str]:
        return (True, "ready") if state["ready"] else (False, "policy engine (OPA) is not ready")

    server = await servers.start(ready=readiness)
    async with http.get(f"{server.url}/readyz") as resp:
        assert resp.status == 503
        assert await resp.json() == {"ready": False, "reason": "policy engine (OPA) is not ready"}

    state["ready"] = True
    async with http.get(f"{server.url}/readyz") as resp:
        assert resp.status == 200
        assert (await resp.json())["ready"] is True


async def test_readyz_accepts_an_async_check_and_survives_a_failing_one(
    servers: Servers, http: aiohttp.ClientSession
) -> None:
    async def slow_ready() -> tuple[bool, str]:
        await asyncio.sleep(0)
        return True, "bundle rev-1 active"

    def broken() -> tuple[bool, str]:
        raise RuntimeError("status store unavailable")

    good = await servers.start(ready=slow_ready)
    bad = await servers.start(ready=broken)
    async with http.get(f"{good.url}/readyz") as resp:
        assert (resp.status, (await resp.json())["reason"]) == (200, "bundle rev-1 active")
    async with http.get(f"{bad.url}/readyz") as resp:
        assert resp.status == 503
        assert "status store unavailable" in (await resp.json())["reason"]


async def test_extra_routes_are_served_next_to_metrics(
    servers: Servers, http: aiohttp.ClientSession
) -> None:
    async def webhook(request: web.Request) -> web.Response:
        return web.json_response({"received": await request.json()}, status=202)

    server = await servers.start(routes=[web.post("/webhooks/harbor", webhook)])
    async with http.post(f"{server.url}/webhooks/harbor", json={"type": "PUSH_ARTIFACT"}) as resp:
        assert resp.status == 202
        assert await resp.json() == {"received": {"type": "PUSH_ARTIFACT"}}
    async with http.get(f"{server.url}/healthz") as resp:
        assert resp.status == 200


async def test_stop_releases_the_port(http: aiohttp.ClientSession) -> None:
    server = MetricsServer(CollectorRegistry(), "127.0.0.1", 0)
    with pytest.raises(RuntimeError, match="after start"):
        _ = server.port
    await server.start()
    url = server.url
    await server.stop()
    await server.stop()  # twice is fine
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.get(f"{url}/healthz"):
            pass
