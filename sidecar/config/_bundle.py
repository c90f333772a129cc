"""Parses ``policy.bundle.service`` (where the managed OPA pulls bundles) and ``policy.bundle.serve``.

``service`` is the ``bundle publish --to`` URL of a store (S3, GCS or a built-in bundle server)
plus OPA's polling settings; with it the managed OPA pulls signed bundles instead of the sidecar
building one. ``serve`` makes this sidecar host the built-in HTTP bundle server for a fleet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from sidecar.config._model import HostPort, Int, Path_, Secret, Str, read_record
from sidecar.config._read import Node
from sidecar.config._target import parse_target
from sidecar.errors import InvalidArgument

__all__ = [
    "DEFAULT_SERVE_MAX_BYTES",
    "BundleServeSettings",
    "BundleServiceSettings",
    "parse_bundle_serve",
    "parse_bundle_service",
]

DEFAULT_SERVE_MAX_BYTES = 64 * 1024 * 1024
# The OPA credentials each store accepts; the first is the default.
_CREDENTIALS = {
    "s3": ("environment",),  # SigV4 with AWS_ACCESS_KEY_ID/… from the sidecar's environment
    "gcs": ("gcp_metadata", "none"),  # metadata server (Workload Identity); none: emulator/public
    "http": ("none",),  # a bearer `token` is the built-in server's read token
}


@dataclass(frozen=True, slots=True)
class BundleServiceSettings:
    """``policy.bundle.service``: the store the managed OPA polls, and how often."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    url: str
    store: SkipJsonSchema[str]  # s3 | gcs | http, from the URL's scheme
    endpoint_url: str | None = None
    region: str | None = None
    credentials: str = "environment"
    token: str | None = None
    # 1-2 s keeps p95 propagation to every sidecar under 5 s (docs/benchmarks.md); each poll of
    # an unchanged bundle is a conditional GET answered 304.
    min_delay_s: int = 1
    max_delay_s: int = 2
    long_poll_timeout_s: int = 30
    # OPA keeps the last activated bundle under state_dir: a restarted OPA serves it at once, even
    # while the store is unreachable (it is verified again when loaded).
    persist: bool = True


@dataclass(frozen=True, slots=True)
class BundleServeSettings:
    """``policy.bundle.serve``: the built-in HTTP bundle server this sidecar hosts ("" = off)."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    listen: HostPort = ""
    dir: Path_ = ""  # "" → <state_dir>/bundle-server
    token: Secret = ""
    read_token: Annotated[Str, AfterValidator(lambda token: token or None)] | None = None
    max_bytes: Annotated[Int, Field(ge=1)] = DEFAULT_SERVE_MAX_BYTES

    @property
    def enabled(self) -> bool:
        """Whether the sidecar hosts a bundle server."""
        return bool(self.listen)


_SERVICE_KEYS = (
    "url",
    "endpoint_url",
    "region",
    "credentials",
    "token",
    "min_delay_s",
    "max_delay_s",
    "long_poll_timeout_s",
    "persist",
)


def parse_bundle_service(node: Node, *, verification_key: str | None) -> BundleServiceSettings:
    """Parse ``policy.bundle.service``; the bundle's verification key must be configured."""
    f = node.fields(_SERVICE_KEYS, strict=True)
    d = BundleServiceSettings("", "")
    if "url" not in f:
        raise node.error("needs url: the `bundle publish --to` URL (s3://, gs:// or http(s)://)")
    url = f["url"].string(allow_empty=False)
    try:
        store = parse_target(url).store
    except InvalidArgument as exc:
        raise f["url"].error(exc.message.removeprefix("--to: ")) from None
    if verification_key is None:
        raise node.error(
            "needs policy.bundle.verification_key: the public key OPA verifies pulled bundles with"
        )

    def text(key: str) -> str | None:
        given = f.get(key)
        return None if given is None or given.is_null else given.string(allow_empty=False)

    endpoint = text("endpoint_url")
    if endpoint is not None:
        parts = urlsplit(endpoint)
        if store == "http" or parts.scheme not in ("http", "https") or not parts.netloc:
            raise f["endpoint_url"].error(
                "expected an http(s)://host:port S3/GCS endpoint (emulators, gateways); "
                "an http store's url is already its endpoint"
            )
    choices = _CREDENTIALS[store]
    token = text("token")
    if token is not None and store != "http":
        raise f["token"].error("only an http bundle server takes a bearer token")
    if token is not None and token.startswith("${"):
        raise f["token"].error(f"{token} is not set in the environment")

    def delay(key: str, default: int) -> int:
        return f[key].integer(minimum=1) if key in f else default

    min_delay, max_delay = delay("min_delay_s", d.min_delay_s), delay("max_delay_s", d.max_delay_s)
    if max_delay < min_delay:
        raise (f.get("max_delay_s") or f["min_delay_s"]).error(
            f"max_delay_s ({max_delay}) must be at least min_delay_s ({min_delay})"
        )
    return BundleServiceSettings(
        url=url,
        store=store,
        endpoint_url=endpoint.rstrip("/") if endpoint else None,
        region=text("region"),
        credentials=f["credentials"].choice(choices) if "credentials" in f else choices[0],
        token=token,
        min_delay_s=min_delay,
        max_delay_s=max_delay,
        long_poll_timeout_s=delay("long_poll_timeout_s", d.long_poll_timeout_s),
        persist=f["persist"].boolean() if "persist" in f else d.persist,
    )


def parse_bundle_serve(node: Node, base: Path) -> BundleServeSettings:
    """Parse ``policy.bundle.serve``; a relative ``dir`` resolves against ``base``."""
    serve = read_record(BundleServeSettings, node, base=base)
    if serve.listen and not serve.token:
        raise node.error(
            "needs token: the upload token `bundle publish` sends "
            "(e.g. token: ${POLICY_SIDECAR_BUNDLE_TOKEN})"
        )
    return serve
