"""Webhook test support: an inbox store double, raw OCI pushes/pulls and a recording on_push.

``MemoryInbox`` implements only the webhook/pull part of ``JobStore`` (record_event,
pending_events, complete_event, add_pulls, pulls) — an edge fake until the real SQLite store is
used; a "restart" reuses the same object, which is what a durable store gives a new process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from sidecar.model import ImageRef

__all__ = [
    "MemoryInbox",
    "PushRecorder",
    "free_port",
    "pull_manifest",
    "push_blob",
    "push_manifest",
    "push_tiny_image",
    "wait_for",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


@dataclass
class MemoryInbox:
    """The webhook inbox and pull counts of a JobStore, in memory."""

    events: dict[str, bytes] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    pull_counts: dict[tuple[str, str], int] = field(default_factory=dict)

    async def record_event(self, event_id: str, payload: bytes) -> bool:
        """Record an event; False for a duplicate id."""
        if event_id in self.events:
            return False
        self.events[event_id] = payload
        return True

    async def pending_events(self, limit: int = 100) -> list[tuple[str, bytes]]:
        """Return recorded, uncompleted events in arrival order."""
        return [(i, p) for i, p in self.events.items() if i not in self.done][:limit]

    async def complete_event(self, event_id: str) -> None:
        """Mark an event processed."""
        self.done.add(event_id)

    async def add_pulls(self, repository: str, region: str, count: int = 1) -> None:
        """Add pulls of a repository in a region."""
        key = (repository, region)
        self.pull_counts[key] = self.pull_counts.get(key, 0) + count

    async def pulls(self, repository: str) -> dict[str, int]:
        """Return pulls of a repository by region."""
        return {r: n for (repo, r), n in self.pull_counts.items() if repo == repository}

    async def close(self) -> None:
        """Nothing to release."""


@dataclass
class PushRecorder:
    """An ``on_push`` that records every ImageRef it is called with."""

    calls: list[ImageRef] = field(default_factory=list)

    async def __call__(self, ref: ImageRef) -> None:
        """Record ``ref``."""
        self.calls.append(ref)


def free_port() -> int:
    """Return a loopback port free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``check`` until it holds; fail with AssertionError after ``timeout_s``."""
    end = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.05)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _put_blob(session: aiohttp.ClientSession, base: str, repo: str, data: bytes) -> str:
    digest = _digest(data)
    async with session.post(f"{base}/v2/{repo}/blobs/uploads/") as resp:
        assert resp.status == 202, await resp.text()
        location = resp.headers["Location"]
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    async with session.put(
        f"{location}{sep}digest={digest}",
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    ) as resp:
        assert resp.status == 201, await resp.text()
    return digest


async def push_blob(base: str, repo: str, data: bytes) -> dict[str, object]:
    """Upload a blob; return its OCI descriptor (layer media type)."""
    async with aiohttp.ClientSession() as session:
        digest = await _put_blob(session, base, repo, data)
    return {
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": digest,
        "size": len(data),
    }


async def push_manifest(base: str, repo: str, ref: str, doc: dict[str, object]) -> str:
    """PUT a manifest (its own ``mediaType``) under ``ref`` (empty: its digest); return the digest."""
    body = json.dumps(doc).encode()
    ref = ref or _digest(body)
    async with (
        aiohttp.ClientSession() as session,
        session.put(
            f"{base}/v2/{repo}/manifests/{ref}",
            data=body,
            headers={"Content-Type": str(doc["mediaType"])},
        ) as resp,
    ):
        assert resp.status == 201, await resp.text()
    return _digest(body)


async def push_tiny_image(
    base: str,
    repo: str,
    tag: str,
    *,
    labels: dict[str, str] | None = None,
    created: str = "2026-01-02T03:04:05Z",
    platform: tuple[str, str] = ("linux", "amd64"),
) -> str:
    """Push a one-layer OCI image by tag (or digest when ``tag`` is empty); return its digest."""
    config = json.dumps(
        {
            "architecture": platform[1],
            "os": platform[0],
            "created": created,
            "config": {"Labels": labels if labels is not None else {"t": tag}},
            "rootfs": {"type": "layers", "diff_ids": []},
        }
    ).encode()
    config_desc = {**await push_blob(base, repo, config), "mediaType": OCI_CONFIG}
    layer = await push_blob(base, repo, f"layer of {repo}:{tag}:{platform}".encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": [layer],
    }
    return await push_manifest(base, repo, tag, manifest)


async def pull_manifest(base: str, repo: str, ref: str) -> None:
    """GET a manifest the way a client pulling the image does."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base}/v2/{repo}/manifests/{ref}", headers={"Accept": OCI_MANIFEST}) as resp,
    ):
        assert resp.status == 200, await resp.text()
        await resp.read()
