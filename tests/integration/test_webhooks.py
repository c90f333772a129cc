"""The registry webhook over the real SQLite job store, and a real docker-registry notifying it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from sidecar.config._registries import RegistryConfig
from sidecar.enrich.access import PullAccessSource
from sidecar.model.decision import DecideRequest, ImageFacts, ImageRef, PolicyInput, RegistryFacts
from sidecar.oci import OCI_MANIFEST, RegistryClient
from sidecar.store import SqlJobStore, open_job_store
from sidecar.webhooks import ENVELOPE_MEDIA_TYPE, OnPush, WebhookServer
from tests.support.images import push_image
from tests.support.registry import registry_server
from tests.support.webhooks import PushRecorder, free_port, wait_for

SECRET = "s3cret-token"
DIGEST = "sha256:" + "ab" * 32


@dataclass
class Endpoint:
    """A running webhook server, its job store, the pushes it made and its registry's port."""

    server: WebhookServer
    store: SqlJobStore
    pushes: PushRecorder
    port: int

    @property
    def host(self) -> str:
        """The host[:port] the inventory registry is reached at."""
        return f"127.0.0.1:{self.port}"


def _registry(port: int, name: str = "eu", region: str = "eu-west-1") -> RegistryConfig:
    """An inventory registry on a loopback port."""
    return RegistryConfig(
        name=name,
        facts=RegistryFacts(name, region, "prod"),
        endpoint=f"http://127.0.0.1:{port}",
        region=region,
    )


def _event(
    event_id: str, host: str, *, action: str = "push", tag: str = "v1", media: str = OCI_MANIFEST
) -> dict[str, Any]:
    """One Distribution notification event about ``team/app`` as sent by the registry at ``host``."""
    return {
        "id": event_id,
        "timestamp": "2026-01-01T00:00:00Z",
        "action": action,
        "target": {
            "mediaType": media,
            "digest": DIGEST,
            "size": 400,
            "repository": "team/app",
            "url": f"http://{host}/v2/team/app/manifests/{DIGEST}",
            "tag": tag,
        },
        "request": {"addr": "127.0.0.1:5555", "host": host, "method": "PUT", "useragent": "t"},
        "source": {"addr": "buildhost:5000", "instanceID": "x"},
    }


def _envelope(*events: dict[str, Any]) -> bytes:
    """A notification envelope holding ``events``."""
    return json.dumps({"events": list(events)}).encode()


async def _post(
    url: str, body: bytes, auth: str | None = f"Bearer {SECRET}"
) -> tuple[int, dict[str, Any]]:
    """POST ``body`` to the endpoint the way Distribution does; return (status, JSON answer)."""
    headers = {"Content-Type": ENVELOPE_MEDIA_TYPE}
    if auth is not None:
        headers["Authorization"] = auth
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as r,
    ):
        return r.status, await r.json()


async def _drained(store: SqlJobStore) -> bool:
    """True when every recorded event has been processed."""
    return not await store.pending_events()


async def _pulled(store: SqlJobStore) -> bool:
    """True once a pull of ``team/app`` has been counted."""
    return bool(await store.pulls("team/app"))


@contextlib.asynccontextmanager
async def _serving(
    store: SqlJobStore, registries: Sequence[RegistryConfig], on_push: OnPush, **options: Any
) -> AsyncIterator[WebhookServer]:
    """A started webhook server over ``store``, stopped on exit."""
    server = WebhookServer(store, registries, secret=SECRET, on_push=on_push, **options)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def endpoint(store: SqlJobStore) -> AsyncIterator[Endpoint]:
    """A webhook server for one inventory registry at a (not running) loopback port."""
    port, pushes = free_port(), PushRecorder()
    async with _serving(store, [_registry(port)], pushes) as server:
        yield Endpoint(server, store, pushes, port)


@pytest.mark.integration
async def test_registry_push_and_pull_reach_the_sidecar(tmp_path: Path, endpoint: Endpoint) -> None:
    with registry_server(
        tmp_path / "reg", port=endpoint.port, notify_url=endpoint.server.url, notify_secret=SECRET
    ):
        client = RegistryClient(_registry(endpoint.port))
        try:
            image = await push_image(client, "team/app", tag="prod-1.0")
            await wait_for(lambda: bool(endpoint.pushes.calls))
            await client.get_manifest("team/app", "prod-1.0")
            await wait_for(lambda: _pulled(endpoint.store))
        finally:
            await client.close()
        # Distribution notifies in order, so every event before the pull has arrived by now.
        await wait_for(lambda: _drained(endpoint.store))
    # Blob pushes are ignored: one image push, one manifest pull.
    assert endpoint.pushes.calls == [ImageRef("eu", "team/app", "prod-1.0", image.digest)]
    assert await endpoint.store.pulls("team/app") == {"eu-west-1": 1}


