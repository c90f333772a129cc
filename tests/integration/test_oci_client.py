"""The OCI client against real docker-registry instances (plain, htpasswd, and behind a proxy)."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from sidecar.errors import DigestMismatch, NotFound, RegistryError, RegistryUnavailable
from sidecar.oci import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    RegistryClient,
    RegistryClients,
    digest_of,
)
from sidecar.oci._auth import basic_header
from tests.support.fake_registry import fake_server
from tests.support.images import (
    INTOTO,
    SPDX,
    layer_bytes,
    push_cosign_signature,
    push_image,
    push_index,
    push_sbom,
    push_scan_attestation,
    registry_config,
)
from tests.support.oci_proxy import oci_proxy
from tests.support.registry import RegistryServer, registry_server

pytestmark = pytest.mark.integration
MAX_MANIFEST = 4 << 20  # the distribution spec's manifest size guidance


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    with registry_server(tmp_path / "plain") as server:
        yield server


@pytest.fixture
async def client(registry: RegistryServer) -> AsyncIterator[RegistryClient]:
    client = RegistryClient(registry_config("plain", registry.url))
    yield client
    await client.close()


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 10_000):
        yield data[start : start + 10_000]


async def test_docker_image_round_trip(client: RegistryClient) -> None:
    image = await push_image(
        client, "team/app", tag="v1", docker=True, labels={"tenant": "blue"}, layer_sizes=(70_000,)
    )
    manifest = await client.get_manifest("team/app", "v1")
    assert manifest.digest == image.digest
    assert manifest.media_type == DOCKER_MANIFEST and not manifest.is_index
    config = manifest.config()
    assert config is not None and config.digest == image.config
    assert [layer.digest for layer in manifest.layers()] == list(image.layers)
    blob = await client.read_blob("team/app", image.layers[0])
    assert blob == layer_bytes(0, 70_000)
    head = await client.head_manifest("team/app", "v1")
    assert head is not None and head.digest == image.digest
    assert await client.head_manifest("team/app", "v2") is None
    assert await client.list_tags("team/app") == ("v1",)
    assert await client.ping() > 0


async def test_index_children_carry_their_platforms(client: RegistryClient) -> None:
    index = await push_index(client, "multi", tag="latest")
    manifest = await client.get_manifest("multi", index.digest)
    assert manifest.is_index and manifest.media_type == OCI_INDEX and manifest.config() is None
    assert {c.platform: c.digest for c in manifest.children()} == {
        p: image.digest for p, image in index.children.items()
    }


async def test_push_blob_refuses_content_that_does_not_match_its_digest(
    client: RegistryClient,
) -> None:
    data = layer_bytes(7, 50_000)
    wrong = digest_of(b"something else")
    with pytest.raises(DigestMismatch, match="plain"):
        await client.push_blob("team/app", wrong, len(data), _chunks(data))
    assert not await client.blob_exists("team/app", wrong)
    assert not await client.blob_exists("team/app", digest_of(data))


async def test_mount_blob_within_a_registry(client: RegistryClient) -> None:
    image = await push_image(client, "src/app")
    assert await client.mount_blob("dst/app", image.layers[0], "src/app")
    assert await client.blob_exists("dst/app", image.layers[0])
    missing = digest_of(b"never pushed")
    assert not await client.mount_blob("dst/app", missing, "src/app")


async def test_referrers_follow_fallback_and_cosign_tags(client: RegistryClient) -> None:
    image = await push_image(client, "signed", tag="v1")
    sig = await push_cosign_signature(client, "signed", image.digest)
    sbom = await push_sbom(client, "signed", image.digest)
    scan = await push_scan_attestation(client, "signed", image.digest, critical=1, high=3)
    found = {d.digest: d.artifact_type for d in await client.referrers("signed", image.digest)}
    assert found == {
        sbom: SPDX,
        scan: INTOTO,
        sig: "application/vnd.dev.cosign.artifact.sig.v1+json",
    }
    attestation = await client.get_manifest("signed", scan)
    subject = attestation.subject()
    assert subject is not None and subject.digest == image.digest
    assert await client.referrers("signed", sig) == ()


async def test_manifest_fetched_by_digest_is_verified(registry: RegistryServer) -> None:
    async with oci_proxy(registry.url) as proxy:
        client = RegistryClient(registry_config("proxied", proxy.url))
        try:
            image = await push_image(client, "app", tag="v1")
            proxy.faults.corrupt_manifests = True
            with pytest.raises(DigestMismatch, match=f"proxied: app@{image.digest}"):
                await client.get_manifest("app", image.digest)
            with pytest.raises(DigestMismatch):  # by tag: checked against Docker-Content-Digest
                await client.get_manifest("app", "v1")
        finally:
            await client.close()


async def test_truncated_blob_stream_is_an_error(registry: RegistryServer) -> None:
    async with oci_proxy(registry.url) as proxy:
        client = RegistryClient(registry_config("proxied", proxy.url))
        try:
            image = await push_image(client, "app", layer_sizes=(200_000,))
            proxy.faults.truncate_blobs = True
            with pytest.raises(RegistryError) as caught:
                async for _ in client.stream_blob("app", image.layers[0]):
                    pass
            assert caught.value.transient and "app@" in str(caught.value)
        finally:
            await client.close()


async def test_throttled_and_failing_registries_are_transient(registry: RegistryServer) -> None:
    async with oci_proxy(registry.url) as proxy:
        client = RegistryClient(registry_config("busy", proxy.url))
        try:
            proxy.faults.status, proxy.faults.retry_after = 429, "7"
            with pytest.raises(RegistryError) as throttled:
                await client.get_manifest("app", "v1")
            assert throttled.value.status == 429 and throttled.value.transient
            assert throttled.value.retry_after == 7.0
            proxy.faults.status, proxy.faults.retry_after = 503, ""
            with pytest.raises(RegistryError) as failing:
                await client.list_tags("app")
            assert failing.value.transient and failing.value.retry_after is None
        finally:
            await client.close()


async def test_basic_auth_registry(tmp_path: Path) -> None:
    with registry_server(tmp_path / "auth", username="robot", password="s3cret") as server:
        good = RegistryClient(
            registry_config("auth", server.url, username="robot", password="s3cret")
        )
        bad = RegistryClient(registry_config("auth", server.url, username="robot", password="nope"))
        anonymous = RegistryClient(registry_config("auth", server.url))
        try:
            image = await push_image(good, "private/app", tag="v1")
            assert (await good.get_manifest("private/app", "v1")).digest == image.digest
            for client in (bad, anonymous):
                with pytest.raises(RegistryError) as caught:
                    await client.get_manifest("private/app", "v1")
                assert caught.value.status == 401 and not caught.value.transient
                assert "auth: private/app:v1" in str(caught.value)
        finally:
            for client in (good, bad, anonymous):
                await client.close()


async def test_bearer_token_flow_caches_tokens_per_scope(registry: RegistryServer) -> None:
    async with oci_proxy(registry.url, bearer=("ci", "pat-123")) as proxy:
        client = RegistryClient(
            registry_config("hub", proxy.url, username="ci", password="pat-123")
        )
        wrong = RegistryClient(registry_config("hub", proxy.url, username="ci", password="x"))
        try:
            image = await push_image(client, "library/app", tag="v1")
            for _ in range(3):
                assert (await client.get_manifest("library/app", "v1")).digest == image.digest
            scopes = [tuple(r["scope"]) for r in proxy.token_requests]
            assert scopes.count(("repository:library/app:pull",)) == 1
            assert ("repository:library/app:pull,push",) in scopes
            assert all(r["service"] == ["test-registry"] for r in proxy.token_requests)
            with pytest.raises(RegistryError) as caught:
                await wrong.get_manifest("library/app", "v1")
            assert caught.value.status == 401 and not caught.value.transient
        finally:
            await client.close()
            await wrong.close()


async def test_unreachable_registry_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = RegistryClient(registry_config("down", f"http://127.0.0.1:{port}"), timeout_s=2)
    try:
        with pytest.raises(RegistryUnavailable, match="down"):
            await client.ping()
    finally:
        await client.close()


async def test_unknown_registry_name_is_not_found(registry: RegistryServer) -> None:
    clients = RegistryClients([registry_config("plain", registry.url)])
    try:
        assert clients.get("plain").name == "plain"
        with pytest.raises(NotFound, match="nowhere"):
            clients.get("nowhere")
    finally:
        await clients.close()


# --- Registry client hygiene (issue 15): credentials stay at the registry's origin, bodies capped.


def _holder() -> list[str]:
    return [""]


async def test_upload_location_on_another_origin_gets_no_credentials() -> None:
    foreign_url = _holder()

    async def foreign(request: web.Request) -> web.StreamResponse:
        await request.read()
        if request.method == "PATCH":
            return web.Response(status=202, headers={"Location": f"{foreign_url[0]}/up/1?s=2"})
        return web.Response(status=201 if request.method == "PUT" else 404)

    async def registry(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            return web.Response(status=202, headers={"Location": f"{foreign_url[0]}/up/1?s=1"})
        return web.Response(status=404)

    data = b"layer bytes" * 100
    async with fake_server(foreign) as other, fake_server(registry) as own:
        foreign_url[0] = other.url
        client = RegistryClient(registry_config("reg", own.url, username="robot", password="pw"))
        try:
            assert not await client.push_blob("app", digest_of(data), len(data), _chunks(data))
        finally:
            await client.close()
    assert [s.method for s in own.authorized()] == ["POST"]  # its own origin: credentials go
    assert [s.method for s in other.seen] == ["PATCH", "PUT"]
    assert other.authorized() == []


async def test_cross_origin_redirect_drops_credentials() -> None:
    blob = b"redirected blob"
    digest = digest_of(blob)
    foreign_url = _holder()

    async def foreign(request: web.Request) -> web.StreamResponse:
        return web.Response(body=blob)

    async def registry(request: web.Request) -> web.StreamResponse:
        return web.Response(status=307, headers={"Location": f"{foreign_url[0]}/cdn/{digest}"})

    async with fake_server(foreign) as other, fake_server(registry) as own:
        foreign_url[0] = other.url
        client = RegistryClient(registry_config("reg", own.url, username="robot", password="pw"))
        try:
            assert await client.read_blob("app", digest) == blob
        finally:
            await client.close()
    assert own.authorized() and other.seen and other.authorized() == []


def _bearer_registry(realm: list[str]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def registry(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") == "Bearer tok":
            return web.Response(body=b"{}")
        challenge = f'Bearer realm="{realm[0]}/token",service="reg"'
        return web.Response(status=401, headers={"WWW-Authenticate": challenge})

    return registry


async def _token_service(request: web.Request) -> web.StreamResponse:
    return web.json_response({"token": "tok"})


async def test_plain_http_token_realm_on_another_origin_gets_no_credentials() -> None:
    realm = _holder()
    async with fake_server(_token_service) as tokens, fake_server(_bearer_registry(realm)) as own:
        realm[0] = tokens.url
        config = registry_config("reg", own.url, username="robot", password="pw")
        client = RegistryClient(config)
        anonymous = RegistryClient(registry_config("reg", own.url))
        try:
            with pytest.raises(RegistryError, match="plain-http token realm") as caught:
                await client.ping()
            assert caught.value.status == 401 and not caught.value.transient
            assert tokens.authorized() == []
            await anonymous.ping()  # no credentials to leak: an anonymous token is fine
            assert len(tokens.seen) == 1 and tokens.authorized() == []
        finally:
            await client.close()
            await anonymous.close()
        # Configured insecure: the operator accepts plain http, the realm gets the credentials.
        insecure = RegistryClient(dataclasses.replace(config, insecure=True))
        try:
            await insecure.ping()
        finally:
            await insecure.close()
        assert [s.authorization for s in tokens.authorized()] == [basic_header("robot", "pw")]


async def _big_body(request: web.Request, size: int, *, chunked: bool) -> web.StreamResponse:
    headers = {"Content-Type": OCI_INDEX}
    if not chunked:
        return web.Response(body=b" " * size, headers=headers)
    resp = web.StreamResponse(headers=headers)
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for start in range(0, size, 1 << 20):
        await resp.write(b" " * min(1 << 20, size - start))
    await resp.write_eof()
    return resp


async def test_oversized_manifest_and_referrers_are_refused_naming_registry_and_size() -> None:
    digest = digest_of(b"subject")

    async def registry(request: web.Request) -> web.StreamResponse:
        chunked = request.path.endswith("/streamed") or "/referrers/" in request.path
        return await _big_body(request, MAX_MANIFEST + 1, chunked=chunked)

    async with fake_server(registry) as own:
        client = RegistryClient(registry_config("huge", own.url))
        try:
            with pytest.raises(RegistryError) as caught:
                await client.get_manifest("app", "v1")
            assert str(caught.value) == (
                f"registry huge: app:v1: manifest is {MAX_MANIFEST + 1} bytes, "
                f"more than the {MAX_MANIFEST} allowed"
            )
            assert not caught.value.transient
            with pytest.raises(
                RegistryError, match=rf"huge: app:streamed: manifest exceeds {MAX_MANIFEST} bytes"
            ):
                await client.get_manifest("app", "streamed")
            with pytest.raises(RegistryError, match=rf"huge: app@{digest}: referrers list exceeds"):
                await client.referrers_api("app", digest)
        finally:
            await client.close()
