"""Parses bundle store URLs (``bundle publish --to``, ``policy.bundle.service.url``, admin publish).

It lives with the config because the config validates these URLs at load time; the publishers in
``sidecar.bundles`` take the parsed target. Parsing needs no store client (no boto3, no GCS).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from sidecar.errors import InvalidArgument

__all__ = ["PublishTarget", "is_valid_bundle_name", "parse_target"]

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def is_valid_bundle_name(name: str) -> bool:
    """Return whether ``name`` is a safe bundle name (one segment of letters, digits, ``._-``)."""
    return _NAME_RE.fullmatch(name) is not None and ".." not in name


@dataclass(frozen=True, slots=True)
class PublishTarget:
    """A parsed target URL: ``store`` is s3|gcs|http; ``bucket`` is empty for http."""

    store: str
    bucket: str
    key: str
    url: str


def parse_target(url: str) -> PublishTarget:
    """Parse a ``--to`` URL; InvalidArgument naming what is wrong with it."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced IPv6 bracket
        raise InvalidArgument("--to", f"{url!r} is not a URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme in ("s3", "gs"):
        store = "s3" if scheme == "s3" else "gcs"
        key = parts.path.lstrip("/")
        if not parts.netloc:
            raise InvalidArgument("--to", f"{url!r} has no bucket ({scheme}://BUCKET/OBJECT)")
        if not key or key.endswith("/"):
            raise InvalidArgument("--to", f"{url!r} names no object ({scheme}://BUCKET/OBJECT)")
        if parts.query or parts.fragment:
            raise InvalidArgument("--to", f"{url!r}: object names take no ?query or #fragment")
        return PublishTarget(store, parts.netloc, key, url)
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise InvalidArgument("--to", f"{url!r} has no host")
        _, sep, name = parts.path.rpartition("/bundles/")
        if not sep or not is_valid_bundle_name(name):
            raise InvalidArgument(
                "--to",
                f"{url!r} must end in /bundles/<name>, name = letters, digits, '.', '_', '-'",
            )
        if parts.query or parts.fragment:
            raise InvalidArgument("--to", f"{url!r}: bundle URLs take no ?query or #fragment")
        return PublishTarget("http", "", name, url)
    raise InvalidArgument(
        "--to", f"{url!r}: use s3://BUCKET/KEY, gs://BUCKET/OBJECT or http(s)://HOST/bundles/NAME"
    )
