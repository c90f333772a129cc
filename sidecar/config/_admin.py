"""Parses ``policy.admin``: the PolicyAdmin API's TLS listener, tokens, bundle store and limits."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field

from sidecar.config._model import (
    Bool,
    Duration,
    HostPort,
    Int,
    NonEmpty,
    Number,
    Path_,
    Str,
    Target,
    keys,
    read_record,
)
from sidecar.config._read import Node
from sidecar.config._scalars import as_moment, expanded

__all__ = [
    "DEFAULT_ADMIN_BURST",
    "DEFAULT_ADMIN_RATE",
    "DEFAULT_MAX_BUNDLE_BYTES",
    "DEFAULT_MAX_UNPACKED_BYTES",
    "DEFAULT_PARSE_TIMEOUT_S",
    "DEFAULT_RATE_LIMIT_IDENTITIES",
    "DEFAULT_REFUSALS_PER_WINDOW",
    "DEFAULT_REFUSAL_ROWS_PER_WINDOW",
    "DEFAULT_REFUSAL_WINDOW_S",
    "AdminPublishSettings",
    "AdminRateLimit",
    "AdminRefusalAudit",
    "AdminSettings",
    "AdminTlsSettings",
    "AdminToken",
    "parse_admin",
    "parse_tls",
    "parse_token",
    "subject_name",
]

DEFAULT_MAX_BUNDLE_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_UNPACKED_BYTES = 64 * 1024 * 1024
# Reading and validating one bundle (opa check and the Rego tests included) in a worker process;
# past it the job is killed: YAML data parses at a few MB a minute, so the size caps alone do not
# bound the time a bundle can take.
DEFAULT_PARSE_TIMEOUT_S = 120.0
# Admin calls are rare and human- or pipeline-paced: 5/s sustained with bursts of 50 per identity
# leaves room for scripts and test suites, and caps what one identity (or one peer address, for
# callers that cannot authenticate) can make the sidecar do.
DEFAULT_ADMIN_RATE = 5.0
DEFAULT_ADMIN_BURST = 50
DEFAULT_RATE_LIMIT_IDENTITIES = 4096
# Refusals audited one by one per identity and window; the rest become one summary row.
DEFAULT_REFUSALS_PER_WINDOW = 20
DEFAULT_REFUSAL_WINDOW_S = 60.0
# Over all identities: bounds the rows a flood from many addresses can write per window.
DEFAULT_REFUSAL_ROWS_PER_WINDOW = 200
_SHA256 = re.compile(r"[0-9a-f]{64}")
_BCRYPT = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")
_SUBJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
_FORBID = ConfigDict(extra="forbid")


def _matching(pattern: re.Pattern[str], problem: str) -> AfterValidator:
    def check(text: str) -> str:
        if not pattern.fullmatch(text):
            raise ValueError(problem)
        return text

    return AfterValidator(check)


def _file(text: str) -> str:
    if not Path(text).is_file():
        raise ValueError(f"{text} does not exist")
    return text


_File = Annotated[Path_, AfterValidator(_file)]
_Sha256 = Annotated[
    Str,
    AfterValidator(lambda text: text.lower().removeprefix("sha256:")),
    _matching(_SHA256, "expected 64 hex digits (the SHA-256 of the token)"),
]


@dataclass(frozen=True, slots=True)
class AdminTlsSettings:
    """``policy.admin.tls``: the listener's certificate and the CA client certificates chain to."""

    __pydantic_config__ = _FORBID

    cert_file: _File
    key_file: _File
    client_ca_file: _File | None = None


subject_name = Annotated[
    NonEmpty, _matching(_SUBJECT, "use letters, digits and . _ @ - (at most 128)")
]


@dataclass(frozen=True, slots=True)
class AdminToken:
    """One bearer token, stored hashed: it authenticates as ``token:<subject>``."""

    __pydantic_config__ = _FORBID

    subject: subject_name
    sha256: _Sha256 | None = None
    bcrypt: Annotated[Str, _matching(_BCRYPT, "expected a bcrypt hash ($2b$12$…)")] | None = field(
        default=None, repr=False
    )
    expires_at: (
        Annotated[datetime, BeforeValidator(as_moment, json_schema_input_type=str)] | None
    ) = None


@dataclass(frozen=True, slots=True)
class AdminPublishSettings:
    """``policy.admin.publish``: the store PublishBundle and Rollback write to."""

    __pydantic_config__ = _FORBID

    to: Target = ""  # "" → policy.bundle.service's store, else only the managed OPA
    endpoint_url: NonEmpty | None = None
    region: NonEmpty | None = None
    # the bundle server's upload token
    token: Annotated[NonEmpty, AfterValidator(expanded)] | None = field(default=None, repr=False)
    timeout_s: Annotated[Duration, Field(ge=0.1)] = 60.0


