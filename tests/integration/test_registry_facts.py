"""Image facts from the source registry: in-toto scan statements (pure) and a real registry.

``MiniClient`` is a stand-in for sidecar.replicate.oci.RegistryClient (not yet in the tree) with
the same method shapes; it reads referrers through the OCI fallback tag (``sha256-<hex>``) since
Distribution 2.8 has no referrers API.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sidecar.enrich.pipeline import apply_sources
from sidecar.enrich.registry import RegistryFactSource, scan_from_statement
from sidecar.errors import NotFound, RegistryUnavailable
from sidecar.model import DecideRequest, ImageFacts, ImageRef, PolicyInput, ScanFacts
from tests.support.registry import registry_server
from tests.support.webhooks import OCI_MANIFEST, push_blob, push_manifest, push_tiny_image

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT = f"{OCI_MANIFEST}, {OCI_INDEX}"
INTOTO = "application/vnd.in-toto+json"


@dataclass(frozen=True)
class Desc:
    """An OCI descriptor as the OCI client exposes it."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str = ""
    platform: Any = None

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> Desc:
        """Build from descriptor JSON."""
        return cls(
            d["mediaType"],
            d["digest"],
            d["size"],
            d.get("annotations") or {},
            d.get("artifactType", ""),
            d.get("platform"),
        )


@dataclass(frozen=True)
class Manifest:
    """A fetched manifest."""

    data: bytes
    digest: str
    media_type: str

    @property
    def json(self) -> Mapping[str, Any]:
        """The parsed document."""
        return dict(json.loads(self.data))

    @property
    def is_index(self) -> bool:
        """True for an image index."""
        return self.media_type == OCI_INDEX

    def children(self) -> tuple[Desc, ...]:
        """Index children."""
        return tuple(Desc.of(d) for d in self.json.get("manifests", []))

    def config(self) -> Desc:
        """The config descriptor."""
        return Desc.of(self.json["config"])

    def layers(self) -> tuple[Desc, ...]:
        """Layer descriptors."""
        return tuple(Desc.of(d) for d in self.json.get("layers", []))


@dataclass
class MiniClient:
    """Reads one registry over the distribution API."""

    base: str

    async def _get(self, path: str, accept: str = ACCEPT) -> tuple[bytes, str, str]:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(self.base + path, headers={"Accept": accept}) as resp,
            ):
                if resp.status == 404:
                    raise NotFound(path)
                resp.raise_for_status()
                digest = resp.headers.get("Docker-Content-Digest", "")
                return await resp.read(), resp.content_type, digest
        except aiohttp.ClientConnectionError as exc:
            raise RegistryUnavailable(f"{self.base}: {exc}") from exc

    async def get_manifest(self, repo: str, ref: str) -> Manifest:
        """GET a manifest by tag or digest."""
        data, media_type, digest = await self._get(f"/v2/{repo}/manifests/{ref}")
        return Manifest(data, digest, media_type)

    async def read_blob(self, repo: str, digest: str, max_bytes: int) -> bytes:
        """GET a blob."""
        data, _, _ = await self._get(f"/v2/{repo}/blobs/{digest}", "*/*")
        assert len(data) <= max_bytes
        return data

    async def referrers(self, repo: str, digest: str) -> tuple[Desc, ...]:
        """Referrers through the OCI fallback tag."""
        try:
            index = await self.get_manifest(repo, digest.replace(":", "-"))
        except NotFound:
            return ()
        return index.children()


@dataclass
class Clients:
    """RegistryClients stand-in: inventory name → client."""

    by_name: dict[str, MiniClient]

    def get(self, name: str) -> MiniClient:
        """Return the client of registry ``name``."""
        return self.by_name[name]


def _statement(predicate: Any) -> dict[str, Any]:
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "img", "digest": {"sha256": "ab" * 32}}],
        "predicateType": "https://cosign.sigstore.dev/attestation/vuln/v1",
        "predicate": predicate,
    }


@pytest.mark.parametrize(
    ("predicate", "expected"),
    [
        (
            {"status": "passed", "completed_at": "2026-01-02T03:04:05Z", "critical": 0, "high": 2},
            ScanFacts("passed", "2026-01-02T03:04:05Z", 0, 2, "attestation"),
        ),
        (
            {
                "metadata": {"scanFinishedOn": "2026-01-02T03:04:05.123456789Z"},
                "summary": {"CRITICAL": 1, "HIGH": 0},
            },
            ScanFacts("failed", "2026-01-02T03:04:05Z", 1, 0, "attestation"),
        ),
        (
            {
                "metadata": {"scanFinishedOn": "2026-01-02T03:04:05+02:00"},
                "scanner": {
                    "result": {
                        "Results": [
                            {"Vulnerabilities": [{"Severity": "HIGH"}, {"Severity": "LOW"}]},
                            {"Vulnerabilities": [{"Severity": "HIGH"}]},
                        ]
                    }
                },
            },
            ScanFacts("passed", "2026-01-02T01:04:05Z", 0, 2, "attestation"),
        ),
    ],
)
def test_scan_statements_become_attestation_scan_facts(
    predicate: dict[str, Any], expected: ScanFacts
) -> None:
    assert scan_from_statement(_statement(predicate)) == expected


@pytest.mark.parametrize(
    "predicate",
    [None, {}, {"critical": 0}, {"completed_at": "yesterday", "critical": 0}],
)
def test_statements_without_a_completion_time_are_no_scan(predicate: Any) -> None:
    assert scan_from_statement(_statement(predicate)) is None


def _draft(ref: ImageRef, **facts: Any) -> PolicyInput:
    return PolicyInput("2026-03-01T00:00:00Z", "push", ImageFacts(ref=ref, **facts), ())


