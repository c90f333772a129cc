"""The built-in HTTP bundle server: OPA polls (or long-polls) it, ``bundle publish`` PUTs to it.

``GET /bundles/<name>`` answers with the current archive, a strong ETag (``"sha256:<hex>"``) and
``Content-Type: application/vnd.openpolicyagent.bundles`` — the type that tells OPA the server
can long-poll. A matching ``If-None-Match`` gets 304; with ``Prefer: wait=<s>`` as well, the
request is held until a new revision is published (200) or the wait elapses (304). ``PUT`` needs
the bearer token, stores the archive under ``state_dir`` (atomically, so a restart serves the last
published bundle) and wakes every waiter. The server never checks signatures: OPA does, so a bad
upload cannot replace the revision OPA serves, only fail to activate.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import io
import json
import os
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from aiohttp import web
from opentelemetry import trace

from sidecar.bundles._publish_common import BUNDLE_CONTENT_TYPE
from sidecar.config import is_valid_bundle_name
from sidecar.errors import InvalidArgument
from sidecar.telemetry import get_logger

__all__ = ["DEFAULT_MAX_BYTES", "BundleServer"]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
_SUFFIX = ".tar.gz"
_log = get_logger(__name__)
_tracer = trace.get_tracer(__name__)


@dataclass(frozen=True, slots=True)
class _Stored:
    data: bytes
    etag: str
    digest: str
    revision: str


class BundleServer:
    """Serves named bundles to OPA over HTTP with ETags and long polling; accepts authorised PUTs."""

    def __init__(
        self,
        state_dir: Path,
        *,
        token: str,
        read_token: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_wait_s: float = 300.0,
    ) -> None:
        if not token:
            raise InvalidArgument("token", "the bundle server needs a non-empty upload token")
        self._state_dir = state_dir
        self._token = token.encode()
        # Reads are open unless a read token is set: bundles are signed, not secret, by default.
        self._read_token = read_token.encode() if read_token else None
        self._host, self._requested_port, self._port = host, port, 0
        self._max_bytes = max_bytes
        self._max_wait_s = max_wait_s
        self._bundles: dict[str, _Stored] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """Return the bound port (0 before start)."""
        return self._port

    @property
    def url(self) -> str:
        """Return the server's base URL, e.g. ``http://127.0.0.1:8282``."""
        return f"http://{self._host}:{self._port}"

    def etag(self, name: str) -> str | None:
        """Return the ETag of the bundle now served as ``name``, if any."""
        stored = self._bundles.get(name)
        return stored.etag if stored else None

    async def start(self) -> None:
        """Load the bundles kept in ``state_dir`` and start listening."""
        self._state_dir.mkdir(parents=True, exist_ok=True)
        self._bundles = await asyncio.to_thread(self._load_all)
        # client_max_size makes aiohttp answer 413 itself when a body without a usable
        # Content-Length grows past the limit.
        app = web.Application(client_max_size=self._max_bytes)
        app.router.add_get("/bundles/{name:.*}", self._get)
        app.router.add_put("/bundles/{name:.*}", self._put)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._requested_port)
        await site.start()
        server = site._server  # aiohttp exposes the bound socket only here
        sockets = getattr(server, "sockets", None) or []
        self._port = int(sockets[0].getsockname()[1]) if sockets else self._requested_port
        _log.info("bundle server listening", url=self.url, bundles=sorted(self._bundles))

    async def stop(self) -> None:
        """Release every held long poll (304) and stop listening."""
        for event in self._changed.values():
            event.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def put(self, name: str, data: bytes) -> str:
        """Store ``data`` as bundle ``name``, wake its long polls and return the new ETag."""
        if not is_valid_bundle_name(name):
            raise InvalidArgument("name", f"{name!r} is not a valid bundle name")
        if not data:
            raise InvalidArgument("body", "the bundle is empty")
        if len(data) > self._max_bytes:
            raise InvalidArgument("body", f"bundle is larger than {self._max_bytes} bytes")
        with _tracer.start_as_current_span("bundle.server.put", attributes={"bundle.name": name}):
            revision = await asyncio.to_thread(_revision_of, data)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            stored = _Stored(data, f'"{digest}"', digest, revision)
            async with self._lock:
                await asyncio.to_thread(self._write, name, data)
                self._bundles[name] = stored
                # Wake waiters by retiring the event they hold; new requests get a fresh one.
                event = self._changed.pop(name, None)
                if event is not None:
                    event.set()
        _log.info("bundle stored", name=name, revision=revision, digest=digest, size=len(data))
        return stored.etag

    async def _get(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if not is_valid_bundle_name(name):
            return _error(400, f"invalid bundle name {name!r}")
        if self._read_token is not None and not _authorised(request, self._read_token):
            return _error(401, "missing or wrong bearer token", challenge=True)
        stored = self._bundles.get(name)
        if stored is None:
            return _error(404, f"no bundle named {name!r} has been published")
        # Taken before any await, so a put() between the check and the wait cannot be missed.
        event = self._changed.setdefault(name, asyncio.Event())
        if not _matches(request.headers.get("If-None-Match", ""), stored.etag):
            return _bundle_response(stored)
        wait = _preferred_wait(request.headers.get("Prefer", ""), self._max_wait_s)
        if wait > 0:
            with contextlib.suppress(TimeoutError):  # elapsed: answer 304 below
                await asyncio.wait_for(event.wait(), wait)
            stored = self._bundles.get(name, stored)
            if not _matches(request.headers.get("If-None-Match", ""), stored.etag):
                return _bundle_response(stored)
        # The content type on the 304 too: OPA decides per response whether to keep long-polling.
        return web.Response(
            status=304, headers={"ETag": stored.etag, "Content-Type": BUNDLE_CONTENT_TYPE}
        )

    async def _put(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if not is_valid_bundle_name(name):
            return _error(400, f"invalid bundle name {name!r}")
        if not _authorised(request, self._token):
            _log.warning(
                "bundle upload refused", name=name, reason="bad token", remote=request.remote
            )
            return _error(401, "missing or wrong bearer token", challenge=True)
        if request.content_length is not None and request.content_length > self._max_bytes:
            return _error(413, f"bundle is larger than {self._max_bytes} bytes")
        data = await request.read()  # raises HTTPRequestEntityTooLarge (413) past the limit
        try:
            etag = await self.put(name, data)
        except InvalidArgument as exc:
            return _error(400, exc.message)
        stored = self._bundles[name]
        return web.json_response(
            {
                "name": name,
                "etag": etag,
                "digest": stored.digest,
                "revision": stored.revision,
                "size": len(stored.data),
            },
            headers={"ETag": etag},
        )

    def _load_all(self) -> dict[str, _Stored]:
        loaded: dict[str, _Stored] = {}
        for path in sorted(self._state_dir.glob(f"*{_SUFFIX}")):
            name = path.name.removesuffix(_SUFFIX)
            if not is_valid_bundle_name(name):
                continue
            data = path.read_bytes()
            try:
                revision = _revision_of(data)
            except InvalidArgument:
                _log.warning("ignoring unreadable stored bundle", path=str(path))
                continue
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            loaded[name] = _Stored(data, f'"{digest}"', digest, revision)
        return loaded

    def _write(self, name: str, data: bytes) -> None:
        fd, partial = tempfile.mkstemp(prefix=f".{name}.", dir=self._state_dir)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())  # the rename below must never expose a short file
            os.replace(partial, self._state_dir / f"{name}{_SUFFIX}")
        finally:
            Path(partial).unlink(missing_ok=True)


def _bundle_response(stored: _Stored) -> web.Response:
    return web.Response(
        body=stored.data,
        headers={
            "ETag": stored.etag,
            "Content-Type": BUNDLE_CONTENT_TYPE,
            "Cache-Control": "no-cache",
            "X-Bundle-Revision": quote(stored.revision, safe=""),  # headers must stay ASCII
        },
    )


def _error(status: int, message: str, *, challenge: bool = False) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="bundles"'} if challenge else None
    return web.json_response({"error": message}, status=status, headers=headers)


def _authorised(request: web.Request, expected: bytes) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # compare_digest: the time taken must not reveal how much of a guessed token was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected)


def _matches(if_none_match: str, etag: str) -> bool:
    """Return whether an If-None-Match header matches ``etag`` (weak comparison, RFC 9110)."""
    for candidate in if_none_match.split(","):
        value = candidate.strip()
        if value == "*" or value.removeprefix("W/") == etag:
            return True
    return False


def _preferred_wait(prefer: str, limit: float) -> float:
    """Return the seconds of a ``Prefer: wait=N`` header (RFC 7240), capped at ``limit``."""
    for preference in prefer.split(","):
        key, _, value = preference.strip().partition("=")
        if key.strip().lower() == "wait":
            try:
                return max(0.0, min(float(value.strip().strip('"')), limit))
            except ValueError:
                return 0.0
    return 0.0


def _revision_of(data: bytes) -> str:
    """Return the ``.manifest`` revision of a bundle archive; InvalidArgument if not an archive."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive:
                if member.isfile() and member.name.lstrip("/") == ".manifest":
                    handle = archive.extractfile(member)
                    manifest = json.load(handle) if handle is not None else {}
                    return str(manifest.get("revision", "")) if isinstance(manifest, dict) else ""
    # RecursionError: a manifest nested deeper than the JSON parser goes (a 500 otherwise).
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError, RecursionError) as exc:
        raise InvalidArgument("body", f"not a gzipped tar bundle: {exc}") from exc
    return ""
