"""The image copier between real docker-registry instances (and through a fault proxy)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from opentelemetry.trace import SpanKind

from sidecar.errors import DigestMismatch, RegistryError
from sidecar.model.jobs import CopyProgress, JobSpec
from sidecar.oci import OCI_INDEX, OCI_MANIFEST, RegistryClients, digest_of, fallback_tag
from sidecar.replicate.copy import ImageCopier
from sidecar.telemetry import Telemetry
from sidecar.testing import InMemorySpans
from tests.support.fake_registry import fake_server
from tests.support.images import (
    INTOTO,
    SPDX,
    push_cosign_signature,
    push_image,
    push_index,
    push_sbom,
    push_scan_attestation,
    registry_config,
)
from tests.support.oci_proxy import OciProxy, oci_proxy
from tests.support.registry import registry_server

pytestmark = pytest.mark.integration


@dataclass
class Setup:
    """Two registries ("src", "dst"; src possibly behind a fault proxy) and a copier."""

    clients: RegistryClients
    copier: ImageCopier
    proxy: OciProxy


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    with (
        registry_server(tmp_path / "src") as src,
        registry_server(tmp_path / "dst") as dst,
    ):
        async with oci_proxy(src.url) as proxy:
            clients = RegistryClients(
                [registry_config("src", proxy.url), registry_config("dst", dst.url)]
            )
            try:
                yield Setup(clients, ImageCopier(clients, blob_concurrency=3), proxy)
            finally:
                await clients.close()


def _spec(digest: str, tag: str = "v1", **kw: str) -> JobSpec:
    fields = {"source_repository": "team/app", "destination_repository": "mirror/app"} | kw
    return JobSpec(
        source_registry=fields.get("source_registry", "src"),
        source_repository=fields["source_repository"],
        digest=digest,
        destination_registry=fields.get("destination_registry", "dst"),
        destination_repository=fields["destination_repository"],
        tag=tag,
    )


async def test_copy_single_image_then_second_copy_moves_nothing(setup: Setup) -> None:
    src, dst = setup.clients.get("src"), setup.clients.get("dst")
    image = await push_image(src, "team/app", tag="v1", layer_sizes=(300_000, 100_000, 5_000))
    reports: list[CopyProgress] = []

    async def progress(p: CopyProgress) -> None:
        reports.append(p)

    plan = await setup.copier.plan(_spec(image.digest))
    assert (plan.blobs_missing, plan.blobs_present, plan.bytes_to_copy) == (4, 0, image.blob_bytes)
    result = await setup.copier.copy(_spec(image.digest), progress)
    assert result.bytes_moved == image.blob_bytes
    assert (result.blobs_copied, result.blobs_skipped, result.manifests_pushed) == (4, 0, 1)
    tagged = await dst.head_manifest("mirror/app", "v1")
    assert tagged is not None and tagged.digest == image.digest
    assert await dst.read_blob("mirror/app", image.layers[2]) == await src.read_blob(
        "team/app", image.layers[2]
    )
    assert reports[-1] == CopyProgress(image.blob_bytes, image.blob_bytes, 4, 4)
    assert [r.bytes_done for r in reports] == sorted(r.bytes_done for r in reports)

    again = await setup.copier.copy(_spec(image.digest))
    assert (again.bytes_moved, again.blobs_copied, again.manifests_pushed) == (0, 0, 0)
    assert again.requests == 1  # one HEAD of the tag
    retag = await setup.copier.copy(_spec(image.digest, tag="stable"))
    assert (retag.bytes_moved, retag.manifests_pushed) == (0, 1)
    stable = await dst.head_manifest("mirror/app", "stable")
    assert stable is not None and stable.digest == image.digest


async def test_copy_multi_arch_index_with_every_platform(setup: Setup) -> None:
    src, dst = setup.clients.get("src"), setup.clients.get("dst")
    index = await push_index(src, "team/app", tag="v1")
    arm = index.children["linux/arm64"].digest
    sbom = await push_sbom(src, "team/app", arm)  # a referrer of one child only
    sbom_bytes = sum(b.size for b in (await src.get_manifest("team/app", sbom)).blobs())
    result = await setup.copier.copy(_spec(index.digest))
    assert result.bytes_moved == index.blob_bytes + sbom_bytes
    assert (result.blobs_copied, result.referrers_copied) == (6, 1)
    copied = await dst.get_manifest("mirror/app", "v1")
    assert copied.digest == index.digest
    for platform, image in index.children.items():
        head = await dst.head_manifest("mirror/app", image.digest)
        assert head is not None, platform
    assert [d.digest for d in await dst.referrers("mirror/app", arm)] == [sbom]


async def test_copy_follows_signature_sbom_and_attestation(setup: Setup) -> None:
    src, dst = setup.clients.get("src"), setup.clients.get("dst")
    image = await push_image(src, "team/app", tag="v1")
    sig = await push_cosign_signature(src, "team/app", image.digest)
    sbom = await push_sbom(src, "team/app", image.digest)
    scan = await push_scan_attestation(src, "team/app", image.digest, high=2)
    result = await setup.copier.copy(_spec(image.digest))
    assert result.referrers_copied == 3
    sig_tag = await dst.head_manifest("mirror/app", fallback_tag(image.digest) + ".sig")
    assert sig_tag is not None and sig_tag.digest == sig
    kinds = {d.digest: d.artifact_type for d in await dst.referrers("mirror/app", image.digest)}
    assert kinds[sbom] == SPDX and kinds[scan] == INTOTO and sig in kinds
    statement = await dst.read_blob(
        "mirror/app", (await dst.get_manifest("mirror/app", scan)).layers()[0].digest
    )
    assert b'"high": 2' in statement


async def test_same_registry_copy_mounts_blobs(setup: Setup) -> None:
    src = setup.clients.get("src")
    image = await push_image(src, "team/app", tag="v1")
    spec = _spec(image.digest, destination_registry="src", destination_repository="other/app")
    result = await setup.copier.copy(spec)
    assert (result.blobs_mounted, result.blobs_copied, result.bytes_moved) == (3, 0, 0)
    tagged = await src.head_manifest("other/app", "v1")
    assert tagged is not None and tagged.digest == image.digest


async def test_shared_layers_move_once_per_destination_registry(setup: Setup) -> None:
    src, dst = setup.clients.get("src"), setup.clients.get("dst")
    sizes = (200_000, 50_000)  # same seed and sizes: the same two layers, each config its own
    one = await push_image(src, "team/one", tag="v1", seed=5, layer_sizes=sizes, labels={"a": "1"})
    two = await push_image(src, "team/two", tag="v1", seed=5, layer_sizes=sizes, labels={"b": "2"})
    assert one.layers == two.layers and one.config != two.config
    layers = sum(sizes)

    first = await setup.copier.copy(_spec(one.digest, source_repository="team/one"))
    second = await setup.copier.copy(
        _spec(two.digest, source_repository="team/two", destination_repository="mirror/two")
    )
    assert (first.blobs_copied, first.blobs_mounted, first.bytes_moved) == (3, 0, one.blob_bytes)
    # The layers are mounted from mirror/app, where the first copy put them: only the config moves.
    assert (second.blobs_copied, second.blobs_mounted) == (1, 2)
    assert second.bytes_moved == two.blob_bytes - layers
    for repo, image in (("mirror/app", one), ("mirror/two", two)):
        tagged = await dst.head_manifest(repo, "v1")
        assert tagged is not None and tagged.digest == image.digest
        assert await dst.read_blob(repo, image.layers[0]) == await src.read_blob(
            "team/one", one.layers[0]
        )

    # Two copies at once into new repositories: each shared layer still moves once, and each
    # copy reports only its own requests.
    copier = ImageCopier(setup.clients, blob_concurrency=3)
    before = src.requests + dst.requests
    both = await asyncio.gather(
        copier.copy(
            _spec(one.digest, source_repository="team/one", destination_repository="x/one")
        ),
        copier.copy(
            _spec(two.digest, source_repository="team/two", destination_repository="x/two")
        ),
    )
    assert sum(r.bytes_moved for r in both) == one.blob_bytes + two.blob_bytes - layers
    assert sum(r.blobs_mounted for r in both) == 2
    assert sum(r.requests for r in both) == src.requests + dst.requests - before
    for repo, image in (("x/one", one), ("x/two", two)):
        tagged = await dst.head_manifest(repo, "v1")
        assert tagged is not None and tagged.digest == image.digest


async def test_corrupt_manifest_is_refused_and_nothing_tagged(setup: Setup) -> None:
    image = await push_image(setup.clients.get("src"), "team/app", tag="v1")
    setup.proxy.faults.corrupt_manifests = True
    with pytest.raises(DigestMismatch, match=image.digest):
        await setup.copier.copy(_spec(image.digest))
    assert await setup.clients.get("dst").head_manifest("mirror/app", "v1") is None


async def test_copy_span_names_source_destination_digest_and_bytes(setup: Setup) -> None:
    image = await push_image(setup.clients.get("src"), "team/app", tag="v1")
    spans = InMemorySpans()
    telemetry = Telemetry("copy-test", span_exporter=spans)
    try:
        await ImageCopier(setup.clients, tracer=telemetry.tracer).copy(_spec(image.digest))
    finally:
        telemetry.shutdown()
    attributes = dict(spans.one("oci.copy").attributes or {})
    assert attributes == {
        "source": f"src/team/app@{image.digest}",
        "destination": "dst/mirror/app",
        "digest": image.digest,
        "bytes": image.blob_bytes,
    }


async def test_a_copy_traces_every_registry_request_as_a_standard_http_client_span(
    tmp_path: Path,
) -> None:
    spans = InMemorySpans()
    telemetry = Telemetry("copy-test", span_exporter=spans)
    with (
        registry_server(tmp_path / "src") as src,
        registry_server(tmp_path / "dst") as dst,
    ):
        clients = RegistryClients(
            [registry_config("src", src.url), registry_config("dst", dst.url)],
            tracer_provider=telemetry.provider,
        )
        try:
            image = await push_image(clients.get("src"), "team/app", tag="v1")  # untraced
            assert spans.spans == ()
            await ImageCopier(clients, tracer=telemetry.tracer).copy(_spec(image.digest))
        finally:
            await clients.close()
            telemetry.shutdown()
    copy = spans.one("oci.copy")
    http = [s for s in spans.spans if s.attributes and "http.request.method" in s.attributes]
    # Every request the copy made is a CLIENT span of OpenTelemetry's aiohttp instrumentation in
    # the copy's trace, with the stable semantic-convention attributes.
    assert http and all(s.context.trace_id == copy.context.trace_id for s in http)
    assert all(s.kind is SpanKind.CLIENT for s in http)
    puts = [
        s
        for s in http
        if s.attributes["http.request.method"] == "PUT"
        and str(s.attributes["url.full"]).endswith("/v2/mirror/app/manifests/v1")
    ]
    assert len(puts) == 1 and puts[0].attributes["http.response.status_code"] == 201
    assert puts[0].attributes["server.address"] == "127.0.0.1"
    assert not any("?" in str(s.attributes["url.full"]) for s in http)  # upload state stays out


async def test_truncated_blob_fails_the_copy_and_nothing_tagged(setup: Setup) -> None:
    index = await push_index(setup.clients.get("src"), "team/app", tag="v1")
    setup.proxy.faults.truncate_blobs = True
    with pytest.raises(RegistryError) as caught:
        await setup.copier.copy(_spec(index.digest))
    assert caught.value.transient and "src" in str(caught.value)
    dst = setup.clients.get("dst")
    assert await dst.head_manifest("mirror/app", "v1") is None
    assert await dst.head_manifest("mirror/app", index.digest) is None


async def test_blob_rotten_on_the_source_disk_is_refused_and_never_lands(
    tmp_path: Path, setup: Setup
) -> None:
    image = await push_image(setup.clients.get("src"), "team/app", tag="v1", layer_sizes=(90_000,))
    hex_digest = image.layers[0].removeprefix("sha256:")
    stored = tmp_path / "src/data/docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest
    data = bytearray((stored / "data").read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one bit pattern flipped: served as if intact
    (stored / "data").write_bytes(bytes(data))
    with pytest.raises(DigestMismatch, match=image.layers[0]):
        await setup.copier.copy(_spec(image.digest))
    dst = setup.clients.get("dst")
    assert not await dst.blob_exists("mirror/app", image.layers[0])
    assert await dst.head_manifest("mirror/app", "v1") is None


async def test_auth_failure_is_a_clear_permanent_error(tmp_path: Path, setup: Setup) -> None:
    image = await push_image(setup.clients.get("src"), "team/app", tag="v1")
    with registry_server(tmp_path / "locked", username="robot", password="right") as locked:
        clients = RegistryClients(
            [
                registry_config("src", setup.proxy.url),
                registry_config("locked", locked.url, username="robot", password="wrong"),
            ]
        )
        try:
            with pytest.raises(RegistryError) as caught:
                await ImageCopier(clients).copy(_spec(image.digest, destination_registry="locked"))
        finally:
            await clients.close()
    assert caught.value.status == 401 and not caught.value.transient
    assert "locked" in str(caught.value)


# --- Bounded fan-out (issue 15): index children and referrers followed, and how many at a time.


@dataclass
class _FanOut:
    """A fake source serving one OCI index of ``children`` tiny manifests (nothing else)."""

    index: bytes
    children: dict[str, bytes]
    child_gets: int = 0
    in_flight: int = 0
    most_in_flight: int = 0


def _fan_out(children: int) -> _FanOut:
    docs = {}
    for i in range(children):
        doc = orjson.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "layers": [],
                "annotations": {"i": str(i)},
            }
        )
        docs[digest_of(doc)] = doc
    entries = [{"mediaType": OCI_MANIFEST, "digest": d, "size": len(b)} for d, b in docs.items()]
    index = orjson.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    return _FanOut(index, docs)


def _fan_out_handler(fan: _FanOut) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        reference = request.path.rsplit("/", 1)[-1]
        if "/manifests/" not in request.path or request.path.startswith("/v2/mirror/"):
            return web.Response(status=404)
        if reference == digest_of(fan.index):
            return web.Response(body=fan.index, content_type=OCI_INDEX)
        if reference not in fan.children:
            return web.Response(status=404)
        fan.child_gets += 1
        fan.in_flight += 1
        fan.most_in_flight = max(fan.most_in_flight, fan.in_flight)
        try:
            await asyncio.sleep(0.01)
        finally:
            fan.in_flight -= 1
        return web.Response(body=fan.children[reference], content_type=OCI_MANIFEST)

    return handler


async def test_index_fan_out_beyond_the_cap_fails_before_fetching_children() -> None:
    fan = _fan_out(1001)
    async with fake_server(_fan_out_handler(fan)) as server:
        clients = RegistryClients(
            [registry_config("src", server.url), registry_config("dst", server.url)]
        )
        try:
            with pytest.raises(RegistryError, match="more than 1000 index children and referrers"):
                await ImageCopier(clients).plan(_spec(digest_of(fan.index)))
        finally:
            await clients.close()
    assert fan.child_gets == 0


async def test_index_children_are_fetched_a_few_at_a_time() -> None:
    fan = _fan_out(40)
    async with fake_server(_fan_out_handler(fan)) as server:
        clients = RegistryClients(
            [registry_config("src", server.url), registry_config("dst", server.url)]
        )
        try:
            plan = await ImageCopier(clients).plan(_spec(digest_of(fan.index)))
        finally:
            await clients.close()
    assert plan.manifests == 41 and fan.child_gets == 40
    assert 1 < fan.most_in_flight <= 8  # MANIFEST_CONCURRENCY
