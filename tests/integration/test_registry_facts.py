"""Image facts read from a real Distribution registry through the real OCI client.

Images, signatures, SBOMs and scan attestations are pushed with tests.support.images; Distribution
2.8 has no referrers API, so the client finds referrers through the OCI fallback tag.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest

from sidecar.enrich.pipeline import EnrichmentReport, apply_sources
from sidecar.enrich.registry import RegistryFactSource
from sidecar.model.decision import DecideRequest, ImageFacts, ImageRef, PolicyInput, ScanFacts
from sidecar.oci import OCI_INDEX, OCI_MANIFEST, RegistryClient, RegistryClients
from sidecar.oci import fallback_tag as fallback
from tests.support.images import (
    SPDX,
    layer_bytes,
    push_bytes,
    push_cosign_signature,
    push_image,
    push_manifest,
    push_sbom,
    push_scan_attestation,
    registry_config,
)
from tests.support.registry import RegistryServer, registry_server

pytestmark = pytest.mark.integration

DSSE = "application/vnd.dsse.envelope.v1+json"
SIGNED, ATTESTED, SBOM = (f"policy-sidecar.io/{k}" for k in ("signed", "attested", "sbom"))


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """A real docker-registry for one test."""
    with registry_server(tmp_path / "reg") as server:
        yield server


@pytest.fixture
async def clients(registry: RegistryServer) -> AsyncIterator[RegistryClients]:
    """The inventory's clients; the test registry is named "src"."""
    clients = RegistryClients([registry_config("src", registry.url)])
    yield clients
    await clients.close()


@pytest.fixture
def src(clients: RegistryClients) -> RegistryClient:
    """The client of registry "src" (the one the fact source uses, so its request count is shared)."""
    return clients.get("src")


def _draft(request: DecideRequest) -> PolicyInput:
    """The draft policy input holding only what the request states."""
    image = ImageFacts(ref=request.image, labels=dict(request.labels))
    return PolicyInput("2026-03-01T00:00:00Z", "push", image, ())


async def _lookup(
    source: RegistryFactSource, ref: ImageRef, labels: Mapping[str, str] | None = None
) -> tuple[PolicyInput, EnrichmentReport]:
    """Run ``source`` alone over a request for ``ref``."""
    request = DecideRequest(ref, labels=labels or {})
    return await apply_sources([source], request, _draft(request), timeout_s=5)


def _flags(image: ImageFacts) -> tuple[str | None, ...]:
    """The signed, attested and sbom annotations of ``image`` (None when not set)."""
    return tuple(image.annotations.get(k) for k in (SIGNED, ATTESTED, SBOM))


async def _manifest_size(client: RegistryClient, repo: str, digest: str) -> int:
    """The stored byte size of a manifest."""
    head = await client.head_manifest(repo, digest)
    assert head is not None
    return head.size


async def test_image_facts_come_from_the_registry_over_the_request(
    clients: RegistryClients, src: RegistryClient
) -> None:
    labels = {"team": "payments", "tenant": "acme", "criticality": "high"}
    image = await push_image(src, "team/app", tag="prod-1", labels=labels)
    ref = ImageRef("src", "team/app", "prod-1")
    result, report = await _lookup(
        RegistryFactSource(clients), ref, {"team": "checkout", "tenant": "globex"}
    )
    assert (report.applied, report.warnings, report.failures) == (("registry.image",), (), ())
    assert set(report.observed) == {
        "image.labels",
        "image.annotations",
        "image.created_at",
        "image.size_bytes",
        "image.platforms",
        *(f"image.annotations.{k}" for k in (SIGNED, ATTESTED, SBOM)),
    }
    facts = result.image
    # Issue 15: observed facts win; the request's labels never reach the draft from this source.
    # The tag resolved to the manifest digest.
    assert facts.labels == labels
    assert facts.ref == ImageRef("src", "team/app", "prod-1", image.digest)
    assert (facts.created_at, facts.platforms) == ("2026-01-02T03:04:05Z", ("linux/amd64",))
    manifest_size = await _manifest_size(src, "team/app", image.digest)
    assert facts.size_bytes == manifest_size + image.blob_bytes
    assert _flags(facts) == ("false", "false", "false")
    assert facts.scan is None


