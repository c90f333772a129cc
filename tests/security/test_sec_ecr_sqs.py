"""Issue 14 (ECR through EventBridge → SQS): hostile and broken messages on the event queue.

Anyone who can send to the queue (a misconfigured queue policy, a second rule, a compromised
producer) can put any body there. The attack: a stream of messages that are not usable ECR events
— not JSON, another source, an unknown detail type, oversized, fields missing or malformed,
another account or region than the registry — followed by one real push. Each bad message must
be refused by the documented rule (deleted by default; left on the queue with
``invalid_messages: keep``), nothing of them may reach the inbox or queue a job, and the poller
must keep running: the real push after them is copied, and the sidecar keeps deciding.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar._proto import policy_pb2 as pb
from sidecar.config import load_config
from sidecar.oci import RegistryClients
from tests.support.images import push_image
from tests.support.security import assert_serving, attacked_sidecar, metric_value, write_config
from tests.support.sidecar import RunningSidecar
from tests.support.sqs import (
    ACCOUNT,
    EcrWorld,
    Queue,
    ecr_queue,
    ecr_world,
    image_action,
    image_scan,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

RECEIVED = "policy_sidecar_sqs_messages_received_total"
PROCESSED = "policy_sidecar_webhook_events_processed_total"
REPO = "team/app"
DIGEST = "sha256:" + "ab" * 32


def _without(event: dict[str, Any], *path: str) -> dict[str, Any]:
    broken = copy.deepcopy(event)
    holder = broken
    for key in path[:-1]:
        holder = holder[key]
    del holder[path[-1]]
    return broken


def _with(event: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    broken = copy.deepcopy(event)
    holder = broken
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    return broken


def _invalid() -> list[str]:
    """Message bodies that are no usable ECR event (each must count as ``invalid``)."""
    push = image_action(REPO, DIGEST, tag="dev-9")
    oversized = _with(push, "x" * (70 * 1024), "detail", "padding")
    return [
        "not json at all {",
        json.dumps([push]),
        json.dumps(_with(push, "aws.s3", "source")),
        json.dumps(oversized),
        json.dumps(_without(push, "id")),
        json.dumps(_without(push, "detail")),
        json.dumps(_without(push, "detail", "repository-name")),
        json.dumps(_without(push, "detail", "image-digest")),
        json.dumps(_without(push, "detail", "action-type")),
        json.dumps(_with(push, "sha256:../../etc", "detail", "image-digest")),
        json.dumps(_with(push, "../escape", "detail", "repository-name")),
        json.dumps(_with(push, "bad tag!", "detail", "image-tag")),
        json.dumps(_with(push, 7, "detail", "image-tag")),
        json.dumps(_with(push, "yesterday", "time")),
        json.dumps(_with(push, "999999999999", "account")),  # another account than the registry
        json.dumps(_with(push, "eu-west-1", "region")),  # another region than the registry
        json.dumps(
            _with(image_scan(REPO, DIGEST), {"CRITICAL": -1}, "detail", "finding-severity-counts")
        ),
        json.dumps(_with(push, "x" * 300, "id")),
    ]


def _ignored() -> list[str]:
    """Well-formed ECR events the sidecar does not act on (each counts as ``ignored``)."""
    return [
        json.dumps(image_action(REPO, DIGEST, tag="dev-9", result="FAILURE")),
        json.dumps(
            _with(image_action(REPO, DIGEST), "ECR Pull Through Cache Action", "detail-type")
        ),
        json.dumps(_with(image_action(REPO, DIGEST), "ECR Made Up Thing", "detail-type")),
        json.dumps(image_scan(REPO, DIGEST, status="FAILED")),
    ]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[EcrWorld]:
    """moto, the source registry ``ci`` and the destination ``dev-us``; stopped after the test."""
    with ecr_world(tmp_path) as running:
        yield running


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.1)


async def _count(running: RunningSidecar, outcome: str) -> float:
    return await metric_value(running, RECEIVED, {"source": "ci", "outcome": outcome})


async def _push_and_copy(world: EcrWorld, running: RunningSidecar, queue: Queue, tag: str) -> str:
    """Push a real image to ``ci``, send its ECR push event, wait for the copy; its digest."""
    doc = world.config(queue)
    pool = RegistryClients(load_config(write_config(doc, world.work / "clients")).registries)
    try:
        image = await push_image(pool.get("ci"), REPO, tag=tag, seed=3)
        await queue.send(image_action(REPO, image.digest, tag=tag))

        async def copied() -> bool:
            jobs = (await running.stub.ListJobs(pb.ListJobsRequest(limit=100))).jobs
            return any(j.state == "succeeded" for j in jobs)

        await _until(copied, "the real push after the attack was copied")
        assert (await pool.get("dev-us").get_manifest(REPO, image.digest)).digest == image.digest
        return image.digest
    finally:
        await pool.close()


async def test_broken_and_foreign_messages_are_deleted_and_never_reach_the_inbox(
    world: EcrWorld, tmp_path: Path
) -> None:
    queue = ecr_queue(world.moto)
    # The registry names its account: an event of another account is someone else's image.
    doc = world.config(queue, ci={"account_id": ACCOUNT})
    invalid, ignored = _invalid(), _ignored()
    async with attacked_sidecar(doc, tmp_path / "run") as running:
        for body in invalid + ignored:
            await queue.send(body)

        async def all_refused() -> bool:
            return await _count(running, "invalid") == len(invalid) and await _count(
                running, "ignored"
            ) == len(ignored)

        await _until(all_refused, "every bad message was refused")

        async def queue_empty() -> bool:
            return await queue.depth() == 0

        await _until(queue_empty, "refused messages were deleted (invalid_messages: delete)")
        assert await _count(running, "recorded") == 0
        assert await metric_value(running, PROCESSED) == 0  # nothing reached the inbox

        # The poller survived all of it: a real push is still recorded and copied.
        await _push_and_copy(world, running, queue, "dev-1")
        assert await _count(running, "recorded") == 1
        jobs = (await running.stub.ListJobs(pb.ListJobsRequest(limit=100))).jobs
        assert len(jobs) == 1
        await assert_serving(running)


async def test_with_invalid_messages_keep_bad_messages_stay_for_the_redrive_policy(
    world: EcrWorld, tmp_path: Path
) -> None:
    queue = ecr_queue(world.moto)
    doc = world.config(queue, invalid_messages="keep")
    bad = ["{not json", json.dumps(_with(image_action(REPO, DIGEST), "aws.s3", "source"))]
    async with attacked_sidecar(doc, tmp_path / "run") as running:
        for body in bad:
            await queue.send(body)

        async def seen_twice() -> bool:
            # Kept: visible again after the visibility timeout (2 s) and refused again.
            return await _count(running, "invalid") >= 2 * len(bad)

        await _until(seen_twice, "kept messages came back and were refused again")
        await _push_and_copy(world, running, queue, "dev-2")

        async def only_bad_left() -> bool:
            return await queue.depth() == len(bad)

        await _until(only_bad_left, "the good message was deleted, the bad ones kept")
        assert await _count(running, "recorded") == 1
        await assert_serving(running)
