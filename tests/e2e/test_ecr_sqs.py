"""ECR through EventBridge → SQS, end to end: moto's SQS, real registries, the real sidecar.

The source registry is a real CNCF Distribution registry standing in for ECR (the sidecar reads
and copies images the same way); its events arrive the way EventBridge delivers ECR events: the
event JSON as an SQS message body on moto's SQS. Every copy is read back by digest from the
destination registry itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sidecar._proto import policy_pb2 as pb
from sidecar.config import load_config
from sidecar.oci import RegistryClients
from tests.fault.process import running_process
from tests.support.fake_registry import fake_server
from tests.support.images import push_image
from tests.support.moto import MotoServer
from tests.support.ports import free_port
from tests.support.security import (
    assert_serving,
    attacked_sidecar,
    metric_value,
    write_config,
)
from tests.support.sidecar import RunningSidecar
from tests.support.sqs import EcrWorld, ecr_queue, ecr_world, image_action, image_scan

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

RECEIVED = "policy_sidecar_sqs_messages_received_total"
POLL_ERRORS = "policy_sidecar_sqs_poll_errors_total"
LAG = "policy_sidecar_webhook_event_lag_seconds_count"
PROCESSED = "policy_sidecar_webhook_events_processed_total"
REPO = "team/app"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[EcrWorld]:
    """moto, the source registry ``ci`` and the destination ``dev-us``; stopped after the test."""
    with ecr_world(tmp_path) as running:
        yield running


@contextlib.asynccontextmanager
async def _clients(world: EcrWorld, doc: dict[str, Any]) -> AsyncIterator[RegistryClients]:
    pool = RegistryClients(load_config(write_config(doc, world.work / "clients")).registries)
    try:
        yield pool
    finally:
        await pool.close()


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.1)


async def _jobs(running: RunningSidecar) -> list[pb.Job]:
    return list((await running.stub.ListJobs(pb.ListJobsRequest(limit=100))).jobs)


async def _copied(running: RunningSidecar, clients: RegistryClients, digest: str) -> None:
    """Wait until every job succeeded and ``dev-us`` serves ``REPO@digest``."""

    async def done() -> bool:
        jobs = await _jobs(running)
        return bool(jobs) and all(j.state == "succeeded" for j in jobs)

    await _until(done, "the copy job succeeded")
    manifest = await clients.get("dev-us").get_manifest(REPO, digest)
    assert manifest.digest == digest


async def _metric(running: RunningSidecar, name: str, **labels: str) -> float:
    return await metric_value(running, name, labels)


async def test_an_ecr_push_on_sqs_is_copied_once_however_often_it_is_delivered(
    world: EcrWorld, tmp_path: Path
) -> None:
    queue = ecr_queue(world.moto)
    doc = world.config(queue)
    async with _clients(world, doc) as clients, attacked_sidecar(doc, tmp_path / "run") as running:
        image = await push_image(clients.get("ci"), REPO, tag="dev-1", seed=7)
        event = image_action(REPO, image.digest, tag="dev-1")
        await queue.send(event)

        await _copied(running, clients, image.digest)
        jobs = await _jobs(running)
        assert [(j.destination, j.digest) for j in jobs] == [(f"dev-us/{REPO}:dev-1", image.digest)]
        assert await _metric(running, RECEIVED, source="ci", outcome="recorded") == 1
        assert await _metric(running, LAG, source="ecr") == 1

        async def queue_empty() -> bool:
            return await queue.depth() == 0

        await _until(queue_empty, "the message was deleted after the event was recorded")

        # EventBridge (at-least-once) delivers the same event again: same id, new message.
        await queue.send(event)

        async def deduplicated() -> bool:
            return await _metric(running, RECEIVED, source="ci", outcome="duplicate") == 1

        await _until(deduplicated, "the redelivered event was deduplicated")
        await _until(queue_empty, "the duplicate message was deleted")
        await asyncio.sleep(0.5)  # a second copy would be queued by now
        assert len(await _jobs(running)) == 1
        await assert_serving(running)


async def test_an_ecr_scan_re_decides_and_an_ecr_delete_removes_only_the_sidecars_copy(
    world: EcrWorld, tmp_path: Path
) -> None:
    """A scan completion re-decides the image; a DELETE (the tag gone from ECR) removes the
    copy the sidecar made, with ``propagate_deletes: on``."""
    queue = ecr_queue(world.moto)
    doc = world.config(queue)
    doc["policy"]["replication"]["webhook"] = {"propagate_deletes": "on"}
    async with _clients(world, doc) as clients, attacked_sidecar(doc, tmp_path / "run") as running:
        ci, dev = clients.get("ci"), clients.get("dev-us")
        image = await push_image(ci, REPO, tag="dev-5", seed=11)
        await queue.send(image_action(REPO, image.digest, tag="dev-5"))
        await _copied(running, clients, image.digest)

        await queue.send(image_scan(REPO, image.digest, tags=["dev-5"], counts={"HIGH": 2}))

        async def rescanned() -> bool:
            return await _metric(running, PROCESSED, action="scan", outcome="rescanned") == 1

        await _until(rescanned, "the scan completion re-decided the image")

        # ECR deleted the tag (the source no longer holds it), then sent the DELETE event.
        assert await ci.delete_manifest(REPO, image.digest)
        await queue.send(image_action(REPO, image.digest, tag="dev-5", action="DELETE"))

        async def removed() -> bool:
            return await dev.head_manifest(REPO, "dev-5") is None

        await _until(removed, "the sidecar's copy in dev-us was removed")
        assert await _metric(running, PROCESSED, action="delete", outcome="deleted") == 1
        assert await _metric(running, RECEIVED, source="ci", outcome="recorded") == 3
        assert running.sidecar.parts is not None
        assert await running.sidecar.parts.store.inbox_events() == []  # none pending or dead
        await assert_serving(running)


@dataclass
class HangingProxy:
    """A proxy in front of moto's SQS (``url``) and the delete requests it holds (``hung``)."""

    url: str
    hung: list[str]


