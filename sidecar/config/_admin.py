"""Parses ``policy.admin``: the PolicyAdmin API's TLS listener, tokens, bundle store and limits."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field

from sidecar.config._model import Duration, NonEmpty, Target, read_record
from sidecar.config._read import Node, resolve_path
from sidecar.config._scalars import expanded

__all__ = [
    "DEFAULT_MAX_BUNDLE_BYTES",
    "DEFAULT_MAX_UNPACKED_BYTES",
    "AdminPublishSettings",
    "AdminSettings",
    "AdminTlsSettings",
    "AdminToken",
    "parse_admin",
]

DEFAULT_MAX_BUNDLE_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_UNPACKED_BYTES = 64 * 1024 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")
_BCRYPT = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")
_SUBJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")


@dataclass(frozen=True, slots=True)
class AdminTlsSettings:
    """``policy.admin.tls``: the listener's certificate and the CA client certificates chain to."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    cert_file: str
    key_file: str
    client_ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class AdminToken:
    """One bearer token, stored hashed: it authenticates as ``token:<subject>``."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    subject: str
    sha256: str | None = None
    bcrypt: str | None = field(default=None, repr=False)
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AdminPublishSettings:
    """``policy.admin.publish``: the store PublishBundle and Rollback write to."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    to: Target = ""  # "" → policy.bundle.service's store, else only the managed OPA
    endpoint_url: NonEmpty | None = None
    region: NonEmpty | None = None
    # the bundle server's upload token
    token: Annotated[NonEmpty, AfterValidator(expanded)] | None = field(default=None, repr=False)
    timeout_s: Annotated[Duration, Field(ge=0.1)] = 60.0


@dataclass(frozen=True, slots=True)
class AdminSettings:
    """``policy.admin``: how admin callers are identified and where published bundles go."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    listen: str = ""  # TLS admin listener HOST:PORT; "" = admin calls on policy.listen only
    tls: AdminTlsSettings | None = None
    # With a TLS listener, admin calls arriving on the plaintext policy.listen are refused.
    require_tls: bool = True
    tokens: tuple[AdminToken, ...] = ()
    publish: AdminPublishSettings = field(default_factory=AdminPublishSettings)
    max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES


def parse_admin(node: Node, base: Path) -> AdminSettings:
    """Parse ``policy.admin``; relative file paths resolve against ``base``."""
    f = node.fields(AdminSettings.__dataclass_fields__, strict=True)
    d = AdminSettings()
    listen = f["listen"].string() if "listen" in f and not f["listen"].is_null else ""
    if listen:
        host, colon, port = listen.rpartition(":")
        if not colon or not host or not port.isdigit() or int(port) > 65535:
            raise f["listen"].error(f"expected HOST:PORT (port 0-65535), got {listen!r}")
    tls = _tls(f["tls"], base) if "tls" in f and not f["tls"].is_null else None
    if listen and tls is None:
        raise node.error("listen needs tls: {cert_file, key_file, client_ca_file}")
    if tls is not None and not listen:
        raise f["tls"].error("tls is used by the TLS admin listener: set policy.admin.listen")
    tokens = tuple(_token(item) for item in f["tokens"].items()) if "tokens" in f else ()
    subjects = [t.subject for t in tokens]
    duplicates = sorted({s for s in subjects if subjects.count(s) > 1})
    if duplicates:
        raise f["tokens"].error(f"subject {duplicates[0]!r} is given twice")
    max_bytes = f["max_bundle_bytes"].integer(minimum=1) if "max_bundle_bytes" in f else None
    unpacked = f["max_unpacked_bytes"].integer(minimum=1) if "max_unpacked_bytes" in f else None
    return AdminSettings(
        listen=listen,
        tls=tls,
        require_tls=f["require_tls"].boolean() if "require_tls" in f else d.require_tls,
        tokens=tokens,
        publish=_publish(f["publish"])
        if "publish" in f and not f["publish"].is_null
        else d.publish,
        max_bundle_bytes=max_bytes or d.max_bundle_bytes,
        max_unpacked_bytes=unpacked or d.max_unpacked_bytes,
    )


def _tls(node: Node, base: Path) -> AdminTlsSettings:
    f = node.fields(AdminTlsSettings.__dataclass_fields__, strict=True)

    def path(key: str) -> str | None:
        given = f.get(key)
        if given is None or given.is_null:
            return None
        resolved = resolve_path(given.string(allow_empty=False), base)
        if not Path(resolved).is_file():
            raise given.error(f"{resolved} does not exist")
        return resolved

    cert, key = path("cert_file"), path("key_file")
    if cert is None or key is None:
        raise node.error("needs cert_file and key_file (PEM)")
    return AdminTlsSettings(cert, key, path("client_ca_file"))


def _token(node: Node) -> AdminToken:
    f = node.fields(("subject", "sha256", "bcrypt", "expires_at", "token"), strict=True)
    if "token" in f:
        raise f["token"].error(
            "tokens are stored hashed: give sha256 (`policy-sidecar admin hash-token`) or bcrypt"
        )
    if "subject" not in f:
        raise node.error("needs subject: the name the token authenticates as (token:<subject>)")
    subject = f["subject"].string(allow_empty=False)
    if not _SUBJECT.fullmatch(subject):
        raise f["subject"].error("use letters, digits and . _ @ - (at most 128)")
    sha, crypt = f.get("sha256"), f.get("bcrypt")
    if (sha is None) == (crypt is None):
        raise node.error("give exactly one of sha256 and bcrypt")
    sha256 = sha.string().lower().removeprefix("sha256:") if sha is not None else None
    if sha is not None and not _SHA256.fullmatch(sha256 or ""):
        raise sha.error("expected 64 hex digits (the SHA-256 of the token)")
    bcrypt = crypt.string() if crypt is not None else None
    if crypt is not None and not _BCRYPT.fullmatch(bcrypt or ""):
        raise crypt.error("expected a bcrypt hash ($2b$12$…)")
    return AdminToken(subject, sha256, bcrypt, _expiry(f.get("expires_at")))


def _expiry(node: Node | None) -> datetime | None:
    if node is None or node.is_null:
        return None
    value = node.value
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(node.string(allow_empty=False).replace("Z", "+00:00"))
        except ValueError:
            raise node.error("expected an RFC 3339 time, e.g. 2027-01-01T00:00:00Z") from None
    if moment.tzinfo is None:
        raise node.error("needs a time zone (e.g. a trailing Z)")
    return moment.astimezone(UTC)


def _publish(node: Node) -> AdminPublishSettings:
    return read_record(AdminPublishSettings, node)
