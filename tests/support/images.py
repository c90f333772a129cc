"""Build and push small test images through the OCI client; every helper returns digests.

Layers are random bytes, deterministic from a seed (not real tars: registries never unpack).

The scan attestation (:func:`push_scan_attestation`) is an OCI image manifest with
``artifactType: application/vnd.in-toto+json``, an empty config
(``application/vnd.oci.empty.v1+json``, ``{}``), ``subject`` = the scanned image, and one layer of
media type ``application/vnd.in-toto+json`` holding this in-toto statement::

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": "<repository>", "digest": {"sha256": "<hex of the image>"}}],
     "predicateType": "https://cosign.sigstore.dev/attestation/vuln/v1",
     "predicate": {
        "status": "passed" | "failed",            # the scanner's verdict
        "completed_at": "2026-01-02T03:04:05Z",    # RFC3339 UTC
        "critical": 0, "high": 2,                  # vulnerability counts
        "scanner": {"uri": "https://github.com/aquasecurity/trivy", "version": "0.50.0",
                    "result": {"status": ..., "critical": ..., "high": ...}},
        "metadata": {"scanStartedOn": <completed_at>, "scanFinishedOn": <completed_at>}}}

The image is listed under the referrers fallback tag ``sha256-<hex>`` (an OCI index), since
Distribution 2.8 has no referrers API; the SBOM referrer (``application/spdx+json``) likewise.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.config._registries import AuthConfig, RegistryConfig
from sidecar.model.decision import RegistryFacts
from sidecar.oci import (
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
    RegistryClient,
    digest_of,
    fallback_tag,
)

__all__ = [
    "INTOTO",
    "SPDX",
    "PushedImage",
    "PushedIndex",
    "layer_bytes",
    "push_bytes",
    "push_cosign_signature",
    "push_image",
    "push_index",
    "push_manifest",
    "push_sbom",
    "push_scan_attestation",
    "registry_config",
    "scanned_labels",
]

SPDX = "application/spdx+json"
INTOTO = "application/vnd.in-toto+json"
EMPTY = "application/vnd.oci.empty.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"
CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def scanned_labels(**extra: str) -> dict[str, str]:
    """Config labels of an image scanned an hour ago with no critical finding, plus ``extra``."""
    at = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    return {
        "security.scan.status": "passed",
        "security.scan.completed-at": at.isoformat().replace("+00:00", "Z"),
        "security.scan.critical": "0",
        **extra,
    }


@dataclass(frozen=True)
class PushedImage:
    """A single-platform image pushed for a test."""

    digest: str
    config: str
    layers: tuple[str, ...]
    blob_bytes: int  # config + layers


@dataclass(frozen=True)
class PushedIndex:
    """A multi-platform index pushed for a test, with its per-platform images."""

    digest: str
    children: Mapping[str, PushedImage]  # platform "os/arch" → image
    blob_bytes: int


def registry_config(
    name: str, url: str, *, username: str = "", password: str = "", auth_type: str = ""
) -> RegistryConfig:
    """An inventory entry for a test registry at ``url`` (basic auth when ``username`` is set)."""
    kind = auth_type or ("basic" if username else "anonymous")
    return RegistryConfig(
        name=name,
        facts=RegistryFacts(name=name, region="eu-west-1", environment="dev"),
        endpoint=url,
        auth=AuthConfig(type=kind, username=username, password=password),
    )


def layer_bytes(seed: int, size: int) -> bytes:
    """Deterministic pseudo-random bytes (incompressible, like real layers)."""
    return random.Random(seed).randbytes(size)  # noqa: S311 - reproducible, not secret


async def _chunks(data: bytes, size: int = 1 << 16) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def push_bytes(
    client: RegistryClient, repo: str, data: bytes, media_type: str
) -> dict[str, Any]:
    """Push one blob (if missing) and return its descriptor JSON."""
    digest = digest_of(data)
    if not await client.blob_exists(repo, digest):
        await client.push_blob(repo, digest, len(data), _chunks(data))
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


async def push_manifest(
    client: RegistryClient, repo: str, doc: Mapping[str, Any], reference: str = ""
) -> Manifest:
    """Push a manifest document under ``reference`` (default: its digest) and return it."""
    data = json.dumps(doc, sort_keys=True).encode()
    manifest = Manifest(digest_of(data), str(doc["mediaType"]), data)
    await client.put_manifest(repo, reference or manifest.digest, manifest)
    return manifest


async def push_image(
    client: RegistryClient,
    repo: str,
    *,
    tag: str = "",
    seed: int = 0,
    layer_sizes: Sequence[int] = (64 << 10, 32 << 10),
    labels: Mapping[str, str] | None = None,
    created: str = "2026-01-02T03:04:05Z",
    platform: str = "linux/amd64",
    docker: bool = False,
) -> PushedImage:
    """Push a single-platform image (OCI, or Docker schema 2 with ``docker``) with config labels."""
    os_name, arch = platform.split("/")[:2]
    config_doc = {
        "architecture": arch,
        "os": os_name,
        "created": created,
        "config": {"Labels": dict(labels or {})},
        "rootfs": {"type": "layers", "diff_ids": []},
        "seed": seed,
    }
    config = await push_bytes(
        client, repo, json.dumps(config_doc).encode(), DOCKER_CONFIG if docker else CONFIG
    )
    layers = [
        await push_bytes(
            client, repo, layer_bytes(seed * 1000 + i, size), DOCKER_LAYER if docker else LAYER
        )
        for i, size in enumerate(layer_sizes)
    ]
    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": config,
        "layers": layers,
    }
    manifest = await push_manifest(client, repo, doc, tag)
    return PushedImage(
        manifest.digest,
        config["digest"],
        tuple(layer["digest"] for layer in layers),
        config["size"] + sum(layer["size"] for layer in layers),
    )


async def push_index(
    client: RegistryClient,
    repo: str,
    *,
    tag: str = "",
    seed: int = 100,
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    layer_sizes: Sequence[int] = (32 << 10,),
) -> PushedIndex:
    """Push one image per platform, then an OCI index of them all."""
    children: dict[str, PushedImage] = {}
    entries = []
    for i, platform in enumerate(platforms):
        image = await push_image(
            client, repo, seed=seed + i, layer_sizes=layer_sizes, platform=platform
        )
        children[platform] = image
        head = await client.head_manifest(repo, image.digest)
        assert head is not None
        os_name, arch = platform.split("/")[:2]
        entries.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": image.digest,
                "size": head.size,
                "platform": {"os": os_name, "architecture": arch},
            }
        )
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    index = await push_manifest(client, repo, doc, tag)
    return PushedIndex(index.digest, children, sum(c.blob_bytes for c in children.values()))


async def push_cosign_signature(client: RegistryClient, repo: str, subject: str) -> str:
    """Push a cosign-style signature under the tag ``sha256-<hex>.sig``; return its digest."""
    payload = json.dumps(
        {
            "critical": {
                "image": {"docker-manifest-digest": subject},
                "type": "cosign container image signature",
            }
        }
    ).encode()
    layer = await push_bytes(
        client, repo, payload, "application/vnd.dev.cosign.simplesigning.v1+json"
    )
    layer["annotations"] = {"dev.cosignproject.cosign/signature": "MEUCIQ-test-signature"}
    config = await push_bytes(client, repo, b"{}", CONFIG)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]}
    manifest = await push_manifest(client, repo, doc, fallback_tag(subject) + ".sig")
    return manifest.digest


async def _push_referrer(
    client: RegistryClient, repo: str, subject: str, artifact_type: str, payload: bytes
) -> str:
    """Push an OCI artifact manifest with ``subject`` and add it to the fallback tag's index."""
    head = await client.head_manifest(repo, subject)
    assert head is not None, f"subject {subject} must be pushed first"
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": await push_bytes(client, repo, b"{}", EMPTY),
        "layers": [await push_bytes(client, repo, payload, artifact_type)],
        "subject": {"mediaType": head.media_type, "digest": subject, "size": head.size},
        "annotations": {"org.opencontainers.image.created": "2026-01-02T03:04:05Z"},
    }
    manifest = await push_manifest(client, repo, doc)
    tag = fallback_tag(subject)
    entries: list[Any] = []
    if await client.head_manifest(repo, tag) is not None:
        entries = list((await client.get_manifest(repo, tag)).json["manifests"])
    entries.append(
        {
            "mediaType": OCI_MANIFEST,
            "digest": manifest.digest,
            "size": len(manifest.data),
            "artifactType": artifact_type,
            "annotations": doc["annotations"],
        }
    )
    await push_manifest(
        client, repo, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, tag
    )
    return manifest.digest


