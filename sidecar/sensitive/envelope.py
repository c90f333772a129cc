"""Envelope encryption of one JSON document: a fresh AES-256-GCM data key, wrapped by a KEK.

The file is JSON, safe to keep in git or a bucket::

    {"format": "policy-sidecar.sensitive-data/v2",
     "document": "customers",                                   # its name in policy.sensitive_data
     "sealed_at": "2026-12-06T05:00:00Z",
     "kek": {"type": "aws-kms", "key_id": "arn:aws:kms:…"}      # or {"type": "key-file",
                                                                #     "fingerprint": "…"}
     "encrypted_key": "<base64>", "nonce": "<base64>", "ciphertext": "<base64>"}

The header (format, document name, sealing time and kek) is the additional authenticated data of
the document's ciphertext, so editing it — to pretend another key, say — fails authentication like
any other tampering. Opening takes the name the *caller* expects and puts that, not the file's
claim, into the associated data: a file sealed for document ``a`` cannot be served as document
``b`` (a swap), whatever its header says.

Version 1 files (no document name in the associated data) are refused, with a message to
re-encrypt them: accepting them would let an attacker who can write the files defeat the name
binding by simply serving old-format files (a downgrade).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sidecar.errors import SensitiveDataError
from sidecar.typing import KeyEncryptionKey

__all__ = ["FORMAT", "Envelope", "open_envelope", "seal"]

FORMAT = "policy-sidecar.sensitive-data/v2"
_V1 = "policy-sidecar.sensitive-data/v1"
_NONCE_BYTES = 12
_FIELDS = ("format", "document", "sealed_at", "kek", "encrypted_key", "nonce", "ciphertext")
_BINARY = _FIELDS[4:]


def _header(document: str, sealed_at: str, kek: Mapping[str, str]) -> bytes:
    header = {"format": FORMAT, "document": document, "sealed_at": sealed_at, "kek": dict(kek)}
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Envelope:
    """One encrypted document: its name, when it was sealed, which key wrapped its data key, the
    wrapped key, the ciphertext. ``document`` and ``sealed_at`` are authenticated, not secret."""

    document: str
    sealed_at: str
    kek: Mapping[str, str]
    encrypted_key: bytes
    nonce: bytes
    ciphertext: bytes

    def to_bytes(self) -> bytes:
        """Return the file form (JSON, one trailing newline)."""
        doc = {
            "format": FORMAT,
            "document": self.document,
            "sealed_at": self.sealed_at,
            "kek": dict(self.kek),
            "encrypted_key": base64.b64encode(self.encrypted_key).decode(),
            "nonce": base64.b64encode(self.nonce).decode(),
            "ciphertext": base64.b64encode(self.ciphertext).decode(),
        }
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def parse(cls, raw: bytes, where: str) -> Envelope:
        """Read the file form; SensitiveDataError naming ``where`` when it is not an envelope."""
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise SensitiveDataError(where, "not an encrypted data file (not JSON)") from None
        if isinstance(doc, dict) and doc.get("format") == _V1:
            raise SensitiveDataError(
                where,
                f"format {_V1!r} is no longer accepted: it does not bind the document name, so "
                "files could be swapped; re-encrypt it from the source with "
                "`policy-sidecar data encrypt --name NAME` (format {FORMAT!r})",
            )
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            found = doc.get("format") if isinstance(doc, dict) else None
            raise SensitiveDataError(
                where,
                f"not an encrypted data file (format {found!r}, expected {FORMAT!r}); "
                "encrypt it with `policy-sidecar data encrypt`",
            )
        missing = [k for k in _FIELDS if k not in doc]
        if missing:
            raise SensitiveDataError(where, f"encrypted data file lacks {', '.join(missing)}")
        kek = doc["kek"]
        if not isinstance(kek, dict) or not all(isinstance(v, str) for v in kek.values()):
            raise SensitiveDataError(where, "kek must be an object of strings")
        if not isinstance(doc["document"], str) or not isinstance(doc["sealed_at"], str):
            raise SensitiveDataError(where, "document and sealed_at must be strings")
        try:
            parts = [base64.b64decode(doc[k], validate=True) for k in _BINARY]
        except (binascii.Error, TypeError, ValueError):
            raise SensitiveDataError(
                where, "encrypted_key, nonce or ciphertext is not base64"
            ) from None
        return cls(doc["document"], doc["sealed_at"], kek, parts[0], parts[1], parts[2])


def seal(document: Any, kek: KeyEncryptionKey, name: str) -> Envelope:
    """Encrypt a JSON-serialisable ``document`` under a fresh data key wrapped by ``kek``, bound
    to ``name`` (its key in ``policy.sensitive_data.documents``) and to the time of sealing."""
    plaintext = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    data_key, wrapped = kek.new_data_key()
    descriptor = kek.descriptor()
    nonce = os.urandom(_NONCE_BYTES)
    sealed_at = f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"
    aad = _header(name, sealed_at, descriptor)
    ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, aad)
    return Envelope(name, sealed_at, descriptor, wrapped, nonce, ciphertext)


def open_envelope(
    envelope: Envelope, kek: KeyEncryptionKey, where: str, *, name: str | None = None
) -> Any:
    """Decrypt ``envelope`` with ``kek`` as document ``name``; SensitiveDataError for a wrong
    key, tampering, or a file sealed for another document. ``name=None`` (only ``data check``
    without a name) accepts the name the file was sealed for — still authenticated."""
    expected = envelope.document if name is None else name
    if envelope.document != expected:
        raise SensitiveDataError(
            where,
            f"swapped: this file was encrypted for document {envelope.document!r}, "
            f"not {expected!r}; point policy.sensitive_data.documents.{expected} at its own "
            f"file or re-encrypt it with `policy-sidecar data encrypt --name {expected}`",
        )
    try:
        data_key = kek.unwrap(envelope.encrypted_key, envelope.kek)
    except SensitiveDataError as exc:
        raise SensitiveDataError(where, exc.problem) from None
    if len(envelope.nonce) != _NONCE_BYTES:
        raise SensitiveDataError(where, "tampered: the nonce is not 12 bytes")
    try:
        plaintext = AESGCM(data_key).decrypt(
            envelope.nonce,
            envelope.ciphertext,
            _header(expected, envelope.sealed_at, envelope.kek),
        )
    except (InvalidTag, ValueError):
        raise SensitiveDataError(
            where,
            "tampered: the ciphertext or its header fails authentication (AES-GCM); "
            "re-encrypt it from the source",
        ) from None
    try:
        return json.loads(plaintext)
    except ValueError:
        raise SensitiveDataError(where, "decrypted content is not JSON") from None
