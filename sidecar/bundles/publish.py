"""Publishes built bundles to S3, Google Cloud Storage or the built-in bundle server.

Targets are URLs: ``s3://bucket/key``, ``gs://bucket/object`` or
``http(s)://host:port[/prefix]/bundles/<name>``. Every publisher uploads the exact archive bytes
that were built and signed (checked against the bundle's digest first); OPA verifies the signature
when it downloads, so a store never has to be trusted with more than availability.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zlib
from pathlib import Path
from typing import Protocol

from sidecar.bundles._publish_common import (
    ARCHIVE_CONTENT_TYPE,
    BUNDLE_CONTENT_TYPE,
    PublishError,
    PublishResult,
    read_bundle_bytes,
)
from sidecar.bundles._publish_stores import GcsPublisher, HttpPublisher, S3Publisher
from sidecar.bundles.build import BuiltBundle
from sidecar.config import PublishTarget, parse_target
from sidecar.errors import BundleError, InvalidArgument

__all__ = [
    "ARCHIVE_CONTENT_TYPE",
    "BUNDLE_CONTENT_TYPE",
    "GcsPublisher",
    "HttpPublisher",
    "PublishError",
    "PublishResult",
    "PublishTarget",
    "Publisher",
    "S3Publisher",
    "bundle_from_file",
    "parse_target",
    "publisher_for",
    "read_bundle_bytes",
]

STORES = ("s3", "gcs", "http")


class Publisher(Protocol):
    """Anything that can put a built bundle into a store OPA polls."""

    def publish(self, bundle: BuiltBundle) -> PublishResult:
        """Upload ``bundle`` and return where it went; PublishError on failure."""
        ...


def publisher_for(
    url: str,
    *,
    token: str | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    timeout_s: float = 60.0,
) -> Publisher:
    """Return the publisher for a target URL (``endpoint_url``: S3/GCS emulator or gateway)."""
    target = parse_target(url)
    if target.store == "s3":
        return S3Publisher(
            target.bucket, target.key, endpoint_url=endpoint_url, region=region, timeout_s=timeout_s
        )
    if target.store == "gcs":
        return GcsPublisher(target.bucket, target.key, endpoint=endpoint_url, timeout_s=timeout_s)
    if not token:
        raise InvalidArgument("--token", "the bundle server needs a bearer token to accept uploads")
    return HttpPublisher(url, token, timeout_s=timeout_s)


def bundle_from_file(path: Path) -> BuiltBundle:
    """Describe an existing bundle archive (revision from its ``.manifest``) for publishing.

    Nothing is verified here: OPA checks the signature when it downloads; run ``bundle verify``
    first to catch a bad bundle before it reaches the store.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read bundle {path}: {exc}") from exc
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as archive:
            members = [m for m in archive.getmembers() if m.isfile()]
            files = tuple(sorted(m.name.lstrip("/") for m in members))
            revision = ""
            for member in members:
                if member.name.lstrip("/") == ".manifest":
                    handle = archive.extractfile(member)
                    manifest = json.load(handle) if handle is not None else {}
                    if isinstance(manifest, dict):
                        revision = str(manifest.get("revision", ""))
    # EOFError: truncated gzip; zlib.error: corrupt deflate data; RecursionError: a manifest
    # nested deeper than the JSON parser goes (ValueError covers the rest of bad JSON).
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError, RecursionError) as exc:
        raise BundleError(f"{path} is not a readable bundle archive: {exc}") from exc
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    return BuiltBundle(path, revision, digest, len(raw), files)