async def test_signatures_sboms_and_scans_pushed_later_show_on_the_next_lookup(
    clients: RegistryClients, src: RegistryClient
) -> None:
    app = await push_image(src, "team/app", tag="prod-1")
    source = RegistryFactSource(clients, referrers_ttl_s=0)  # re-read referrers on every lookup
    ref = ImageRef("src", "team/app", digest=app.digest)
    before, _ = await _lookup(source, ref)
    assert (_flags(before.image), before.image.scan) == (("false", "false", "false"), None)

    await push_cosign_signature(src, "team/app", app.digest)
    await push_sbom(src, "team/app", app.digest)
    await push_scan_attestation(
        src, "team/app", app.digest, high=3, completed_at="2026-02-01T00:00:00Z"
    )
    after, report = await _lookup(source, ref)
    assert report.failures == report.warnings == ()
    assert _flags(after.image) == ("true", "true", "true")
    assert after.image.scan == ScanFacts("passed", "2026-02-01T00:00:00Z", 0, 3, "attestation")

    # An SBOM attached with cosign's tag scheme (sha256-<hex>.sbom) counts as an SBOM too.
    other = await push_image(src, "team/other", tag="v1", seed=7)
    layer = await push_bytes(src, "team/other", json.dumps({"spdxVersion": "2.3"}).encode(), SPDX)
    config = await push_bytes(src, "team/other", b"{}", "application/vnd.oci.empty.v1+json")
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]}
    await push_manifest(src, "team/other", doc, fallback(other.digest) + ".sbom")
    tagged, _ = await _lookup(source, ImageRef("src", "team/other", "v1"))
    assert _flags(tagged.image) == ("false", "false", "true")


async def test_a_rescan_replaces_the_older_scan(
    clients: RegistryClients, src: RegistryClient
) -> None:
    app = await push_image(src, "team/app", tag="prod-1")
    for completed_at, critical in (
        ("2026-01-02T00:00:00Z", 2),
        ("2026-03-01T00:00:00Z", 0),  # the newest scan, pushed second of three
        ("2026-02-01T00:00:00Z", 1),
    ):
        await push_scan_attestation(
            src,
            "team/app",
            app.digest,
            critical=critical,
            status="failed" if critical else "passed",
            completed_at=completed_at,
        )
    result, _ = await _lookup(RegistryFactSource(clients), ImageRef("src", "team/app", "prod-1"))
    assert result.image.scan == ScanFacts("passed", "2026-03-01T00:00:00Z", 0, 0, "attestation")


async def test_cosign_attestations_are_read_past_a_layer_too_big_to_read(
    clients: RegistryClients, src: RegistryClient
) -> None:
    app = await push_image(src, "team/app", tag="prod-1")
    await push_cosign_signature(src, "team/app", app.digest)
    predicate = {"status": "failed", "completed_at": "2026-02-01T00:00:00Z", "critical": 4}
    statement = {"_type": "https://in-toto.io/Statement/v1", "predicate": predicate}
    envelope = {
        "payloadType": "application/vnd.in-toto+json",
        "payload": base64.b64encode(json.dumps(statement).encode()).decode(),
        "signatures": [{"keyid": "", "sig": "MEUCIQ-test"}],
    }
    layers = [  # cosign's .att manifest: one DSSE layer per attestation, here a 2 MB SBOM first
        await push_bytes(src, "team/app", layer_bytes(1, 2 << 20), DSSE),
        await push_bytes(src, "team/app", json.dumps(envelope).encode(), DSSE),
    ]
    config = await push_bytes(src, "team/app", b"{}", "application/vnd.oci.empty.v1+json")
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers}
    await push_manifest(src, "team/app", doc, fallback(app.digest) + ".att")
    result, report = await _lookup(
        RegistryFactSource(clients), ImageRef("src", "team/app", "prod-1")
    )
    assert report.warnings == ()
    assert _flags(result.image) == ("true", "true", "false")
    assert result.image.scan == ScanFacts("failed", "2026-02-01T00:00:00Z", 4, 0, "attestation")