async def push_sbom(client: RegistryClient, repo: str, subject: str) -> str:
    """Push an SPDX SBOM referrer of ``subject``; return its manifest digest."""
    sbom = {"spdxVersion": "SPDX-2.3", "name": repo, "packages": [{"name": "busybox"}]}
    return await _push_referrer(client, repo, subject, SPDX, json.dumps(sbom).encode())


async def push_scan_attestation(
    client: RegistryClient,
    repo: str,
    subject: str,
    *,
    critical: int = 0,
    high: int = 0,
    status: str = "passed",
    completed_at: str = "2026-01-02T03:04:05Z",
) -> str:
    """Push the in-toto scan attestation described in the module docstring; return its digest."""
    result = {"status": status, "critical": critical, "high": high}
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": repo, "digest": {"sha256": subject.removeprefix("sha256:")}}],
        "predicateType": "https://cosign.sigstore.dev/attestation/vuln/v1",
        "predicate": {
            **result,
            "completed_at": completed_at,
            "scanner": {
                "uri": "https://github.com/aquasecurity/trivy",
                "version": "0.50.0",
                "result": result,
            },
            "metadata": {"scanStartedOn": completed_at, "scanFinishedOn": completed_at},
        },
    }
    return await _push_referrer(client, repo, subject, INTOTO, json.dumps(statement).encode())
