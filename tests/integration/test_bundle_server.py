"""The built-in bundle server over real HTTP: ETags, 304, OPA-style long polling, auth, limits."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import tarfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yarl

from sidecar.bundles.publish import (
    BUNDLE_CONTENT_TYPE,
    HttpPublisher,
    PublishError,
    bundle_from_file,
)
from sidecar.bundles.server import BundleServer

TOKEN = "upload-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def archive(revision: str, padding: int = 0) -> bytes:
    """Return a small bundle-shaped .tar.gz with a manifest naming ``revision``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, body in ((".manifest", json.dumps({"revision": revision}).encode()),
                           ("pad.bin", b"x" * padding)):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return gzip.compress(buffer.getvalue(), compresslevel=0 if padding else 9)


def files_under(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if p.is_file()]


def etag_of(data: bytes) -> str:
    return f'"sha256:{hashlib.sha256(data).hexdigest()}"'


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[BundleServer]:
    bundle_server = BundleServer(tmp_path / "state", token=TOKEN, max_bytes=64 * 1024)
    await bundle_server.start()
    try:
        yield bundle_server
    finally:
        await bundle_server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


async def test_get_serves_bytes_with_strong_etag_and_304_when_unchanged(
    server: BundleServer, http: aiohttp.ClientSession
) -> None:
    data = archive("r1")
    async with http.put(f"{server.url}/bundles/replication", data=data, headers=AUTH) as put:
        assert put.status == 200
        assert (await put.json())["revision"] == "r1"
    url = f"{server.url}/bundles/replication"
    async with http.get(url) as got:
        assert got.status == 200 and await got.read() == data
        assert got.headers["ETag"] == etag_of(data)
        assert got.headers["Content-Type"] == BUNDLE_CONTENT_TYPE
    async with http.get(url, headers={"If-None-Match": etag_of(data)}) as again:
        assert again.status == 304 and await again.read() == b""
        # OPA keeps long-polling only if the 304 carries the bundle content type too.
        assert again.headers["Content-Type"] == BUNDLE_CONTENT_TYPE
    async with http.get(url, headers={"If-None-Match": '"sha256:old"'}) as stale:
        assert stale.status == 200 and await stale.read() == data
    async with http.get(f"{server.url}/bundles/missing") as missing:
        assert missing.status == 404


async def test_long_poll_is_answered_as_soon_as_a_new_bundle_is_published(
    server: BundleServer, http: aiohttp.ClientSession
) -> None:
    url = f"{server.url}/bundles/replication"
    first, second = archive("r1"), archive("r2")
    await server.put("replication", first)
    wait = {"If-None-Match": etag_of(first), "Prefer": "wait=10"}

    async def poll() -> tuple[int, bytes, float]:
        started = time.monotonic()
        async with http.get(url, headers=wait) as response:
            return response.status, await response.read(), time.monotonic() - started

    waiters = [asyncio.create_task(poll()) for _ in range(3)]
    await asyncio.sleep(0.3)
    assert not any(w.done() for w in waiters), "a long poll returned before anything changed"
    async with http.put(url, data=second, headers=AUTH) as put:
        assert put.status == 200
    results = await asyncio.gather(*waiters)
    for status, body, took in results:
        assert (status, body) == (200, second)
        assert took < 3, f"waiter woke only after {took:.1f}s"


