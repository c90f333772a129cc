"""A registry request made inside a span carries its W3C trace context; nothing else leaks it."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from opentelemetry.trace import SpanKind

from sidecar.config._registries import RegistryConfig
from sidecar.model.decision import RegistryFacts
from sidecar.oci import RegistryClient
from sidecar.telemetry import Telemetry, trace_id_hex
from sidecar.testing import InMemorySpans

pytestmark = pytest.mark.integration

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def _serving(handler: Handler) -> AsyncIterator[str]:
    """Serve every path and method with ``handler`` on a loopback port; yield the base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def registry() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A loopback server answering /v2/ (200) and manifests (404), recording request headers."""
    seen: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append({k.lower(): v for k, v in request.headers.items()})
        return web.Response(status=200 if request.path == "/v2/" else 404)

    async with _serving(record) as url:
        yield url, seen


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


@pytest.fixture
async def blob_store() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """Another origin holding one blob (a presigned-URL store): records the headers it gets."""
    seen: list[dict[str, str]] = []

    async def serve(request: web.Request) -> web.Response:
        seen.append({k.lower(): v for k, v in request.headers.items()})
        return web.Response(body=BLOB)

    async with _serving(serve) as url:
        yield url, seen


BLOB = b"layer bytes held by a blob store"
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


async def test_registry_requests_are_http_client_spans_and_a_blob_store_learns_no_trace(
    blob_store: tuple[str, list[dict[str, str]]],
) -> None:
    store_url, store_seen = blob_store
    seen: list[dict[str, str]] = []

    async def registry(request: web.Request) -> web.Response:
        seen.append({k.lower(): v for k, v in request.headers.items()})
        if request.path.startswith("/v2/team/app/blobs/"):
            # Like S3-backed registries: the blob is a redirect to a presigned URL elsewhere.
            raise web.HTTPTemporaryRedirect(f"{store_url}/bucket/blob?X-Amz-Signature=secret")
        return web.Response(status=200)

    spans = InMemorySpans()
    telemetry = Telemetry("trace-to-registry", span_exporter=spans)
    async with _serving(registry) as endpoint:
        client = RegistryClient(
            RegistryConfig(
                name="r", facts=RegistryFacts("r", "eu", "dev"), endpoint=endpoint, insecure=True
            ),
            tracer_provider=telemetry.provider,
        )
        try:
            with telemetry.tracer.start_as_current_span("replicate.copy") as parent:
                assert await client.read_blob("team/app", BLOB_DIGEST) == BLOB
            await client.ping()  # outside any trace: no span, no header
        finally:
            await client.close()
            telemetry.shutdown()

    # The registry got the trace; the blob store it redirected to got neither trace header.
    assert seen[0]["traceparent"].split("-")[1] == trace_id_hex(parent)
    assert store_seen and not {"traceparent", "tracestate", "baggage"} & set(store_seen[0])
    assert "traceparent" not in seen[-1]
    # One standard HTTP CLIENT span (OpenTelemetry's aiohttp instrumentation), child of ours,
    # its URL without the query string (a presigned signature must not land in a trace store).
    http = spans.one("GET")
    assert http.kind is SpanKind.CLIENT
    assert http.parent is not None and http.parent.span_id == parent.get_span_context().span_id
    attributes = dict(http.attributes or {})
    assert attributes["http.request.method"] == "GET"
    assert attributes["http.response.status_code"] == 200
    assert "?" not in str(attributes["url.full"]) and "secret" not in str(attributes)
    assert [s.name for s in spans.spans] == ["GET", "replicate.copy"]
