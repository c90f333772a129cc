"""Blob uploads: streamed, digest-verified pushes and cross-repository mounts."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator

from sidecar.errors import DigestMismatch, RegistryError
from sidecar.oci._http import Transport
from sidecar.oci._media import check_digest
from sidecar.telemetry import get_logger

__all__ = ["mount_blob", "pull_scope", "push_blob", "push_scope"]

_log = get_logger(__name__)


def pull_scope(repository: str) -> tuple[str, ...]:
    """The token scope to read ``repository``."""
    return (f"repository:{repository}:pull",)


def push_scope(repository: str) -> tuple[str, ...]:
    """The token scope to write ``repository``."""
    return (f"repository:{repository}:pull,push",)


def _with_digest(location: str, digest: str) -> str:
    # Built by hand: re-encoding the upload's opaque state parameters can break them.
    return f"{location}{'&' if '?' in location else '?'}digest={digest.replace(':', '%3A')}"


class _Hashing:
    """Wraps an upload body: counts (and unless told not to, hashes) what is sent.

    It also keeps the source's failure: aiohttp wraps body errors in a connection error.
    """

    def __init__(self, chunks: AsyncIterable[bytes], *, hash_body: bool = True) -> None:
        self._chunks = chunks
        self.sha = hashlib.sha256() if hash_body else None
        self.size = 0
        self.failure: BaseException | None = None

    async def stream(self) -> AsyncIterator[bytes]:
        """Yield the source's chunks, counting (and hashing) them on the way."""
        sha = self.sha
        try:
            async for chunk in self._chunks:
                if sha is not None:
                    sha.update(chunk)
                self.size += len(chunk)
                yield chunk
        except Exception as exc:
            # aiohttp wraps body errors in a connection error; the copier needs the real cause.
            self.failure = exc
            raise


async def _cancel(transport: Transport, what: str, repository: str, location: str) -> None:
    """Best-effort DELETE of an upload session we will not finish (it would expire anyway)."""
    try:
        async with transport.request(
            "DELETE", location, what=what, scopes=push_scope(repository), ok=(200, 202, 204, 404)
        ):
            pass
    except RegistryError as exc:
        _log.warning("upload cancel failed", registry=transport.name, what=what, error=str(exc))


async def _start(
    transport: Transport, what: str, repository: str, from_repository: str = "", digest: str = ""
) -> tuple[int, str]:
    """POST an upload (or a mount); return the status and the session's Location."""
    scopes = push_scope(repository)
    query = ""
    if from_repository:
        scopes += pull_scope(from_repository)
        query = f"?mount={digest}&from={from_repository}"
    async with transport.request(
        "POST",
        f"/v2/{repository}/blobs/uploads/{query}",
        what=what,
        scopes=scopes,
        headers={"Content-Length": "0"},
        ok=(201, 202),
    ) as resp:
        location = resp.headers.get("Location", "")
        status = resp.status
    if status == 202 and not location:
        raise RegistryError(f"{what}: upload session without a Location", status=status)
    return status, location


async def push_blob(
    transport: Transport,
    what: str,
    repository: str,
    digest: str,
    *,
    size: int,
    chunks: AsyncIterable[bytes],
    mount_from: str = "",
    verified_source: bool = False,
) -> bool:
    """Upload a blob as a stream (POST, one chunked PATCH, PUT ?digest); verify what was sent.

    With ``mount_from`` the POST first asks the registry to mount the blob from that repository:
    True when it did (``chunks`` is then never read), else the upload goes on in the session the
    registry opened instead. ``verified_source`` tells that ``chunks`` raise
    :class:`DigestMismatch` themselves before they end when their bytes do not hash to ``digest``
    (as :meth:`RegistryClient.stream_blob` does): they are then counted but not hashed twice.
    Either way the upload is only completed once every byte is known to match.
    """
    check_digest(digest, what)
    try:
        status, location = await _start(transport, what, repository, mount_from, digest)
    except RegistryError as exc:
        if not mount_from or exc.transient or exc.status is None or exc.status >= 500:
            raise
        # Refusing a mount should be a 202, but some registries answer 4xx (e.g. a token without
        # pull on the other repository): the blob is then uploaded like any other.
        _log.info("mount refused", registry=transport.name, what=what, error=str(exc))
        status, location = await _start(transport, what, repository)
    if status == 201:
        closing = getattr(chunks, "aclose", None)
        if closing is not None:
            await closing()
        return True
    body = _Hashing(chunks, hash_body=not verified_source)
    try:
        async with transport.request(
            "PATCH",
            location,
            what=what,
            scopes=push_scope(repository),
            headers={"Content-Type": "application/octet-stream"},
            data=body.stream(),
            ok=(202, 204),
            replayable=False,
        ) as resp:
            location = resp.headers.get("Location", location)
    except Exception:
        await _cancel(transport, what, repository, location)
        if body.failure is not None:
            raise body.failure from None
        raise
    sent = digest if body.sha is None else "sha256:" + body.sha.hexdigest()
    if sent != digest or (size >= 0 and body.size != size):
        # Never finish the upload: the registry must not hold bytes under the wrong name.
        await _cancel(transport, what, repository, location)
        raise DigestMismatch(f"{what}: sent {body.size} bytes hashing to {sent} (expected {size})")
    try:
        async with transport.request(
            "PUT",
            _with_digest(location, digest),
            what=what,
            scopes=push_scope(repository),
            headers={"Content-Length": "0"},
            ok=(201, 204),
        ):
            pass
    except RegistryError as exc:
        if exc.status != 404:
            raise
        # aiohttp resends an idempotent PUT once when its connection drops before the answer:
        # the first PUT may have completed the upload, and the resend then finds no session
        # (404 BLOB_UPLOAD_UNKNOWN). The blob is there: done. If not, the session is gone and
        # a new attempt must upload again — transient, never a reason to fail the job.
        if await _blob_there(transport, what, repository, digest):
            return False
        raise RegistryError(f"{exc.message} (upload session lost)", transient=True) from exc
    return False


async def _blob_there(transport: Transport, what: str, repository: str, digest: str) -> bool:
    """HEAD the blob in ``repository``."""
    async with transport.request(
        "HEAD",
        f"/v2/{repository}/blobs/{digest}",
        what=what,
        scopes=pull_scope(repository),
        ok=(200, 404),
    ) as resp:
        return resp.status == 200


async def mount_blob(
    transport: Transport, what: str, repository: str, digest: str, from_repository: str
) -> bool:
    """Mount a blob from another repository of the registry; False (session cancelled) if not."""
    check_digest(digest, what)
    status, location = await _start(transport, what, repository, from_repository, digest)
    if status == 201:
        return True
    await _cancel(transport, what, repository, location)
    return False
