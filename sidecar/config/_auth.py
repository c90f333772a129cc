"""Parses ``policy.auth``: how PolicyService callers are identified (mTLS, tokens, a unix socket).

Without ``policy.auth`` the data plane trusts its callers, which is only safe on loopback: a
non-loopback ``policy.listen`` is then refused unless ``policy.allow_unauthenticated_listen``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field

from sidecar.config._admin import (
    DEFAULT_RATE_LIMIT_IDENTITIES,
    AdminTlsSettings,
    AdminToken,
    parse_tls,
    parse_token,
    subject_name,
)
from sidecar.config._model import HostPort, Int, NonEmpty, Number, keys, read_record
from sidecar.config._read import Node

__all__ = [
    "DEFAULT_FAILED_AUTH_BURST",
    "DEFAULT_FAILED_AUTH_RATE",
    "AuthFailureLimit",
    "AuthRateLimit",
    "AuthSettings",
    "AuthUnixSettings",
    "is_loopback",
    "parse_auth",
]

_FORBID = ConfigDict(extra="forbid")
_MODES = {"0600": 0o600, "0660": 0o660}


def _mode(value: object) -> str:
    text = (
        f"{value:o}".zfill(4)
        if isinstance(value, int) and not isinstance(value, bool)
        else str(value)
    )
    if text not in _MODES:
        raise ValueError(f"expected one of {sorted(_MODES)} (owner only, or owner and group)")
    return text


def _socket_path(text: str) -> str:
    path = text.removeprefix("unix:")
    if not path or len(path.encode()) > 100:  # sun_path is 108 bytes, NUL included
        raise ValueError("expected a socket path of at most 100 bytes")
    return path


@dataclass(frozen=True, slots=True)
class AuthUnixSettings:
    """``policy.auth.unix``: a unix-socket listener whose callers all are ``subject``."""

    __pydantic_config__ = _FORBID

    path: Annotated[NonEmpty, AfterValidator(_socket_path)]
    subject: subject_name  # calls on the socket authenticate as unix:<subject>
    mode: Annotated[
        str, BeforeValidator(_mode, json_schema_input_type=cast(Any, Literal)["0600", "0660"])
    ] = "0600"

    @property
    def file_mode(self) -> int:
        """Return the socket file's permission bits."""
        return _MODES[self.mode]


# A peer may fail authentication 20 times at once, then once a second: enough for a client whose
# token was rotated to notice, too little for a guessing flood to keep the bcrypt pool busy.
DEFAULT_FAILED_AUTH_RATE = 1.0
DEFAULT_FAILED_AUTH_BURST = 20


@dataclass(frozen=True, slots=True)
class AuthFailureLimit:
    """``policy.auth.failed_auth_limit``: failed authentications allowed per peer address."""

    __pydantic_config__ = _FORBID

    rate: Annotated[Number, Field(gt=0)] = DEFAULT_FAILED_AUTH_RATE  # failures per second
    burst: Annotated[Int, Field(ge=1)] = DEFAULT_FAILED_AUTH_BURST  # failures at once
    max_identities: Annotated[Int, Field(ge=1)] = DEFAULT_RATE_LIMIT_IDENTITIES  # peers kept


@dataclass(frozen=True, slots=True)
class AuthRateLimit:
    """``policy.auth.rate_limit``: calls per authenticated identity (absent: no limit)."""

    __pydantic_config__ = _FORBID

    rate: Annotated[Number, Field(gt=0)]  # calls per second, sustained
    burst: Annotated[Int, Field(ge=1)]  # calls at once after a quiet spell
    max_identities: Annotated[Int, Field(ge=1)] = DEFAULT_RATE_LIMIT_IDENTITIES


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """``policy.auth``: PolicyService callers are authenticated and authorised by system.authz."""

    __pydantic_config__ = _FORBID

    listen: HostPort = ""  # the mTLS listener HOST:PORT ("" = none)
    tls: AdminTlsSettings | None = None  # client_ca_file required: client certificates are
    tokens: tuple[AdminToken, ...] = ()
    unix: AuthUnixSettings | None = None
    # A peer over this many failed authentications is refused before its credentials are checked.
    failed_auth_limit: AuthFailureLimit = AuthFailureLimit()
    # Per authenticated identity (e.g. one tenant's CI) so no caller crowds out the others.
    rate_limit: AuthRateLimit | None = None


def parse_auth(node: Node, base: Path) -> AuthSettings | None:
    """Parse ``policy.auth`` (None when absent or null); relative paths resolve against ``base``."""
    if node.is_null:
        return None
    f = node.fields(keys(AuthSettings), strict=True)
    given: dict[str, object] = {}
    if "tls" in f and not f["tls"].is_null:
        tls = parse_tls(f["tls"], base)
        if tls.client_ca_file is None:
            raise f["tls"].error("needs client_ca_file: the data plane's TLS listener is mTLS")
        given["tls"] = tls
    if "tokens" in f:
        given["tokens"] = tuple(parse_token(item) for item in f["tokens"].items())
    if "unix" in f and not f["unix"].is_null:
        unix = read_record(AuthUnixSettings, f["unix"])
        path = Path(unix.path)
        given["unix"] = AuthUnixSettings(
            str(path if path.is_absolute() else base / path), unix.subject, unix.mode
        )
    if "failed_auth_limit" in f and not f["failed_auth_limit"].is_null:
        given["failed_auth_limit"] = read_record(AuthFailureLimit, f["failed_auth_limit"])
    if "rate_limit" in f and not f["rate_limit"].is_null:
        given["rate_limit"] = read_record(AuthRateLimit, f["rate_limit"])
    auth = read_record(AuthSettings, node, given=given)
    if auth.listen and auth.tls is None:
        raise node.error("listen needs tls: {cert_file, key_file, client_ca_file}")
    if auth.tls is not None and not auth.listen:
        raise f["tls"].error("tls is used by the mTLS listener: set policy.auth.listen")
    if not (auth.listen or auth.tokens or auth.unix):
        raise node.error("identifies nobody: give listen + tls, tokens, or unix")
    subjects = [t.subject for t in auth.tokens]
    duplicates = sorted({s for s in subjects if subjects.count(s) > 1})
    if duplicates:
        raise f["tokens"].error(f"subject {duplicates[0]!r} is given twice")
    return auth


def is_loopback(listen: str) -> bool:
    """Whether ``HOST:PORT`` binds loopback only (127.0.0.0/8, ::1 or localhost)."""
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