async def test_an_index_reports_every_platform_and_the_sum_of_its_children(
    clients: RegistryClients, src: RegistryClient
) -> None:
    entries, child_bytes = [], 0
    for seed, (platform, created, labels) in enumerate(
        (
            ("linux/amd64", "2026-01-01T00:00:00Z", {"team": "a", "arch": "amd64"}),
            ("linux/arm64", "2026-01-05T00:00:00Z", {"team": "b", "extra": "yes"}),
        )
    ):
        child = await push_image(
            src, "team/multi", seed=seed, platform=platform, created=created, labels=labels
        )
        os_name, arch = platform.split("/")
        size = await _manifest_size(src, "team/multi", child.digest)
        child_bytes += size + child.blob_bytes
        entries.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": child.digest,
                "size": size,
                "platform": {"os": os_name, "architecture": arch},
            }
        )
    index_doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    index = await push_manifest(src, "team/multi", index_doc, "prod-2")
    source = RegistryFactSource(clients)
    result, report = await _lookup(source, ImageRef("src", "team/multi", "prod-2"))
    assert report.failures == ()
    facts = result.image
    assert facts.ref.digest == index.digest
    assert facts.platforms == ("linux/amd64", "linux/arm64")
    assert facts.created_at == "2026-01-05T00:00:00Z"  # the newest child
    assert facts.labels == {"team": "a", "arch": "amd64", "extra": "yes"}  # first child wins
    # Replicating an index copies every platform: its size is its own bytes plus each child's.
    assert facts.size_bytes == len(index.data) + child_bytes


async def test_facts_are_cached_by_digest_while_tags_are_resolved_again(
    clients: RegistryClients, src: RegistryClient
) -> None:
    first = await push_image(src, "team/app", tag="prod-1", labels={"build": "1"})
    source = RegistryFactSource(clients)
    by_tag = ImageRef("src", "team/app", "prod-1")
    cold, _ = await _lookup(source, by_tag)
    sent = src.requests
    warm, _ = await _lookup(source, ImageRef("src", "team/app", digest=first.digest))
    assert src.requests == sent  # answered from the cache: no manifest, config or referrers read
    assert warm.image == dataclasses.replace(cold.image, ref=warm.image.ref)
    retagged, _ = await _lookup(source, by_tag)
    assert src.requests == sent + 1  # only the tag's manifest: a tag may have moved
    assert retagged.image == cold.image

    moved = await push_image(src, "team/app", tag="prod-1", seed=1, labels={"build": "2"})
    now, _ = await _lookup(source, by_tag)
    assert (now.image.ref.digest, now.image.labels) == (moved.digest, {"build": "2"})


async def test_a_down_registry_leaves_facts_null_and_reports_why(
    registry: RegistryServer, clients: RegistryClients, src: RegistryClient
) -> None:
    app = await push_image(src, "team/app", tag="prod-1")
    cached = RegistryFactSource(clients, timeout_s=1.0)
    refreshing = RegistryFactSource(clients, timeout_s=1.0, referrers_ttl_s=0)
    known = ImageRef("src", "team/app", digest=app.digest)
    up, _ = await _lookup(cached, known)
    await _lookup(refreshing, known)
    registry.stop()

    # A digest already looked up is answered from the cache while the registry is down...
    still, still_report = await _lookup(cached, known)
    assert (still.image, still_report.failures, still_report.warnings) == (up.image, (), ())
    # ...and when its referrers are due for a re-read, the content facts stay and a warning says why.
    stale, stale_report = await _lookup(refreshing, known)
    assert (stale.image.platforms, stale_report.failures) == (("linux/amd64",), ())
    [warning] = stale_report.warnings
    assert warning.source == "registry.image" and "referrers of team/app" in warning.message
    assert "RegistryUnavailable" in warning.message

    # An image never seen gets no registry facts, yet the decision input is still produced.
    started = time.monotonic()
    missing = ImageRef("src", "team/app", "prod-9")
    result, report = await _lookup(cached, missing)
    assert time.monotonic() - started < 1.5
    assert result == _draft(DecideRequest(missing))
    assert report.applied == () and [f.source for f in report.failures] == ["registry.image"]
    assert report.failures[0].message.startswith("RegistryUnavailable: ")
    assert f"{registry.url} unreachable" in report.failures[0].message