async def _attest(base: str, repo: str, subject: str, predicate: dict[str, Any]) -> None:
    """Push an in-toto scan attestation for ``subject`` and list it in the fallback tag."""
    statement = json.dumps(_statement(predicate)).encode()
    empty = {**await push_blob(base, repo, b"{}"), "mediaType": "application/vnd.oci.empty.v1+json"}
    layer = {**await push_blob(base, repo, statement), "mediaType": INTOTO}
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": INTOTO,
        "config": empty,
        "layers": [layer],
    }
    digest = await push_manifest(base, repo, "", doc)
    size = len(json.dumps(doc).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": digest, "size": size, "artifactType": INTOTO}
        ],
    }
    await push_manifest(base, repo, subject.replace(":", "-"), index)


@pytest.mark.integration
async def test_image_facts_come_from_the_registry_under_the_request(tmp_path: Path) -> None:
    with registry_server(tmp_path / "reg") as reg:
        labels = {"team": "payments", "tenant": "acme", "criticality": "high"}
        digest = await push_tiny_image(reg.url, "team/app", "prod-1", labels=labels)
        source = RegistryFactSource(Clients({"src": MiniClient(reg.url)}))
        ref = ImageRef("src", "team/app", "prod-1")
        request = DecideRequest(ref, labels={"team": "checkout"})
        unsigned, report = await apply_sources(
            [source], request, _draft(ref, labels={"team": "checkout"})
        )
        assert report.failures == ()
        image = unsigned.image
        # Request labels win over config labels; the tag resolved to the manifest digest.
        assert image.labels == {"team": "checkout", "tenant": "acme", "criticality": "high"}
        assert (image.ref.digest, image.created_at, image.platforms) == (
            digest,
            "2026-01-02T03:04:05Z",
            ("linux/amd64",),
        )
        manifest = await MiniClient(reg.url).get_manifest("team/app", digest)
        expected_size = len(manifest.data) + manifest.config().size + manifest.layers()[0].size
        assert image.size_bytes == expected_size
        assert image.annotations["policy-sidecar.io/signed"] == "false"
        assert image.scan is None

        # cosign's tag-scheme signature and an in-toto scan attestation appear on the next lookup.
        await push_tiny_image(reg.url, "team/app", digest.replace(":", "-") + ".sig")
        await _attest(
            reg.url,
            "team/app",
            digest,
            {
                "metadata": {"scanFinishedOn": "2026-02-01T00:00:00Z"},
                "summary": {"critical": 0, "high": 3},
            },
        )
        fresh = RegistryFactSource(Clients({"src": MiniClient(reg.url)}))
        signed, _ = await apply_sources([fresh], request, _draft(ref))
    assert signed.image.annotations["policy-sidecar.io/signed"] == "true"
    assert signed.image.annotations["policy-sidecar.io/attested"] == "true"
    assert signed.image.scan == ScanFacts("passed", "2026-02-01T00:00:00Z", 0, 3, "attestation")


@pytest.mark.integration
async def test_an_index_reports_every_platform_and_the_sum_of_its_children(tmp_path: Path) -> None:
    with registry_server(tmp_path / "reg") as reg:
        children = []
        for arch, created in (("amd64", "2026-01-01T00:00:00Z"), ("arm64", "2026-01-05T00:00:00Z")):
            digest = await push_tiny_image(
                reg.url, "team/multi", "", created=created, platform=("linux", arch)
            )
            child = await MiniClient(reg.url).get_manifest("team/multi", digest)
            children.append((child, arch))
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": c.digest,
                    "size": len(c.data),
                    "platform": {"os": "linux", "architecture": arch},
                }
                for c, arch in children
            ],
        }
        await push_manifest(reg.url, "team/multi", "prod-2", index)
        source = RegistryFactSource(Clients({"src": MiniClient(reg.url)}))
        ref = ImageRef("src", "team/multi", "prod-2")
        result, report = await apply_sources([source], DecideRequest(ref), _draft(ref))
    assert report.failures == ()
    image = result.image
    assert image.platforms == ("linux/amd64", "linux/arm64")
    assert image.created_at == "2026-01-05T00:00:00Z"  # the newest child
    child_sizes = sum(
        len(c.data) + c.config().size + sum(layer.size for layer in c.layers()) for c, _ in children
    )
    assert image.size_bytes == len(json.dumps(index).encode()) + child_sizes


@pytest.mark.integration
async def test_a_down_registry_leaves_facts_null_and_is_reported_quickly(tmp_path: Path) -> None:
    with registry_server(tmp_path / "reg") as reg:
        digest = await push_tiny_image(reg.url, "team/app", "prod-1")
        source = RegistryFactSource(Clients({"src": MiniClient(reg.url)}), timeout_s=1.0)
        cached_ref = ImageRef("src", "team/app", "prod-1", digest)
        await apply_sources([source], DecideRequest(cached_ref), _draft(cached_ref))
        reg.stop()
        # A digest already looked up is answered from the cache while the registry is down.
        cached, cached_report = await apply_sources(
            [source], DecideRequest(cached_ref), _draft(cached_ref)
        )
        started = time.monotonic()
        ref = ImageRef("src", "team/app", "prod-9")
        result, report = await apply_sources([source], DecideRequest(ref), _draft(ref), timeout_s=3)
    assert time.monotonic() - started < 1.5
    assert cached_report.failures == () and cached.image.platforms == ("linux/amd64",)
    assert result == _draft(ref)  # facts stay null; the decision input is still produced
    assert [f.source for f in report.failures] == ["registry.image"]
    assert "RegistryUnavailable" in report.failures[0].message
