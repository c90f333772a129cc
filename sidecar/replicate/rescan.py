"""Re-decide the images of one digest when its facts changed: a scan finished, a referrer landed.

A scan event (Harbor ``SCANNING_COMPLETED``, ECR ``Image Scan``) or the push of a referrer (an
OCI manifest whose ``subject`` is the image: a signature, a scan attestation) may open a gate
the first decision closed (``SCAN_MISSING``…). Re-deciding is a push decided again: the same
``on_push`` (decide, then idempotent jobs by digest and destination), so a destination already
holding the copy gets no second one and a destination now allowed gets its first.

Which images: the given tag, else every tag of the repository that points at the digest (at
most ``max_tags`` tags looked at; cosign-style ``sha256-…`` referrer tags never count).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

from sidecar.model.decision import ImageRef
from sidecar.oci import RegistryClients
from sidecar.telemetry import get_logger

__all__ = ["Rescanner"]

_log = get_logger("sidecar.replicate.rescan")
_REFERRER_TAG = re.compile(r"sha256-[0-9a-f]{64}(\.[a-z]+)?")
_HEADS_AT_ONCE = 8


class Rescanner:
    """``await rescanner(image, referrer)``: re-decide the images of a digest; return how many."""

    def __init__(
        self,
        clients: RegistryClients,
        on_push: Callable[[ImageRef], Awaitable[None]],
        *,
        mark: Callable[[str, str, str], None] = lambda registry, repository, digest: None,
        max_tags: int = 1000,
    ) -> None:
        """Decide through ``on_push``; ``mark`` tells enrichment the digest's referrers changed."""
        self._clients = clients
        self._on_push = on_push
        self._mark = mark
        self._max_tags = max_tags

    async def __call__(self, image: ImageRef, referrer: bool) -> int:
        """Re-decide ``image`` (a referrer's subject when ``referrer``); return images decided."""
        if referrer:
            subject = await self._subject(image)
            if not subject:
                return 0  # an index child or any manifest without a subject: nothing to re-decide
            image = ImageRef(image.registry, image.repository, "", subject)
        self._mark(image.registry, image.repository, image.digest)
        tags = [image.tag] if image.tag else await self._tags_at(image)
        for tag in tags:
            await self._on_push(ImageRef(image.registry, image.repository, tag, image.digest))
        if not tags:
            _log.info("no tag holds the re-scanned digest", image=str(image))
        return len(tags)

    async def _subject(self, image: ImageRef) -> str:
        client = self._clients.get(image.registry)
        manifest = await client.get_manifest(image.repository, image.digest)
        subject = manifest.json.get("subject")
        digest = subject.get("digest") if isinstance(subject, dict) else None
        return digest if isinstance(digest, str) and digest.startswith("sha256:") else ""

    async def _tags_at(self, image: ImageRef) -> list[str]:
        client = self._clients.get(image.registry)
        tags = [
            t
            for t in await client.list_tags(image.repository, limit=self._max_tags)
            if not _REFERRER_TAG.fullmatch(t)
        ]
        gate = asyncio.Semaphore(_HEADS_AT_ONCE)

        async def at(tag: str) -> bool:
            async with gate:
                found = await client.head_manifest(image.repository, tag)
            return found is not None and found.digest == image.digest

        held = await asyncio.gather(*(at(t) for t in tags))
        return [t for t, yes in zip(tags, held, strict=True) if yes]
