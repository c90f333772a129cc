"""Manifest and descriptor records, media types and digest helpers of the OCI distribution client."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

import orjson

from sidecar.errors import DigestMismatch, RegistryError

__all__ = [
    "ACCEPT_MANIFESTS",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "INDEX_TYPES",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Descriptor",
    "Manifest",
    "check_digest",
    "digest_of",
    "fallback_tag",
]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
ACCEPT_MANIFESTS = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST))

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def digest_of(data: bytes) -> str:
    """Return the sha256 digest string of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: str, where: str) -> None:
    """Raise RegistryError unless ``digest`` is a sha256 digest (the only algorithm we verify)."""
    if not _DIGEST.match(digest):
        raise RegistryError(f"{where}: {digest!r} is not a sha256 digest", status=None)


def fallback_tag(digest: str) -> str:
    """Return the OCI referrers fallback tag of ``digest`` (``sha256-<hex>``)."""
    return digest.replace(":", "-", 1)


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor; ``platform`` is ``os/arch[/variant]`` for index entries."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str = ""
    platform: str = ""

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Descriptor:
        """Build a descriptor from its JSON object; raise RegistryError when malformed."""
        try:
            platform = doc.get("platform") or {}
            parts = [platform.get("os", ""), platform.get("architecture", "")]
            if platform.get("variant"):
                parts.append(platform["variant"])
            annotations = doc.get("annotations") or {}
            return cls(
                media_type=str(doc.get("mediaType", "")),
                digest=str(doc["digest"]),
                size=int(doc["size"]),
                annotations=MappingProxyType({str(k): str(v) for k, v in annotations.items()}),
                artifact_type=str(doc.get("artifactType", "")),
                platform="/".join(parts) if any(parts) else "",
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RegistryError(f"malformed descriptor {doc!r}: {exc}") from exc


@dataclass(frozen=True)
class Manifest:
    """A manifest exactly as stored: its digest, media type and raw bytes (pushed byte for byte)."""

    digest: str
    media_type: str
    data: bytes

    @cached_property
    def json(self) -> dict[str, Any]:
        """The parsed document (an empty dict when the bytes are not a JSON object)."""
        try:
            doc = orjson.loads(self.data)
        except orjson.JSONDecodeError:
            return {}
        return doc if isinstance(doc, dict) else {}

    @property
    def is_index(self) -> bool:
        """True for an OCI index or a Docker manifest list."""
        return self.media_type in INDEX_TYPES or (not self.media_type and "manifests" in self.json)

    def children(self) -> tuple[Descriptor, ...]:
        """The entries of an index (every platform); empty for an image manifest."""
        return tuple(Descriptor.from_json(d) for d in self.json.get("manifests") or ())

    def config(self) -> Descriptor | None:
        """The config descriptor of an image manifest, None for an index."""
        config = self.json.get("config")
        return Descriptor.from_json(config) if isinstance(config, dict) else None

    def layers(self) -> tuple[Descriptor, ...]:
        """The layer (or artifact blob) descriptors of an image manifest."""
        return tuple(Descriptor.from_json(d) for d in self.json.get("layers") or ())

    def subject(self) -> Descriptor | None:
        """The manifest this one refers to (OCI ``subject``), if any."""
        subject = self.json.get("subject")
        return Descriptor.from_json(subject) if isinstance(subject, dict) else None

    def blobs(self) -> tuple[Descriptor, ...]:
        """The config (when any) followed by the layers: every blob this manifest needs."""
        config = self.config()
        return ((config,) if config else ()) + self.layers()

    @property
    def artifact_type(self) -> str:
        """``artifactType``, else the config media type (how the referrers API reports kinds)."""
        declared = self.json.get("artifactType")
        if declared:
            return str(declared)
        config = self.config()
        return config.media_type if config else ""

    def descriptor(self) -> Descriptor:
        """Return a descriptor of this manifest (as an index or a referrers list would hold it)."""
        annotations = self.json.get("annotations") or {}
        return Descriptor(
            media_type=self.media_type,
            digest=self.digest,
            size=len(self.data),
            annotations=MappingProxyType({str(k): str(v) for k, v in annotations.items()}),
            artifact_type=self.artifact_type,
        )

    @classmethod
    def verified(cls, data: bytes, media_type: str, expected: str, where: str) -> Manifest:
        """Build a manifest whose bytes must hash to ``expected`` (when it is a digest)."""
        actual = digest_of(data)
        if expected.startswith("sha256:") and actual != expected:
            raise DigestMismatch(
                f"{where}: manifest content hashes to {actual}, expected {expected}"
            )
        manifest = cls(actual, media_type, data)
        # The document's own mediaType wins: some registries answer with a generic Content-Type.
        declared = manifest.json.get("mediaType")
        return cls(actual, str(declared), data) if declared else manifest