@dataclass(frozen=True, slots=True)
class AdminRateLimit:
    """``policy.admin.rate_limit``: a token bucket per caller identity (peer address if none)."""

    __pydantic_config__ = _FORBID

    rate: Annotated[Number, Field(gt=0)] = DEFAULT_ADMIN_RATE  # calls per second, sustained
    burst: Annotated[Int, Field(ge=1)] = DEFAULT_ADMIN_BURST  # calls at once after a quiet spell
    # Buckets kept (least recently used forgotten first): bounds the limiter's memory.
    max_identities: Annotated[Int, Field(ge=1)] = DEFAULT_RATE_LIMIT_IDENTITIES


@dataclass(frozen=True, slots=True)
class AdminRefusalAudit:
    """``policy.admin.audit_refusals``: how refused calls are audited under a flood."""

    __pydantic_config__ = _FORBID

    per_window: Annotated[Int, Field(ge=1)] = DEFAULT_REFUSALS_PER_WINDOW
    window_s: Annotated[Duration, Field(ge=1)] = DEFAULT_REFUSAL_WINDOW_S
    max_rows_per_window: Annotated[Int, Field(ge=1)] = DEFAULT_REFUSAL_ROWS_PER_WINDOW


@dataclass(frozen=True, slots=True)
class AdminSettings:
    """``policy.admin``: how admin callers are identified and where published bundles go."""

    __pydantic_config__ = _FORBID

    listen: HostPort = ""  # TLS admin listener HOST:PORT; "" = admin calls on policy.listen only
    tls: AdminTlsSettings | None = None
    # With a TLS listener, admin calls arriving on the plaintext policy.listen are refused.
    require_tls: Bool = True
    tokens: tuple[AdminToken, ...] = ()
    publish: AdminPublishSettings = field(default_factory=AdminPublishSettings)
    max_bundle_bytes: Annotated[Int, Field(ge=1)] = DEFAULT_MAX_BUNDLE_BYTES
    max_unpacked_bytes: Annotated[Int, Field(ge=1)] = DEFAULT_MAX_UNPACKED_BYTES
    parse_timeout_s: Annotated[Duration, Field(ge=1)] = DEFAULT_PARSE_TIMEOUT_S
    rate_limit: AdminRateLimit = field(default_factory=AdminRateLimit)
    audit_refusals: AdminRefusalAudit = field(default_factory=AdminRefusalAudit)


def parse_admin(node: Node, base: Path) -> AdminSettings:
    """Parse ``policy.admin``; relative file paths resolve against ``base``."""
    f = node.fields(keys(AdminSettings), strict=True)
    given: dict[str, object] = {}
    if "tls" in f and not f["tls"].is_null:
        given["tls"] = parse_tls(f["tls"], base)
    if "tokens" in f:
        given["tokens"] = tuple(parse_token(item) for item in f["tokens"].items())
    if "publish" in f and not f["publish"].is_null:
        given["publish"] = read_record(AdminPublishSettings, f["publish"])
    if "rate_limit" in f and not f["rate_limit"].is_null:
        given["rate_limit"] = read_record(AdminRateLimit, f["rate_limit"])
    if "audit_refusals" in f and not f["audit_refusals"].is_null:
        given["audit_refusals"] = read_record(AdminRefusalAudit, f["audit_refusals"])
    admin = read_record(AdminSettings, node, given=given)
    if admin.listen and admin.tls is None:
        raise node.error("listen needs tls: {cert_file, key_file, client_ca_file}")
    if admin.tls is not None and not admin.listen:
        raise f["tls"].error("tls is used by the TLS admin listener: set policy.admin.listen")
    subjects = [t.subject for t in admin.tokens]
    duplicates = sorted({s for s in subjects if subjects.count(s) > 1})
    if duplicates:
        raise f["tokens"].error(f"subject {duplicates[0]!r} is given twice")
    return admin


def parse_tls(node: Node, base: Path) -> AdminTlsSettings:
    """Parse a ``tls`` mapping (cert_file, key_file, client_ca_file)."""
    f = node.fields(keys(AdminTlsSettings), strict=True)
    if any(key not in f or f[key].is_null for key in ("cert_file", "key_file")):
        raise node.error("needs cert_file and key_file (PEM)")
    return read_record(AdminTlsSettings, node, base=base)


def parse_token(node: Node) -> AdminToken:
    """Parse one hashed token entry (subject, sha256 or bcrypt, expires_at)."""
    f = node.fields((*keys(AdminToken), "token"), strict=True)
    if "token" in f:
        raise f["token"].error(
            "tokens are stored hashed: give sha256 (`policy-sidecar admin hash-token`) or bcrypt"
        )
    if "subject" not in f:
        raise node.error("needs subject: the name the token authenticates as (token:<subject>)")
    if ("sha256" in f) == ("bcrypt" in f):
        raise node.error("give exactly one of sha256 and bcrypt")
    return read_record(AdminToken, node)
