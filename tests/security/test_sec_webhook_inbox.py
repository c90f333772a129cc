"""Issue 15, "Webhook inbox head-of-line blocking".

The finding: failed event ids were filtered after ``LIMIT batch``, so once 100 events kept failing
every later push was ignored forever, and failed events were never dead-lettered. The attack: a
sender holding the webhook secret (or a compromised registry) posts 150 pushes of tags that do not
exist in the registry, so each one fails; then a real push arrives. It must be replicated, and the
failing ones must end dead-lettered — all seen through the real webhook endpoint and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp import web

from tests.support.fake_registry import fake_server
from tests.support.ports import free_port
from tests.support.security import (
    assert_serving,
    attacked_sidecar,
    inventory,
    metric_value,
    post_events,
    push_event,
    registry_entry,
    sidecar_config,
)
from tests.support.sidecar import RunningSidecar

pytestmark = pytest.mark.integration

SECRET = "webhook-shared-secret"
BAD = 150  # more than the processor's batch of 100
DIGEST = "sha256:" + "ab" * 32
PROCESSED = "policy_sidecar_webhook_events_processed_total"
INBOX = "policy_sidecar_webhook_inbox_events"


async def _no_such_tag(request: web.Request) -> web.StreamResponse:
    return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)


async def _until(running: RunningSidecar, name: str, labels: dict[str, str], want: float) -> None:
    deadline = time.monotonic() + 60
    while (value := await metric_value(running, name, labels)) < want:
        assert time.monotonic() < deadline, f"{name}{labels} = {value}, want {want}"
        await asyncio.sleep(0.1)


async def test_failing_events_neither_block_later_pushes_nor_stay_forever(tmp_path: Path) -> None:
    async with fake_server(_no_such_tag) as source:
        host = source.url.removeprefix("http://")
        registries = inventory()
        registries[0] = registry_entry("ci", source.url, environment="ci")
        port = free_port()
        doc = sidecar_config(
            registries,
            replication={
                "webhook": {
                    "listen": f"127.0.0.1:{port}",
                    "secret": SECRET,
                    "retry_interval_s": 0.2,
                    "max_attempts": 2,
                }
            },
        )
        url = f"http://127.0.0.1:{port}/v1/registry/events"
        async with attacked_sidecar(doc, tmp_path) as running:
            bad = [push_event(f"bad-{n}", host, tag=f"gone-{n}") for n in range(BAD)]
            assert (await post_events(url, SECRET, bad))[0] == 200
            # Wait until every bad event failed once: the head of the inbox is all failures.
            await _until(running, PROCESSED, {"action": "push", "outcome": "failed"}, BAD)

            good = push_event("good-1", host, tag="dev-1", digest=DIGEST)
            assert (await post_events(url, SECRET, [good]))[0] == 200
            await _until(running, PROCESSED, {"action": "push", "outcome": "pushed"}, 1)

            # After max_attempts failures each bad event is dead-lettered, not retried forever.
            await _until(running, INBOX, {"state": "dead"}, BAD)
            assert await metric_value(running, INBOX, {"state": "retrying"}) == 0
            tried = len(source.seen)
            await asyncio.sleep(1.0)  # several retry intervals: dead events are not tried again
            assert len(source.seen) == tried
            await assert_serving(running)