@contextlib.asynccontextmanager
async def _deletes_hang(moto: MotoServer) -> AsyncIterator[HangingProxy]:
    """A proxy to moto's SQS that forwards everything but never answers a delete.

    A sidecar stopped while its delete hangs there has recorded the event and not deleted the
    message: the state a crash between the inbox commit and the SQS delete leaves behind.
    """
    hung: list[str] = []
    release = asyncio.Event()

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        target = request.headers.get("X-Amz-Target", "") + body[:200].decode(errors="replace")
        if "DeleteMessage" in target:
            hung.append(target)
            await release.wait()
            return web.Response(status=503, text="never answered")  # never reaches moto
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, moto.endpoint_url + request.path_qs, data=body, headers=headers
            ) as answer,
        ):
            payload = await answer.read()
            keep = {"Content-Type": answer.headers.get("Content-Type", "text/xml")}
            return web.Response(body=payload, status=answer.status, headers=keep)

    async with fake_server(forward) as proxy:
        try:
            yield HangingProxy(proxy.url, hung)
        finally:
            release.set()


async def test_a_stop_between_inbox_commit_and_sqs_delete_is_deduplicated_on_redelivery(
    world: EcrWorld, tmp_path: Path
) -> None:
    queue = ecr_queue(world.moto)
    async with _clients(world, world.config(queue)) as clients:
        image = await push_image(clients.get("ci"), REPO, tag="dev-2", seed=8)
        await queue.send(image_action(REPO, image.digest, tag="dev-2"))

        async with _deletes_hang(world.moto) as hung:
            doc = world.config(queue, endpoint_url=hung.url)
            async with attacked_sidecar(doc, tmp_path / "run") as running:

                async def delete_in_flight() -> bool:
                    return len(hung.hung) >= 1

                await _until(delete_in_flight, "the poller recorded the event and sent its delete")
                assert await _metric(running, RECEIVED, source="ci", outcome="recorded") == 1
                await _copied(running, clients, image.digest)
            # Stopped with the delete unanswered: the message is still on the queue.
        assert await queue.depth() == 1

        # Restarted on the same state (its inbox), SQS reachable again.
        async with attacked_sidecar(world.config(queue), tmp_path / "run") as running:

            async def deduplicated() -> bool:
                return await _metric(running, RECEIVED, source="ci", outcome="duplicate") == 1

            # Visible again after the visibility timeout (2 s), recorded already: a duplicate.
            await _until(deduplicated, "the redelivered message was deduplicated by the inbox")

            async def queue_empty() -> bool:
                return await queue.depth() == 0

            await _until(queue_empty, "the redelivered message was deleted")
            assert await _metric(running, RECEIVED, source="ci", outcome="recorded") == 0
            jobs = await _jobs(running)
            assert [(j.destination, j.state) for j in jobs] == [
                (f"dev-us/{REPO}:dev-2", "succeeded")
            ]


async def test_sqs_unavailable_is_retried_with_backoff_while_the_sidecar_serves(
    world: EcrWorld, tmp_path: Path
) -> None:
    queue = ecr_queue(world.moto)
    async with _clients(world, world.config(queue)) as clients:
        image = await push_image(clients.get("ci"), REPO, tag="dev-3", seed=9)
    await queue.send(image_action(REPO, image.digest, tag="dev-3"))

    async def refuse(request: web.Request) -> web.StreamResponse:
        return web.Response(status=503, text="unavailable")

    async with fake_server(refuse) as down:
        doc = world.config(queue, endpoint_url=down.url)
        async with attacked_sidecar(doc, tmp_path / "run") as running:

            async def failing() -> bool:
                return await _metric(running, POLL_ERRORS, source="ci", operation="receive") >= 3

            started = time.monotonic()
            await _until(failing, "receive errors were counted")
            # retry_base_s 0.1 doubled up to retry_max_s 1, jittered: three failures take a while,
            # not a hot loop (botocore's own retry makes two attempts per round).
            assert time.monotonic() - started >= 0.15
            requests_then = len(down.seen)
            await asyncio.sleep(1.0)
            assert len(down.seen) - requests_then <= 2 * 4  # at most ~2 rounds/s at the 1 s cap
            await assert_serving(running)
        assert await queue.depth() == 1  # nothing was taken off the queue meanwhile


