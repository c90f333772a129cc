"""What a secret may hold, read into a registry's ``(username, password)``.

Accepted (docs/configuration.md, "Registry credentials from a secret manager"):

* JSON ``{"username": …, "password": …}``;
* JSON ``{"token": …}`` (with an optional ``"username"``, else ``auth.username``, else ``oauth2``);
* a Docker config (``~/.docker/config.json``): ``{"auths": {"HOST": {"auth": base64(user:pass)}}}``
  or ``{"username", "password"}`` per host, the entry of the registry's host is used;
* JSON keyed by registry name, each value one of the above (one secret for several registries);
* plain text: the password (or token) of ``auth.username`` (``oauth2`` for ``auth.type: token``).

Problems are ValueErrors whose text never quotes the secret: only its shape (keys, sizes).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["MAX_SECRET_BYTES", "PayloadOwner", "credentials_from"]

# AWS Secrets Manager and GCP Secret Manager both cap a secret at 64 KiB.
MAX_SECRET_BYTES = 64 * 1024
_DOCKER_HUB = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


@dataclass(frozen=True, slots=True)
class PayloadOwner:
    """The registry a secret is read for: what picks its entry and fills a missing username."""

    name: str
    host: str
    username: str = ""
    token_type: bool = False


def _host_of(key: str) -> str:
    text = key.strip().lower()
    if "://" in text:
        text = text.split("://", 1)[1]
    host = text.split("/", 1)[0]
    return "docker.io" if host in _DOCKER_HUB else host


def _text(doc: Mapping[str, object], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f'"{key}" must be a non-empty string')
    return value


def _docker_entry(auths: object, owner: PayloadOwner) -> tuple[str, str]:
    if not isinstance(auths, dict):
        raise ValueError('"auths" must be an object of registry host → credentials')
    wanted = _host_of(owner.host)
    entry = next((v for k, v in auths.items() if _host_of(str(k)) == wanted), None)
    if entry is None:
        hosts = ", ".join(sorted(str(k) for k in auths)) or "none"
        raise ValueError(f'"auths" has no entry for {owner.host} (hosts: {hosts})')
    if not isinstance(entry, dict):
        raise ValueError(f'"auths" entry for {owner.host} must be an object')
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(_text(entry, "auth"), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError(f'"auths" entry for {owner.host}: "auth" is not base64') from None
        user, colon, password = decoded.partition(":")
        if not colon or not user or not password:
            raise ValueError(f'"auths" entry for {owner.host}: "auth" is not base64(user:password)')
        return user, password
    if "identitytoken" in entry or "registrytoken" in entry:
        raise ValueError(
            f'"auths" entry for {owner.host}: identity/registry tokens are not supported '
            '(store "auth" or "username" and "password")'
        )
    return _text(entry, "username"), _text(entry, "password")


def _from_object(
    doc: Mapping[str, object], owner: PayloadOwner, *, nested: bool
) -> tuple[str, str]:
    if "auths" in doc:
        return _docker_entry(doc["auths"], owner)
    if "token" in doc:
        username = doc.get("username") or owner.username or "oauth2"
        if not isinstance(username, str):
            raise ValueError('"username" must be a string')
        return username, _text(doc, "token")
    if "password" in doc:
        if "username" not in doc and owner.username:
            return owner.username, _text(doc, "password")
        return _text(doc, "username"), _text(doc, "password")
    inner = doc.get(owner.name)
    if not nested and isinstance(inner, dict):
        return _from_object(inner, owner, nested=True)
    keys = ", ".join(sorted(str(k) for k in doc)[:20]) or "none"
    where = f" under {owner.name!r}" if nested else ""
    raise ValueError(
        f'JSON{where} has no "username"/"password", "token", "auths" nor an entry named '
        f"{owner.name!r} (keys: {keys})"
    )


def credentials_from(payload: bytes, owner: PayloadOwner) -> tuple[str, str]:
    """Return the ``(username, password)`` ``payload`` holds for ``owner``; ValueError if none."""
    if len(payload) > MAX_SECRET_BYTES:
        raise ValueError(f"is {len(payload)} bytes, more than the {MAX_SECRET_BYTES} allowed")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError("is not UTF-8 text") from None
    if not text:
        raise ValueError("is empty")
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            # The position only: the decoder's own message could quote the text around it.
            raise ValueError(f"is not valid JSON (line {exc.lineno}, column {exc.colno})") from None
        if not isinstance(doc, dict):
            raise ValueError("JSON must be an object")
        return _from_object(doc, owner, nested=False)
    if "\n" in text or "\r" in text:
        raise ValueError("plain text holds several lines (expected one password or token)")
    if owner.username:
        return owner.username, text
    if owner.token_type:
        return "oauth2", text
    raise ValueError(
        "is plain text (a password) but the registry sets no auth.username "
        '(store JSON {"username": …, "password": …} instead)'
    )
