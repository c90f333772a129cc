"""ECR events as EventBridge puts them on SQS, and a queue on the moto server for tests.

:func:`image_action` and :func:`image_scan` build events in the shapes the Amazon ECR user guide
documents ("Amazon ECR events and EventBridge"); :class:`Queue` is a real queue on moto's SQS
(tests/support/moto.py), used through boto3 exactly as EventBridge's SQS target would fill it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from tests.support.moto import MotoServer, moto_server
from tests.support.registry import RegistryServer, registry_server
from tests.support.security import registry_entry, sidecar_config

__all__ = [
    "ACCOUNT",
    "EcrWorld",
    "Queue",
    "credentials_file",
    "ecr_queue",
    "ecr_world",
    "image_action",
    "image_scan",
    "sqs_source",
]

ACCOUNT = "123456789012"


def _now() -> str:
    return f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"


def image_action(
    repository: str,
    digest: str,
    *,
    tag: str = "",
    action: str = "PUSH",
    result: str = "SUCCESS",
    event_id: str = "",
    region: str = "us-east-1",
    account: str = ACCOUNT,
    media_type: str = "",
) -> dict[str, Any]:
    """An ``ECR Image Action`` event (a completed push, or a deletion with ``action="DELETE"``)."""
    detail: dict[str, Any] = {
        "result": result,
        "repository-name": repository,
        "image-digest": digest,
        "action-type": action,
    }
    if tag:
        detail["image-tag"] = tag
    if media_type:
        detail["manifest-media-type"] = media_type
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "account": account,
        "time": _now(),
        "region": region,
        "resources": [],
        "detail": detail,
    }


def image_scan(
    repository: str,
    digest: str,
    *,
    tags: Sequence[str] = (),
    counts: Mapping[str, int] | None = None,
    status: str = "COMPLETE",
    event_id: str = "",
    region: str = "us-east-1",
) -> dict[str, Any]:
    """An ``ECR Image Scan`` event (basic scanning completed)."""
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": "ECR Image Scan",
        "source": "aws.ecr",
        "account": ACCOUNT,
        "time": _now(),
        "region": region,
        "resources": [f"arn:aws:ecr:{region}:{ACCOUNT}:repository/{repository}"],
        "detail": {
            "scan-status": status,
            "repository-name": repository,
            "finding-severity-counts": dict(counts or {}),
            "image-digest": digest,
            "image-tags": list(tags),
        },
    }


def credentials_file(moto: MotoServer, directory: Path) -> Path:
    """An AWS shared-credentials file holding moto's fake keys (the SQS source's ``auth``)."""
    path = directory / "aws-credentials"
    path.write_text(
        "[default]\n"
        f"aws_access_key_id = {moto.access_key_id}\n"
        f"aws_secret_access_key = {moto.secret_access_key}\n",
        encoding="utf-8",
    )
    return path


@dataclass
class Queue:
    """A queue on moto: send bodies as EventBridge would, and look at what is left."""

    moto: MotoServer
    url: str
    client: Any

    async def send(self, body: str | Mapping[str, Any]) -> None:
        """Put one message on the queue (a mapping is sent as its JSON, like EventBridge)."""
        text = body if isinstance(body, str) else json.dumps(body)
        await asyncio.to_thread(self.client.send_message, QueueUrl=self.url, MessageBody=text)

    async def depth(self) -> int:
        """Messages still in the queue, visible or in flight (received, not deleted)."""
        answer = await asyncio.to_thread(
            self.client.get_queue_attributes,
            QueueUrl=self.url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )
        attributes = answer["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )


def ecr_queue(moto: MotoServer, name: str = "ecr-events") -> Queue:
    """Create a standard queue on ``moto`` (the EventBridge rule's target)."""
    client = boto3.client(
        "sqs",
        endpoint_url=moto.endpoint_url,
        region_name=moto.region,
        aws_access_key_id=moto.access_key_id,
        aws_secret_access_key=moto.secret_access_key,
    )
    url = client.create_queue(QueueName=name)["QueueUrl"]
    return Queue(moto, url, client)


def sqs_source(
    queue: Queue, registry: str, credentials: Path, *, endpoint_url: str = "", **settings: Any
) -> dict[str, Any]:
    """A ``policy.replication.sqs`` entry for ``queue``, with fast test timings by default."""
    entry: dict[str, Any] = {
        "queue_url": queue.url,
        "registry": registry,
        "endpoint_url": endpoint_url or queue.moto.endpoint_url,
        "region": queue.moto.region,
        "wait_time_s": 1,
        "visibility_timeout_s": 2,
        "retry_base_s": 0.1,
        "retry_max_s": 1,
        "auth": {"credentials_file": str(credentials)},
    }
    entry.update(settings)
    return entry


@dataclass(frozen=True)
class EcrWorld:
    """moto, a source registry ``ci`` standing in for ECR, and a destination ``dev-us``."""

    moto: MotoServer
    ci: RegistryServer
    dev: RegistryServer
    credentials: Path
    work: Path

    def config(
        self,
        queue: Queue,
        *,
        endpoint_url: str = "",
        ci: Mapping[str, Any] | None = None,
        **source: Any,
    ) -> dict[str, Any]:
        """The sidecar config: both registries (``ci`` fields added from ``ci``) and ``queue``
        as ``ci``'s SQS source (``source`` overrides its settings)."""
        registries = [
            registry_entry("ci", self.ci.url, environment="ci", **dict(ci or {})),
            registry_entry("dev-us", self.dev.url, environment="dev"),
        ]
        entry = sqs_source(queue, "ci", self.credentials, endpoint_url=endpoint_url, **source)
        return sidecar_config(registries, replication={"sqs": [entry], "registry_enrichment": True})


@contextlib.contextmanager
def ecr_world(work: Path) -> Iterator[EcrWorld]:
    """Start moto and the two registries under ``work``; stop them when the block exits."""
    with (
        moto_server(work / "moto") as moto,
        registry_server(work / "ci") as ci,
        registry_server(work / "dev") as dev,
    ):
        yield EcrWorld(moto, ci, dev, credentials_file(moto, work), work)
