"""Decrypts the configured sensitive documents into one in-memory tree for ``data.sensitive``.

The plaintext lives only in the returned :class:`SensitiveData` (its ``repr`` shows names and a
digest of the *ciphertext*, never content), is sent only to OPA's Data API, and its string values
are what decision records mask. Every failure is a ConfigError naming the config key and the
problem (wrong key, tampered file, a file encrypted for another document, missing KMS key…), so
``serve`` exits with status 2 before anything serves; an unreachable KMS is KeyServiceUnavailable
instead (exit 1: retry later).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sidecar.config import SENSITIVE_ROOT, SensitiveDataSettings
from sidecar.errors import ConfigError, SensitiveDataError
from sidecar.sensitive.envelope import Envelope, open_envelope
from sidecar.sensitive.keys import FileKey, KmsKey
from sidecar.typing import KeyEncryptionKey

__all__ = ["SENSITIVE_ROOT", "SensitiveData", "configured_key", "load_sensitive_data"]

_KEY = "policy.sensitive_data"


@dataclass(frozen=True, slots=True, repr=False)
class SensitiveData:
    """Decrypted documents: the Data API body for ``data.sensitive`` and its string values."""

    names: tuple[str, ...]
    digest: str
    body: bytes
    secrets: frozenset[str]

    def __repr__(self) -> str:
        return f"SensitiveData(names={list(self.names)}, digest={self.digest!r})"

    def document(self) -> dict[str, Any]:
        """Return the ``data.sensitive`` document (a fresh copy: callers may keep it)."""
        doc: dict[str, Any] = json.loads(self.body)
        return doc

    @property
    def roots(self) -> frozenset[str]:
        """The top-level keys of ``data.sensitive`` (document names, not secrets)."""
        return frozenset(name.split("/", 1)[0] for name in self.names)


def configured_key(settings: SensitiveDataSettings) -> KeyEncryptionKey:
    """Return the key of ``policy.sensitive_data`` (KMS or key file), checked to be usable."""
    if settings.key_file is not None:
        try:
            return FileKey(Path(settings.key_file))
        except SensitiveDataError as exc:
            raise ConfigError(f"{_KEY}.key_file", exc.problem, settings.source) from None
    if settings.kms_key_id is None:
        raise ConfigError(_KEY, "set key_file or kms_key_id", settings.source)
    key = KmsKey(
        settings.kms_key_id, region=settings.kms_region, endpoint_url=settings.kms_endpoint_url
    )
    try:
        key.descriptor()  # DescribeKey: a missing or disabled key is named here, not per file
    except SensitiveDataError as exc:
        raise ConfigError(f"{_KEY}.kms_key_id", exc.problem, settings.source) from None
    return key


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if value:
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _place(tree: dict[str, Any], name: str, value: Any) -> None:
    *parents, leaf = name.split("/")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _check_not_before(
    sealed_at: str, settings: SensitiveDataSettings, where: str, name: str, path: str
) -> None:
    """Refuse a file sealed before ``not_before`` (checked after opening: then it is authentic)."""
    floor = settings.not_before
    if floor is None:
        return
    try:
        sealed = datetime.fromisoformat(sealed_at.replace("Z", "+00:00"))
    except ValueError:
        sealed = None
    if sealed is None or sealed.tzinfo is None or sealed < floor:
        raise ConfigError(
            where,
            f"{path}: sealed at {sealed_at}, before policy.sensitive_data.not_before "
            f"{floor:%Y-%m-%dT%H:%M:%SZ}: an older copy put back (rollback)? re-encrypt the "
            f"current version with `policy-sidecar data encrypt --name {name}`",
            settings.source,
        )


def load_sensitive_data(settings: SensitiveDataSettings) -> SensitiveData | None:
    """Decrypt every configured document (blocking: KMS calls); None when none is configured."""
    if not settings.enabled:
        return None
    key = configured_key(settings)
    tree: dict[str, Any] = {}
    secrets: set[str] = set()
    digest = hashlib.sha256()
    for name, path in sorted(settings.documents.items()):
        where = f"{_KEY}.documents.{name}"
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(where, f"cannot read {path}: {exc}", settings.source) from None
        try:
            envelope = Envelope.parse(raw, path)
            value = open_envelope(envelope, key, path, name=name)
        except SensitiveDataError as exc:
            raise ConfigError(where, f"{path}: {exc.problem}", settings.source) from None
        _check_not_before(envelope.sealed_at, settings, where, name, path)
        digest.update(f"{name}\0".encode() + hashlib.sha256(raw).digest())
        _place(tree, name, value)
        secrets.update(_strings(value))
    return SensitiveData(
        names=tuple(sorted(settings.documents)),
        digest="sha256:" + digest.hexdigest()[:16],
        body=json.dumps(tree, sort_keys=True, separators=(",", ":")).encode(),
        secrets=frozenset(secrets),
    )