async def test_a_served_process_copies_from_sqs_and_stops_promptly_mid_long_poll(
    world: EcrWorld, tmp_path: Path
) -> None:
    """``policy-sidecar serve`` as its own process: SQS push → copy; SIGTERM ends it at once.

    The long poll waits 20 s; it runs on a daemon thread, so a stopping process does not wait
    for an answer nobody will read.
    """
    queue = ecr_queue(world.moto)
    doc = world.config(queue, wait_time_s=20)
    address = f"127.0.0.1:{free_port()}"
    doc["policy"]["listen"] = address
    config_path = write_config(doc, tmp_path / "serve")
    async with _clients(world, doc) as clients:
        image = await push_image(clients.get("ci"), REPO, tag="dev-4", seed=10)
        with running_process(config_path, tmp_path / "serve.log", address) as process:
            await process.wait_ready()
            await queue.send(image_action(REPO, image.digest, tag="dev-4"))

            async def copied() -> bool:
                return await clients.get("dev-us").head_manifest(REPO, image.digest) is not None

            await _until(copied, "the served process copied the pushed image")

            async def queue_empty() -> bool:
                return await queue.depth() == 0

            await _until(queue_empty, "the message was deleted")
            await asyncio.sleep(1.0)  # the next 20 s long poll is in flight now
            started = time.monotonic()
            process.stop()
            stopped_in = time.monotonic() - started
            assert process.process is not None and process.process.returncode == 0
            assert stopped_in < 10, f"stopping took {stopped_in:.1f} s:\n{process.log_tail()}"


async def test_messages_a_long_poll_receives_after_stop_are_handed_back_at_once(
    world: EcrWorld, tmp_path: Path
) -> None:
    """A stopped sidecar's long poll still in flight must not hide new messages for a minute."""
    queue = ecr_queue(world.moto)
    doc = world.config(queue, wait_time_s=20, visibility_timeout_s=60)
    async with attacked_sidecar(doc, tmp_path / "run"):
        await asyncio.sleep(1.0)  # the first 20 s long poll is in flight
    # Stopped; the orphaned long poll receives this message (hidden for 60 s) and hands it back.
    await queue.send(image_action(REPO, "sha256:" + "c" * 64, tag="dev-6"))
    deadline = time.monotonic() + 15
    received: list[Any] = []
    while not received:
        assert time.monotonic() < deadline, "the message stayed hidden after the sidecar stopped"
        answer = await asyncio.to_thread(
            queue.client.receive_message, QueueUrl=queue.url, WaitTimeSeconds=1
        )
        received = answer.get("Messages") or []


async def test_an_event_the_store_cannot_record_stays_on_the_queue_until_it_can(
    world: EcrWorld, tmp_path: Path
) -> None:
    """The inbox is locked (another writer holds the SQLite file): the message is not deleted."""
    queue = ecr_queue(world.moto)
    doc = world.config(queue)
    async with _clients(world, doc) as clients, attacked_sidecar(doc, tmp_path / "run") as running:
        image = await push_image(clients.get("ci"), REPO, tag="dev-7", seed=12)
        database = tmp_path / "run" / "state" / "jobs.db"
        lock = await asyncio.to_thread(
            sqlite3.connect, database, timeout=30, check_same_thread=False
        )
        try:
            await asyncio.to_thread(lock.execute, "BEGIN EXCLUSIVE")
            await queue.send(image_action(REPO, image.digest, tag="dev-7"))

            async def failed() -> bool:
                return await _metric(running, RECEIVED, source="ci", outcome="failed") >= 1

            # The store gives up after its busy timeout (10 s): not recorded, so not deleted.
            await _until(failed, "the record failed while the store was locked")
            assert await queue.depth() == 1
            assert await _metric(running, RECEIVED, source="ci", outcome="recorded") == 0
        finally:
            await asyncio.to_thread(lock.rollback)
            await asyncio.to_thread(lock.close)

        async def recorded() -> bool:
            return await _metric(running, RECEIVED, source="ci", outcome="recorded") == 1

        await _until(recorded, "the redelivered message was recorded once the store was back")
        await _copied(running, clients, image.digest)

        async def queue_empty() -> bool:
            return await queue.depth() == 0

        await _until(queue_empty, "the message was deleted after it was recorded")
