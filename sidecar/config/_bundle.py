"""Parses ``policy.bundle.service`` (where the managed OPA pulls bundles) and ``policy.bundle.serve``.

``service`` is the ``bundle publish --to`` URL of a store (S3, GCS or a built-in bundle server)
plus OPA's polling settings; with it the managed OPA pulls signed bundles instead of the sidecar
building one. ``serve`` makes this sidecar host the built-in HTTP bundle server for a fleet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, ValidationInfo
from pydantic.json_schema import SkipJsonSchema

from sidecar.config._model import (
    Bool,
    HostPort,
    Int,
    NonEmpty,
    Path_,
    Secret,
    Target,
    keys,
    read_record,
)
from sidecar.config._read import Node
from sidecar.config._scalars import choice, expanded
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


_ENDPOINT_PROBLEM = (
    "expected an http(s)://host:port S3/GCS endpoint (emulators, gateways); "
    "an http store's url is already its endpoint"
)


def _endpoint(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(_ENDPOINT_PROBLEM)
    return text.rstrip("/")


def _credential(value: object, info: ValidationInfo) -> str:
    """One of the credentials the store (in the validation context) accepts."""
    accepted: tuple[str, ...] = (info.context or {}).get("credentials", _CREDENTIALS["s3"])
    return choice(accepted)(value)


_credentials = BeforeValidator(
    _credential, json_schema_input_type=Literal["environment", "gcp_metadata", "none"]
)
_Positive = Annotated[Int, Field(ge=1)]


@dataclass(frozen=True, slots=True)
class BundleServiceSettings:
    """``policy.bundle.service``: the store the managed OPA polls, and how often."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    url: Target  # the `bundle publish --to` URL
    store: SkipJsonSchema[str]  # s3 | gcs | http, from the URL's scheme
    endpoint_url: Annotated[NonEmpty, AfterValidator(_endpoint)] | None = None
    region: NonEmpty | None = None
    # environment (s3); gcp_metadata or none (gcs); none (http). Default: the first.
    credentials: Annotated[str, _credentials] = "environment"
    token: Annotated[NonEmpty, AfterValidator(expanded)] | None = None  # http: the read token
    # 1-2 s keeps p95 propagation to every sidecar under 5 s (docs/benchmarks.md); each poll of
    # an unchanged bundle is a conditional GET answered 304.
    min_delay_s: _Positive = 1
    max_delay_s: _Positive = 2
    long_poll_timeout_s: _Positive = 30
    # OPA keeps the last activated bundle under state_dir: a restarted OPA serves it at once, even
    # while the store is unreachable (it is verified again when loaded).
    persist: Bool = True


@dataclass(frozen=True, slots=True)
class BundleServeSettings:
    """``policy.bundle.serve``: the built-in HTTP bundle server this sidecar hosts ("" = off)."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    listen: HostPort = ""
    dir: Path_ = ""  # "" → <state_dir>/bundle-server
    token: Secret = ""
    read_token: Annotated[Secret, AfterValidator(lambda token: token or None)] | None = None
    max_bytes: Annotated[Int, Field(ge=1)] = DEFAULT_SERVE_MAX_BYTES

    @property
    def enabled(self) -> bool:
        """Whether the sidecar hosts a bundle server."""
        return bool(self.listen)


def parse_bundle_service(node: Node, *, verification_key: str | None) -> BundleServiceSettings:
    """Parse ``policy.bundle.service``; the bundle's verification key must be configured."""
    f = node.fields(keys(BundleServiceSettings), strict=True)
    if "url" not in f or f["url"].is_null:
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
    credentials = _CREDENTIALS[store]
    service = read_record(
        BundleServiceSettings,
        node,
        given={"store": store, "credentials": credentials[0]}
        | {k: n.value for k, n in f.items() if k == "credentials" and not n.is_null},
        context={"credentials": credentials},
    )
    if service.endpoint_url is not None and store == "http":
        raise f["endpoint_url"].error(_ENDPOINT_PROBLEM)
    if service.token is not None and store != "http":
        raise f["token"].error("only an http bundle server takes a bearer token")
    if service.max_delay_s < service.min_delay_s:
        raise (f.get("max_delay_s") or f["min_delay_s"]).error(
            f"max_delay_s ({service.max_delay_s}) must be at least min_delay_s "
            f"({service.min_delay_s})"
        )
    return service


def parse_bundle_serve(node: Node, base: Path) -> BundleServeSettings:
    """Parse ``policy.bundle.serve``; a relative ``dir`` resolves against ``base``."""
    serve = read_record(BundleServeSettings, node, base=base)
    if serve.listen and not serve.token:
        raise node.error(
            "needs token: the upload token `bundle publish` sends "
            "(e.g. token: ${POLICY_SIDECAR_BUNDLE_TOKEN})"
        )
    return serve
