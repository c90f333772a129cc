"""OpaEngine against a real OPA: answers, provenance, deadlines, and how failures are reported."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from sidecar.bundles.build import BuiltBundle
from sidecar.errors import PolicyError, PolicyUnavailable
from sidecar.policy.managed import ManagedOpa
from sidecar.policy.opa import OpaEngine

pytestmark = pytest.mark.integration

PUSH = {"event": "push", "image": {"tag": "prod-1.0"}}
SLACK_S = 1.0  # scheduling slack on a loaded CI machine; the point is "bounded", not "fast"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """Yield the URL of a server that accepts connections and reads, but never answers."""
    writers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


@pytest.fixture
async def failing_server() -> AsyncIterator[str]:
    """Yield the URL of an HTTP server answering every request with 503, like a sick proxy."""

    async def unavailable(request: web.Request) -> web.Response:
        return web.Response(status=503, text="upstream overloaded")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", unavailable)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def test_decision_comes_with_the_bundle_revision(
    opa_engine: OpaEngine, opa_bundle: BuiltBundle
) -> None:
    answer = await opa_engine.evaluate(PUSH)

    assert answer.result == {"allow": True, "tag": "prod-1.0", "mode": "default"}
    assert answer.bundle_revision == opa_bundle.revision
    assert answer.eval_ns > 0


async def test_health_and_active_revision_report_the_served_bundle(
    opa_engine: OpaEngine, opa_bundle: BuiltBundle
) -> None:
    assert await opa_engine.health(bundles=True)
    assert await opa_engine.health(bundles=False)
    assert await opa_engine.active_revision() == opa_bundle.revision


async def test_concurrent_queries_each_get_their_own_answer(opa_engine: OpaEngine) -> None:
    tags = [f"dev-{i}" for i in range(300)]

    answers = await asyncio.gather(
        *(opa_engine.evaluate({"event": "push", "image": {"tag": tag}}) for tag in tags)
    )

    assert [a.result["tag"] for a in answers] == tags


async def test_undefined_decision_is_a_policy_error(opa_engine: OpaEngine) -> None:
    with pytest.raises(PolicyError, match="decision undefined: is the bundle activated"):
        await opa_engine.evaluate({})


async def test_a_result_that_is_not_an_object_is_a_policy_error(opa_server: ManagedOpa) -> None:
    engine = OpaEngine(
        opa_server.url, timeout_s=5.0, path="replication/answer", token=opa_server.token
    )
    try:
        with pytest.raises(PolicyError, match=r"data\.replication\.answer is a int, not an object"):
            await engine.evaluate(PUSH)
    finally:
        await engine.close()


async def test_evaluation_error_is_a_policy_error_quoting_opa(opa_server: ManagedOpa) -> None:
    engine = OpaEngine(
        opa_server.url, timeout_s=5.0, path="replication/conflict", token=opa_server.token
    )
    try:
        with pytest.raises(PolicyError, match="eval_conflict_error") as caught:
            await engine.evaluate({"a": True, "b": True})
    finally:
        await engine.close()
    assert "conflicting values" in caught.value.message


async def test_opa_down_is_unavailable_within_the_deadline() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    engine = OpaEngine(url, timeout_s=2.0)
    started = time.monotonic()
    try:
        with pytest.raises(PolicyUnavailable, match="unreachable") as caught:
            await engine.evaluate(PUSH)
        elapsed = time.monotonic() - started
        assert not await engine.health()
    finally:
        await engine.close()
    assert url in caught.value.message
    assert elapsed < 2.0 + SLACK_S


async def test_silent_server_is_unavailable_at_the_deadline(silent_server: str) -> None:
    engine = OpaEngine(silent_server, timeout_s=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(PolicyUnavailable, match=r"did not answer within the 0\.5s deadline"):
            await engine.evaluate(PUSH)
        elapsed = time.monotonic() - started
        assert not await engine.health()
    finally:
        await engine.close()
    assert 0.5 <= elapsed < 0.5 + SLACK_S


async def test_http_5xx_is_unavailable(failing_server: str) -> None:
    engine = OpaEngine(failing_server, timeout_s=2.0)
    try:
        with pytest.raises(PolicyUnavailable, match="HTTP 503") as caught:
            await engine.evaluate(PUSH)
    finally:
        await engine.close()
    assert "upstream overloaded" in caught.value.message


async def test_engine_reconnects_after_close(opa_engine: OpaEngine) -> None:
    await opa_engine.evaluate(PUSH)
    await opa_engine.close()

    answer = await opa_engine.evaluate(PUSH)

    assert answer.result["allow"] is True