async def test_pulls_are_counted_per_repository_and_region_and_reach_the_policy_input(
    store: SqlJobStore,
) -> None:
    eu, us = _registry(free_port()), _registry(free_port(), "us", "us-east-1")
    events = [
        _event("p1", eu.host, action="pull"),
        _event("p2", eu.host, action="pull", tag=""),
        _event("p3", us.host, action="pull"),
        _event("p4", eu.host, action="pull", media="application/vnd.oci.image.layer.v1.tar"),
    ]
    async with _serving(store, [eu, us], PushRecorder()) as server:
        answer = await _post(server.url, _envelope(*events))
        await wait_for(lambda: _drained(store))
    assert answer == (200, {"recorded": 4})
    # The blob pull (p4) is not an image pull; the others count where they were served.
    assert await store.pulls("team/app") == {"eu-west-1": 2, "us-east-1": 1}
    assert await store.pulls("team/other") == {}
    # A region the caller reported keeps the caller's count; the store fills in the rest.
    ref = ImageRef("eu", "team/app", "v1", DIGEST)
    draft = PolicyInput("2026-01-01T00:00:00Z", "push", ImageFacts(ref), (), {"us-east-1": 7})
    enriched = (await PullAccessSource(store).contribute(DecideRequest(ref), draft)).draft
    assert enriched.access == {"eu-west-1": 2, "us-east-1": 7}


async def test_wrong_or_missing_secret_is_401_naming_it_and_records_nothing(
    endpoint: Endpoint,
) -> None:
    url, body = endpoint.server.url, _envelope(_event("e1", endpoint.host))
    for auth, problem in (
        ("Bearer wrong", "wrong shared secret"),
        (None, "missing Authorization"),
        (f"Basic {SECRET}", "not a Bearer token"),
    ):
        status, answer = await _post(url, body, auth=auth)
        assert (status, problem in answer["error"]) == (401, True), auth
    # Nothing was recorded: the same event is new when it comes with the right secret.
    assert await _post(url, body) == (200, {"recorded": 1})
    await wait_for(lambda: bool(endpoint.pushes.calls))


async def test_broken_body_or_unknown_registry_is_400_naming_it_and_records_nothing(
    endpoint: Endpoint,
) -> None:
    url, good = endpoint.server.url, _event("e2", endpoint.host)
    for body, problem in (
        (b'{"events": [', "not JSON"),
        (b'{"events": [{"action": "push"}]}', "events[0].id is missing"),
        (_envelope(_event("e3", "elsewhere.example:5000")), "elsewhere.example:5000"),
        # One unknown sender rejects the whole envelope, its good events included.
        (_envelope(good, _event("e3", "elsewhere.example:5000")), "elsewhere.example:5000"),
    ):
        status, answer = await _post(url, body)
        assert (status, problem in answer["error"]) == (400, True), problem
    assert await _post(url, _envelope(good)) == (200, {"recorded": 1})


async def test_duplicate_event_id_is_acknowledged_and_processed_once(endpoint: Endpoint) -> None:
    url, body = endpoint.server.url, _envelope(_event("dup-1", endpoint.host, tag="prod-2"))
    first, second = await _post(url, body), await _post(url, body)
    # Events are processed in arrival order: once a later one is pushed, the duplicate would be too.
    await _post(url, _envelope(_event("dup-2", endpoint.host, tag="prod-3")))
    await wait_for(lambda: len(endpoint.pushes.calls) == 2)
    assert (first, second) == ((200, {"recorded": 1}), (200, {"recorded": 0}))
    assert [r.tag for r in endpoint.pushes.calls] == ["prod-2", "prod-3"]
    assert endpoint.pushes.calls[0] == ImageRef("eu", "team/app", "prod-2", DIGEST)


