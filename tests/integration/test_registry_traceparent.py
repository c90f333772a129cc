"""A registry request made inside a span carries its W3C trace context; nothing else leaks it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from sidecar.config._registries import RegistryConfig
from sidecar.model.decision import RegistryFacts
from sidecar.oci import RegistryClient
from sidecar.telemetry import Telemetry, trace_id_hex
from sidecar.testing import InMemorySpans

pytestmark = pytest.mark.integration


@pytest.fixture
async def registry() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A loopback server answering /v2/ (200) and manifests (404), recording request headers."""
    seen: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append({k.lower(): v for k, v in request.headers.items()})
        return web.Response(status=200 if request.path == "/v2/" else 404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_traceparent_goes_to_the_registry_only_inside_a_span(
    registry: tuple[str, list[dict[str, str]]],
) -> None:
    endpoint, seen = registry
    telemetry = Telemetry("trace-to-registry", span_exporter=InMemorySpans())
    client = RegistryClient(
        RegistryConfig(
            name="r", facts=RegistryFacts("r", "eu", "dev"), endpoint=endpoint, insecure=True
        )
    )
    try:
        with telemetry.tracer.start_as_current_span("replicate.copy") as span:
            await client.ping()
            assert await client.head_manifest("team/app", "prod-1") is None
        await client.ping()
    finally:
        await client.close()
        telemetry.shutdown()
    inside, outside = seen[:2], seen[2:]
    assert inside and all(
        h.get("traceparent", "").split("-")[1] == trace_id_hex(span) for h in inside
    ), inside
    assert outside and all("traceparent" not in h for h in outside), outside
