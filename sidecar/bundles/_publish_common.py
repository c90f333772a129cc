"""What every bundle store shares: the publish result, the publish error, names and content types."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sidecar.bundles.build import BuiltBundle
from sidecar.errors import BundleError

__all__ = [
    "ARCHIVE_CONTENT_TYPE",
    "BUNDLE_CONTENT_TYPE",
    "PublishError",
    "PublishResult",
    "read_bundle_bytes",
]

# OPA switches to long polling only when a response carries exactly this type. Only the built-in
# server may send it: an object store answers at once, so OPA would then poll in a tight loop.
BUNDLE_CONTENT_TYPE = "application/vnd.openpolicyagent.bundles"
ARCHIVE_CONTENT_TYPE = "application/gzip"

# One path segment, no dot-only names: a name is also a file name under the server's state dir.


class PublishError(BundleError):
    """A store refused or could not take a bundle; ``transient`` says whether a retry may work."""

    def __init__(self, message: str, *, status: int | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Where a bundle went: store kind, its URL there, its revision, digest and publish time."""

    store: str
    location: str
    revision: str
    digest: str
    published_at: datetime

    def to_json(self) -> dict[str, Any]:
        """Return the result as a JSON-ready dict (RFC 3339 ``published_at``)."""
        return {
            "store": self.store,
            "location": self.location,
            "revision": self.revision,
            "digest": self.digest,
            "published_at": self.published_at.isoformat().replace("+00:00", "Z"),
        }


def read_bundle_bytes(bundle: BuiltBundle) -> bytes:
    """Return the archive's bytes; PublishError if they no longer hash to ``bundle.digest``."""
    try:
        raw = bundle.path.read_bytes()
    except OSError as exc:
        raise PublishError(f"cannot read bundle {bundle.path}: {exc}") from exc
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    if digest != bundle.digest:
        # Publishing other bytes than the ones built (and signed) would report a false digest.
        raise PublishError(
            f"bundle {bundle.path} changed since it was built: {digest} != {bundle.digest}"
        )
    return raw