async def test_long_poll_times_out_with_304_when_nothing_changes(
    server: BundleServer, http: aiohttp.ClientSession
) -> None:
    data = archive("r1")
    await server.put("replication", data)
    started = time.monotonic()
    headers = {"If-None-Match": etag_of(data), "Prefer": "wait=1"}
    async with http.get(f"{server.url}/bundles/replication", headers=headers) as response:
        assert response.status == 304
        assert response.headers["ETag"] == etag_of(data)
    assert 0.9 <= time.monotonic() - started < 5


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["no-token", "wrong-token", "wrong-scheme"],
)
async def test_uploads_without_the_token_get_401_and_change_nothing(
    server: BundleServer, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    good = archive("good")
    await server.put("replication", good)
    url = f"{server.url}/bundles/replication"
    async with http.put(url, data=archive("evil"), headers=headers) as put:
        assert put.status == 401
        assert put.headers["WWW-Authenticate"].startswith("Bearer")
    async with http.get(url) as got:
        assert await got.read() == good


async def test_oversized_uploads_get_413_with_or_without_content_length(
    server: BundleServer, http: aiohttp.ClientSession
) -> None:
    url = f"{server.url}/bundles/replication"
    big = archive("big", padding=100 * 1024)
    async with http.put(url, data=big, headers=AUTH) as put:
        assert put.status == 413

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    async with http.put(url, data=chunks(), headers=AUTH) as streamed:  # chunked: no length
        assert streamed.status == 413
    async with http.get(url) as got:
        assert got.status == 404  # nothing was stored
    assert files_under(server._state_dir) == []


@pytest.mark.parametrize(
    "path",
    [
        "/bundles/..%2F..%2Fetc%2Fpasswd",
        "/bundles/a%2Fb",
        "/bundles/.hidden",
        "/bundles/a/b",
        "/bundles/%2e%2e",
    ],
)
async def test_names_that_could_escape_the_state_dir_get_400(
    server: BundleServer, http: aiohttp.ClientSession, tmp_path: Path, path: str
) -> None:
    # encoded=True: send the path as written, the way a hostile client would (no normalising).
    url = yarl.URL(f"{server.url}{path}", encoded=True)
    async with http.put(url, data=archive("x"), headers=AUTH) as put:
        assert put.status == 400
    async with http.get(url) as got:
        assert got.status == 400
    assert files_under(tmp_path) == []


async def test_a_body_that_is_not_a_bundle_archive_gets_400(
    server: BundleServer, http: aiohttp.ClientSession
) -> None:
    url = f"{server.url}/bundles/replication"
    async with http.put(url, data=b"not a tarball", headers=AUTH) as put:
        assert put.status == 400
        assert "gzipped tar" in (await put.json())["error"]


async def test_restarted_server_serves_the_last_published_bundle(tmp_path: Path) -> None:
    data = archive("kept")
    first = BundleServer(tmp_path / "state", token=TOKEN)
    await first.start()
    try:
        await first.put("replication", archive("older"))
        await first.put("replication", data)
    finally:
        await first.stop()
    second = BundleServer(tmp_path / "state", token=TOKEN)
    await second.start()
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{second.url}/bundles/replication") as got,
        ):
            assert await got.read() == data
            assert got.headers["ETag"] == etag_of(data)
            assert got.headers["X-Bundle-Revision"] == "kept"
    finally:
        await second.stop()


async def test_read_token_protects_downloads(tmp_path: Path) -> None:
    server = BundleServer(tmp_path / "state", token=TOKEN, read_token="reader")
    await server.start()
    try:
        await server.put("replication", archive("r1"))
        async with aiohttp.ClientSession() as http:
            url = f"{server.url}/bundles/replication"
            async with http.get(url) as anonymous:
                assert anonymous.status == 401
            async with http.get(url, headers={"Authorization": "Bearer reader"}) as reader:
                assert reader.status == 200
    finally:
        await server.stop()


async def test_http_publisher_uploads_and_reports_refusals(
    server: BundleServer, tmp_path: Path
) -> None:
    path = tmp_path / "b.tar.gz"
    path.write_bytes(archive("pub-1"))
    bundle = bundle_from_file(path)
    url = f"{server.url}/bundles/replication"
    result = await asyncio.to_thread(HttpPublisher(url, TOKEN).publish, bundle)
    assert (result.store, result.revision, result.digest) == ("http", "pub-1", bundle.digest)
    assert server.etag("replication") == f'"{bundle.digest}"'
    with pytest.raises(PublishError) as refused:
        await asyncio.to_thread(HttpPublisher(url, "wrong").publish, bundle)
    assert refused.value.status == 401 and not refused.value.transient