async def test_events_acknowledged_before_a_crash_are_processed_after_restart(
    store_url: str,
) -> None:
    url, registries = store_url, [_registry(free_port())]
    body = _envelope(_event("crash-1", registries[0].host))
    hold = asyncio.Event()

    async def stuck(ref: ImageRef) -> None:
        await hold.wait()  # the process "dies" while this push is being handled

    store = await open_job_store(url)
    try:
        async with _serving(store, registries, stuck) as first:
            status, _ = await _post(first.url, body)
    finally:
        await store.close()
    assert status == 200

    # A new process: a new store over the same database file, a new server.
    pushes, store = PushRecorder(), await open_job_store(url)
    try:
        assert [i for i, _ in await store.pending_events()] == ["crash-1"]
        async with _serving(store, registries, pushes) as again:
            await wait_for(lambda: _drained(store))
            # Distribution resends an envelope whose 200 was lost: acknowledged, not processed again.
            resent = await _post(again.url, body)
    finally:
        await store.close()
    assert [r.tag for r in pushes.calls] == ["v1"]
    assert resent == (200, {"recorded": 0})
    store = await open_job_store(url)
    try:
        assert await store.pending_events() == []  # the next process has nothing to replay
    finally:
        await store.close()


async def test_failed_push_handling_is_retried_and_counted(store: SqlJobStore) -> None:
    metrics, registry = CollectorRegistry(), _registry(free_port())
    attempts: list[ImageRef] = []

    async def flaky(ref: ImageRef) -> None:
        attempts.append(ref)
        if len(attempts) == 1:
            raise RuntimeError("policy unavailable")

    options = {"metrics_registry": metrics, "retry_interval_s": 0.1}
    async with _serving(store, [registry], flaky, **options) as server:
        await _post(server.url, _envelope(_event("retry-1", registry.host)))
        await wait_for(lambda: len(attempts) == 2)
        await wait_for(lambda: _drained(store))
    assert attempts == [ImageRef("eu", "team/app", "v1", DIGEST)] * 2

    def count(family: str, outcome: str) -> float | None:
        """A webhook counter's value for push events with ``outcome``."""
        labels = {"source": "distribution", "action": "push", "outcome": outcome}
        return metrics.get_sample_value(f"policy_sidecar_webhook_events_{family}_total", labels)

    assert count("received", "recorded") == 1
    assert (count("processed", "failed"), count("processed", "pushed")) == (1, 1)


@pytest.mark.store_backends("sqlite", "postgresql")
async def test_more_than_a_batch_of_failing_events_does_not_block_a_later_push(
    store: SqlJobStore,
) -> None:
    # Issue 15: failed ids were filtered after ``LIMIT batch``, so a full batch of events that
    # keep failing hid every later event from the processor, forever.
    registry = _registry(free_port())
    pushes = PushRecorder()

    async def poisoned(ref: ImageRef) -> None:
        if ref.tag.startswith("bad-"):
            raise RuntimeError(f"cannot decide {ref}")
        await pushes(ref)

    bad = [_event(f"bad-{n:03}", registry.host, tag=f"bad-{n:03}") for n in range(120)]
    good = _event("good-1", registry.host, tag="good")
    async with _serving(store, [registry], poisoned, retry_interval_s=0.1) as server:
        assert await _post(server.url, _envelope(*bad, good)) == (200, {"recorded": 121})
        await wait_for(lambda: len(pushes.calls) == 1, timeout_s=5.0)
    assert pushes.calls == [ImageRef("eu", "team/app", "good", DIGEST)]


async def test_an_event_failing_max_attempts_times_is_dead_lettered_and_counted(
    store: SqlJobStore,
) -> None:
    metrics, registry = CollectorRegistry(), _registry(free_port())
    attempts: list[ImageRef] = []

    async def broken(ref: ImageRef) -> None:
        attempts.append(ref)
        raise RuntimeError("decide keeps failing")

    options = {"metrics_registry": metrics, "retry_interval_s": 0.05, "max_attempts": 2}
    async with _serving(store, [registry], broken, **options) as server:
        await _post(server.url, _envelope(_event("dead-1", registry.host)))
        await wait_for(lambda: len(attempts) == 2)

        def gauge(state: str) -> float | None:
            name = "policy_sidecar_webhook_inbox_events"
            return metrics.get_sample_value(name, {"state": state})

        await wait_for(lambda: gauge("dead") == 1)
        await asyncio.sleep(0.3)  # several retry intervals: a dead event is not tried again
    assert len(attempts) == 2
    [event] = await store.inbox_events()
    assert (event.event_id, event.state, event.attempts) == ("dead-1", "dead", 2)
    assert event.last_error == "RuntimeError: decide keeps failing"
    assert (gauge("pending"), gauge("retrying")) == (0, 0)
    outcome = {"source": "distribution", "action": "push", "outcome": "dead"}
    assert metrics.get_sample_value("policy_sidecar_webhook_events_processed_total", outcome) == 1
