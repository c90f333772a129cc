"""The registry webhook end to end: a real docker-registry notifies the sidecar's endpoint."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from sidecar._config_registry import RegistryConfig
from sidecar.enrich.access import PullAccessSource
from sidecar.model import DecideRequest, ImageFacts, ImageRef, PolicyInput, RegistryFacts
from sidecar.webhooks import ENVELOPE_MEDIA_TYPE, WebhookServer
from tests.support.registry import registry_server
from tests.support.webhooks import (
    MemoryInbox,
    PushRecorder,
    free_port,
    pull_manifest,
    push_tiny_image,
    wait_for,
)

SECRET = "s3cret-token"


def _registry(port: int, name: str = "eu", region: str = "eu-west-1") -> RegistryConfig:
    return RegistryConfig(
        name=name,
        facts=RegistryFacts(name, region, "prod"),
        endpoint=f"http://127.0.0.1:{port}",
        region=region,
    )


def _envelope(event_id: str, *, host: str, action: str = "push", tag: str = "v1") -> bytes:
    event = {
        "id": event_id,
        "timestamp": "2026-01-01T00:00:00Z",
        "action": action,
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + "ab" * 32,
            "size": 400,
            "repository": "team/app",
            "url": f"http://{host}/v2/team/app/manifests/sha256:{'ab' * 32}",
            "tag": tag,
        },
        "request": {"addr": "127.0.0.1:5555", "host": host, "method": "PUT", "useragent": "t"},
        "source": {"addr": "buildhost:5000", "instanceID": "x"},
    }
    return json.dumps({"events": [event]}).encode()


async def _post(url: str, body: bytes, auth: str | None = f"Bearer {SECRET}") -> tuple[int, str]:
    headers = {"Content-Type": ENVELOPE_MEDIA_TYPE}
    if auth is not None:
        headers["Authorization"] = auth
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as r,
    ):
        return r.status, await r.text()


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[WebhookServer, MemoryInbox, PushRecorder, int]]:
    """A webhook server for one inventory registry at a (not running) loopback port."""
    port = free_port()
    store, pushes = MemoryInbox(), PushRecorder()
    server = WebhookServer(store, [_registry(port)], secret=SECRET, on_push=pushes)
    await server.start()
    try:
        yield server, store, pushes, port
    finally:
        await server.stop()


@pytest.mark.integration
async def test_registry_push_and_pull_reach_the_sidecar(
    tmp_path: Path, endpoint: tuple[WebhookServer, MemoryInbox, PushRecorder, int]
) -> None:
    server, store, pushes, port = endpoint
    with registry_server(
        tmp_path / "reg", port=port, notify_url=server.url, notify_secret=SECRET
    ) as reg:
        digest = await push_tiny_image(reg.url, "team/app", "prod-1.0")
        await wait_for(lambda: bool(pushes.calls))
        await pull_manifest(reg.url, "team/app", "prod-1.0")
        await wait_for(lambda: store.pull_counts.get(("team/app", "eu-west-1"), 0) > 0)
        await asyncio.sleep(0.3)  # let stray events (blob pushes/pulls) arrive before asserting
    # Blob pushes and the blob fetches are ignored: one image push, one manifest pull.
    assert pushes.calls == [ImageRef("eu", "team/app", "prod-1.0", digest)]
    assert await store.pulls("team/app") == {"eu-west-1": 1}
    assert not await store.pending_events()
    # The recorded pull reaches the policy input; a region the caller reported keeps its count.
    draft = PolicyInput("2026-01-01T00:00:00Z", "push", ImageFacts(pushes.calls[0]), (), {"us": 7})
    request = DecideRequest(pushes.calls[0])
    enriched = (await PullAccessSource(store).contribute(request, draft)).draft
    assert enriched.access == {"eu-west-1": 1, "us": 7}


async def test_wrong_or_missing_secret_is_401_and_nothing_recorded(
    endpoint: tuple[WebhookServer, MemoryInbox, PushRecorder, int],
) -> None:
    server, store, _, port = endpoint
    body = _envelope("e1", host=f"127.0.0.1:{port}")
    status, text = await _post(server.url, body, auth="Bearer wrong")
    assert (status, "wrong shared secret" in text) == (401, True)
    status, text = await _post(server.url, body, auth=None)
    assert (status, "missing Authorization" in text) == (401, True)
    assert store.events == {}


async def test_broken_body_or_unknown_registry_is_400_naming_it(
    endpoint: tuple[WebhookServer, MemoryInbox, PushRecorder, int],
) -> None:
    server, store, _, _ = endpoint
    status, text = await _post(server.url, b'{"events": [')
    assert (status, "not JSON" in text) == (400, True)
    status, text = await _post(server.url, b'{"events": [{"action": "push"}]}')
    assert (status, "events[0].id is missing" in text) == (400, True)
    status, text = await _post(server.url, _envelope("e2", host="elsewhere.example:5000"))
    assert (status, "elsewhere.example:5000" in text) == (400, True)
    assert store.events == {}


async def test_duplicate_event_id_is_acknowledged_and_processed_once(
    endpoint: tuple[WebhookServer, MemoryInbox, PushRecorder, int],
) -> None:
    server, _, pushes, port = endpoint
    body = _envelope("dup-1", host=f"127.0.0.1:{port}", tag="prod-2")
    first = await _post(server.url, body)
    await wait_for(lambda: len(pushes.calls) == 1)
    second = await _post(server.url, body)
    await asyncio.sleep(0.3)
    assert (first[0], json.loads(first[1])) == (200, {"recorded": 1})
    assert (second[0], json.loads(second[1])) == (200, {"recorded": 0})
    assert pushes.calls == [ImageRef("eu", "team/app", "prod-2", "sha256:" + "ab" * 32)]


async def test_events_acknowledged_before_a_crash_are_processed_after_restart() -> None:
    port, store = free_port(), MemoryInbox()
    hold = asyncio.Event()

    async def stuck(ref: ImageRef) -> None:
        await hold.wait()  # the process "dies" while this push is being handled

    first = WebhookServer(store, [_registry(port)], secret=SECRET, on_push=stuck)
    await first.start()
    try:
        status, _ = await _post(first.url, _envelope("crash-1", host=f"127.0.0.1:{port}"))
    finally:
        await first.stop()
    assert status == 200
    assert [i for i, _ in await store.pending_events()] == ["crash-1"]

    for restart in range(2):  # restart twice: processed on the first restart, never again
        pushes = PushRecorder()
        again = WebhookServer(store, [_registry(port)], secret=SECRET, on_push=pushes)
        await again.start()
        try:
            await asyncio.sleep(0.3)
        finally:
            await again.stop()
        if restart == 0:
            assert [r.tag for r in pushes.calls] == ["v1"]
        else:
            assert pushes.calls == []
    assert await store.pending_events() == []


async def test_failed_push_handling_is_retried_and_counted() -> None:
    port, store, metrics = free_port(), MemoryInbox(), CollectorRegistry()
    attempts: list[ImageRef] = []

    async def flaky(ref: ImageRef) -> None:
        attempts.append(ref)
        if len(attempts) == 1:
            raise RuntimeError("policy unavailable")

    server = WebhookServer(
        store,
        [_registry(port)],
        secret=SECRET,
        on_push=flaky,
        metrics_registry=metrics,
        retry_interval_s=0.1,
    )
    await server.start()
    try:
        await _post(server.url, _envelope("retry-1", host=f"127.0.0.1:{port}"))
        await wait_for(lambda: len(attempts) == 2)
        await wait_for(lambda: "retry-1" in store.done)
    finally:
        await server.stop()
    sample = metrics.get_sample_value
    labels = {"action": "push"}
    assert (
        sample("policy_sidecar_webhook_events_received_total", {**labels, "outcome": "recorded"})
        == 1
    )
    assert (
        sample("policy_sidecar_webhook_events_processed_total", {**labels, "outcome": "failed"})
        == 1
    )
    assert (
        sample("policy_sidecar_webhook_events_processed_total", {**labels, "outcome": "pushed"})
        == 1
    )
