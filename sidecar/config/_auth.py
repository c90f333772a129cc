"""Parses ``policy.auth``: how PolicyService callers are identified (mTLS, tokens, a unix socket).

Without ``policy.auth`` the data plane trusts its callers, which is only safe on loopback: a
non-loopback ``policy.listen`` is then refused unless ``policy.allow_unauthenticated_listen``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import AfterValidator, BeforeValidator, ConfigDict

from sidecar.config._admin import AdminTlsSettings, AdminToken, parse_tls, parse_token, subject_name
from sidecar.config._model import HostPort, NonEmpty, keys, read_record
from sidecar.config._read import Node

__all__ = ["AuthSettings", "AuthUnixSettings", "is_loopback", "parse_auth"]

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


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """``policy.auth``: PolicyService callers are authenticated and authorised by system.authz."""

    __pydantic_config__ = _FORBID

    listen: HostPort = ""  # the mTLS listener HOST:PORT ("" = none)
    tls: AdminTlsSettings | None = None  # client_ca_file required: client certificates are
    tokens: tuple[AdminToken, ...] = ()
    unix: AuthUnixSettings | None = None


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
