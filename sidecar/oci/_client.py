"""The OCI distribution client of one registry: manifests, blobs, mounts, referrers and tags."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterable, AsyncIterator, Coroutine, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

import orjson
from opentelemetry.trace import TracerProvider

from sidecar.config import RegistryConfig
from sidecar.errors import DigestMismatch, RegistryError
from sidecar.oci._http import Transport, read_capped, same_origin
from sidecar.oci._media import (
    ACCEPT_MANIFESTS,
    OCI_INDEX,
    Descriptor,
    Manifest,
    check_digest,
    digest_of,
    fallback_tag,
)
from sidecar.oci._upload import mount_blob, pull_scope, push_blob, push_scope
from sidecar.typing import RegistryCredentials

__all__ = [
    "COSIGN_TAG_TYPES",
    "MAX_LIST_PAGE_BYTES",
    "MAX_MANIFEST_BYTES",
    "MAX_REFERRERS_BYTES",
    "REF_NAME",
    "RegistryClient",
]

_T = TypeVar("_T")

REF_NAME = "org.opencontainers.image.ref.name"
# Cosign's tag scheme: suffix → the artifact type its referrer descriptor reports.
COSIGN_TAG_TYPES = {
    ".sig": "application/vnd.dev.cosign.artifact.sig.v1+json",
    ".att": "application/vnd.dev.cosign.attestation.v1+json",
    ".sbom": "application/vnd.dev.cosign.artifact.sbom.v1+json",
}
_CHUNK = 1 << 16
# The distribution spec lets registries refuse manifests above 4 MiB; nothing larger is read.
MAX_MANIFEST_BYTES = 4 << 20
# A referrers API answer is an index too (1,000 descriptors take well under 1 MiB).
MAX_REFERRERS_BYTES = 4 << 20
# One page of a tag or catalog list (Distribution pages are 100-1,000 names of < 256 bytes).
MAX_LIST_PAGE_BYTES = 4 << 20
_NO_REFERRERS_API_TTL_S = 300.0  # how long a 404 from the referrers API is believed


async def _together(aws: Sequence[Coroutine[Any, Any, _T]]) -> list[_T]:
    """Await all at once; the first failure cancels the others and is raised as it is."""
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class RegistryClient:
    """An async OCI distribution client for one registry over one kept-alive session."""

    def __init__(
        self,
        registry: RegistryConfig,
        *,
        rate_limit_rps: float | None = None,
        burst: int = 10,
        timeout_s: float = 30.0,
        credentials: RegistryCredentials | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        """Configure from the inventory entry; the registry's own ``timeout`` wins over ``timeout_s``.

        ``credentials`` replaces the ones ``registry.auth`` configures (a secret manager's);
        ``tracer_provider`` records an HTTP client span per request made inside a trace.
        """
        self.name = registry.name
        self._t = Transport(
            registry,
            rate_limit_rps=rate_limit_rps,
            burst=burst,
            timeout_s=registry.timeout_s or timeout_s,
            credentials=credentials,
            tracer_provider=tracer_provider,
        )
        self._no_referrers_api_until = 0.0

    @property
    def requests(self) -> int:
        """HTTP requests sent so far (token requests included), for benchmarks and copy results."""
        return self._t.requests

    async def credentials(self) -> tuple[str, str] | None:
        """This registry's (user, secret) from its auth or secret manager (None: anonymous).

        For its cloud's own listing API (Artifact Registry), which takes the same Google access
        token the registry does; the caller sends it only to that API's origin.
        """
        return await self._t.auth.credentials()

    def _what(self, repository: str, reference: str = "") -> str:
        at = "@" if reference.startswith("sha256:") else ":"
        return f"registry {self.name}: {repository}{at + reference if reference else ''}"

    async def ping(self) -> float:
        """GET ``/v2/`` with auth; return the round trip in seconds."""
        started = time.perf_counter()
        async with self._t.request("GET", "/v2/", what=f"registry {self.name}: /v2/") as resp:
            await resp.read()
        return time.perf_counter() - started

    async def get_manifest(self, repository: str, reference: str) -> Manifest:
        """Fetch a manifest by tag or digest; its bytes must hash to the digest asked for or served."""
        what = self._what(repository, reference)
        headers = {"Accept": ACCEPT_MANIFESTS}
        path = f"/v2/{repository}/manifests/{reference}"
        async with self._t.request(
            "GET", path, what=what, scopes=pull_scope(repository), headers=headers
        ) as resp:
            data = await read_capped(resp, MAX_MANIFEST_BYTES, what, "manifest")
            served = resp.headers.get("Docker-Content-Digest", "")
            media_type = resp.content_type
        expected = reference if reference.startswith("sha256:") else served
        return Manifest.verified(data, media_type, expected, what)

    async def head_manifest(self, repository: str, reference: str) -> Descriptor | None:
        """HEAD a manifest: its descriptor, or None when the registry does not have it."""
        what = self._what(repository, reference)
        path = f"/v2/{repository}/manifests/{reference}"
        async with self._t.request(
            "HEAD",
            path,
            what=what,
            scopes=pull_scope(repository),
            headers={"Accept": ACCEPT_MANIFESTS},
            ok=(200, 404),
        ) as resp:
            if resp.status == 404:
                return None
            digest = resp.headers.get("Docker-Content-Digest", "")
            media_type, size = resp.content_type, resp.content_length
        if not digest or size is None:
            # Some registries omit the digest on HEAD: fall back to reading the manifest.
            return (await self.get_manifest(repository, reference)).descriptor()
        return Descriptor(media_type=media_type, digest=digest, size=size)

    async def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> None:
        """Push ``manifest`` byte for byte under a tag or its digest."""
        what = self._what(repository, reference)
        actual = digest_of(manifest.data)
        if actual != manifest.digest or (reference.startswith("sha256:") and reference != actual):
            raise DigestMismatch(f"{what}: manifest bytes hash to {actual}, not {manifest.digest}")
        async with self._t.request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            what=what,
            scopes=push_scope(repository),
            headers={"Content-Type": manifest.media_type},
            data=manifest.data,
            ok=(200, 201, 202),
        ) as resp:
            stored = resp.headers.get("Docker-Content-Digest", "")
        if stored and stored != actual:
            raise DigestMismatch(f"{what}: registry stored {stored}, pushed {actual}")

    async def blob_exists(self, repository: str, digest: str) -> bool:
        """True when the registry holds the blob in ``repository`` (HEAD)."""
        async with self._t.request(
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            what=self._what(repository, digest),
            scopes=pull_scope(repository),
            ok=(200, 404),
        ) as resp:
            return resp.status == 200

    async def read_blob(self, repository: str, digest: str, max_bytes: int = 4 << 20) -> bytes:
        """Read a small blob (config, attestation) whole; verified; refused above ``max_bytes``."""
        what = self._what(repository, digest)
        check_digest(digest, what)
        chunks: list[bytes] = []
        size = 0
        async for chunk in self.stream_blob(repository, digest, _limit=max_bytes):
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)

    async def stream_blob(
        self, repository: str, digest: str, *, _limit: int | None = None
    ) -> AsyncIterator[bytes]:
        """Yield a blob's bytes; DigestMismatch at the end if they hash wrong, RegistryError if cut."""
        what = self._what(repository, digest)
        check_digest(digest, what)
        sha, size = hashlib.sha256(), 0
        async with self._t.request(
            "GET", f"/v2/{repository}/blobs/{digest}", what=what, scopes=pull_scope(repository)
        ) as resp:
            expected = resp.content_length
            if _limit is not None and expected is not None and expected > _limit:
                raise RegistryError(f"{what}: blob is {expected} bytes, more than {_limit} allowed")
            async for chunk in resp.content.iter_chunked(_CHUNK):
                size += len(chunk)
                if _limit is not None and size > _limit:
                    raise RegistryError(f"{what}: blob exceeds {_limit} bytes")
                sha.update(chunk)
                yield chunk
        if expected is not None and size != expected:
            raise RegistryError(
                f"{what}: blob truncated at {size} of {expected} bytes", transient=True
            )
        actual = "sha256:" + sha.hexdigest()
        if actual != digest:
            raise DigestMismatch(f"{what}: blob content hashes to {actual}")

    async def push_blob(
        self,
        repository: str,
        digest: str,
        size: int,
        chunks: AsyncIterable[bytes],
        *,
        mount_from: str = "",
        verified_source: bool = False,
    ) -> bool:
        """Upload a blob as a stream (POST, one chunked PATCH, PUT ?digest); verify what was sent.

        With ``mount_from`` (a repository of this registry) the blob is mounted from there when
        the registry can, without reading ``chunks``: True then. ``verified_source``: ``chunks``
        come from :meth:`stream_blob` (they fail on a wrong digest), so they are not hashed again.
        """
        what = self._what(repository, digest)
        return await push_blob(
            self._t, what, repository, digest, size=size, chunks=chunks,
            mount_from=mount_from, verified_source=verified_source,
        )  # fmt: skip

    async def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Mount a blob from another repository of this registry; False when it was not mounted."""
        what = self._what(repository, digest)
        return await mount_blob(self._t, what, repository, digest, from_repository)

    async def referrers_api(self, repository: str, digest: str) -> tuple[Descriptor, ...] | None:
        """The OCI referrers API's answer, or None when the registry has no referrers API (404).

        A registry with the API never answers 404 (the distribution spec), so a 404 is remembered
        for a few minutes: meanwhile None comes without asking again.
        """
        if time.monotonic() < self._no_referrers_api_until:
            return None
        what = self._what(repository, digest)
        async with self._t.request(
            "GET",
            f"/v2/{repository}/referrers/{digest}",
            what=what,
            scopes=pull_scope(repository),
            headers={"Accept": OCI_INDEX},
            ok=(200, 404),
        ) as resp:
            listed = (
                await read_capped(resp, MAX_REFERRERS_BYTES, what, "referrers list")
                if resp.status == 200
                else None
            )
        if listed is None:
            self._no_referrers_api_until = time.monotonic() + _NO_REFERRERS_API_TTL_S
            return None
        return Manifest(digest_of(listed), OCI_INDEX, listed).children()

    async def referrers(self, repository: str, digest: str) -> tuple[Descriptor, ...]:
        """Manifests referring to ``digest``: referrers API, else its fallback tag; plus cosign tags.

        The lookups go out together: one round trip of latency, not five.
        """

        async def listed() -> tuple[Descriptor, ...]:
            found = await self.referrers_api(repository, digest)
            if found is not None:
                return found
            tag = fallback_tag(digest)
            if await self.head_manifest(repository, tag) is None:
                return ()
            return (await self.get_manifest(repository, tag)).children()

        async def cosign(suffix: str, artifact_type: str) -> tuple[Descriptor, ...]:
            tag = fallback_tag(digest) + suffix
            head = await self.head_manifest(repository, tag)
            if head is None:
                return ()
            annotations = MappingProxyType({REF_NAME: tag})
            return (
                Descriptor(head.media_type, head.digest, head.size, annotations, artifact_type),
            )

        answers = await _together([listed(), *(cosign(s, t) for s, t in COSIGN_TAG_TYPES.items())])
        return tuple(d for answer in answers for d in answer)

    async def list_tags(self, repository: str, *, limit: int | None = None) -> tuple[str, ...]:
        """Every tag of ``repository`` (following ``Link`` pagination), at most ``limit``."""
        path = f"/v2/{repository}/tags/list"
        return await self._paged(
            path, "tags", self._what(repository), pull_scope(repository), limit
        )

    async def catalog(self, *, limit: int | None = None, page_size: int = 1000) -> tuple[str, ...]:
        """Every repository the registry lists in ``/v2/_catalog`` (``Link`` pagination)."""
        return await self._paged(
            f"/v2/_catalog?n={page_size}",
            "repositories",
            f"registry {self.name}: catalog",
            ("registry:catalog:*",),
            limit,
        )

    async def _paged(
        self, path: str, key: str, what: str, scopes: tuple[str, ...], limit: int | None
    ) -> tuple[str, ...]:
        """Read a paginated name list; each page is size-capped and the total at most ``limit``."""
        names: list[str] = []
        following: str | None = path
        seen: set[str] = set()
        while following and (limit is None or len(names) < limit):
            if following in seen:  # a registry whose Link points back would loop forever
                raise RegistryError(f"{what}: pagination Link repeats {following}")
            seen.add(following)
            async with self._t.request("GET", following, what=what, scopes=scopes) as resp:
                doc = orjson.loads(await read_capped(resp, MAX_LIST_PAGE_BYTES, what, "list page"))
                link = resp.links.get("next")
                nxt = link.get("url") if link is not None else None
            if not isinstance(doc, dict):
                raise RegistryError(f"{what}: list page is not a JSON object")
            names.extend(str(t) for t in (doc.get(key) or ()))
            following = str(nxt) if nxt else None
            if following and not same_origin(self._t.url(following), self._t.origin):
                # The listing stays on the configured registry: a Link elsewhere is not followed.
                raise RegistryError(f"{what}: pagination Link leaves the registry: {following}")
        return tuple(names if limit is None else names[:limit])

    async def delete_manifest(self, repository: str, reference: str) -> bool:
        """DELETE a manifest by digest (or a tag where the registry supports it); False if absent.

        Distribution deletes by digest only when ``storage.delete.enabled``; a registry that
        refuses answers 405 (``UNSUPPORTED``), raised as a RegistryError naming it.
        """
        what = self._what(repository, reference)
        async with self._t.request(
            "DELETE",
            f"/v2/{repository}/manifests/{reference}",
            what=what,
            scopes=(f"repository:{repository}:pull,push,delete",),
            ok=(200, 202, 404),
        ) as resp:
            return resp.status != 404

    async def close(self) -> None:
        """Close the registry's session."""
        await self._t.close()
