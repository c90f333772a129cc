"""Envelope encryption of one JSON document: a fresh AES-256-GCM data key, wrapped by a KEK.

The file is JSON, safe to keep in git or a bucket::

    {"format": "policy-sidecar.sensitive-data/v1",
     "kek": {"type": "aws-kms", "key_id": "arn:aws:kms:…"}      # or {"type": "key-file",
                                                                #     "fingerprint": "…"}
     "encrypted_key": "<base64>", "nonce": "<base64>", "ciphertext": "<base64>"}

The header (format and kek) is the additional authenticated data of the document's ciphertext,
so editing it — to pretend another key, say — fails authentication like any other tampering.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sidecar.errors import SensitiveDataError
from sidecar.typing import KeyEncryptionKey

__all__ = ["FORMAT", "Envelope", "open_envelope", "seal"]

FORMAT = "policy-sidecar.sensitive-data/v1"
_NONCE_BYTES = 12
_FIELDS = ("format", "kek", "encrypted_key", "nonce", "ciphertext")


def _header(kek: Mapping[str, str]) -> bytes:
    return json.dumps({"format": FORMAT, "kek": dict(kek)}, sort_keys=True).encode()


@dataclass(frozen=True, slots=True)
class Envelope:
    """One encrypted document: which key wrapped its data key, the wrapped key, the ciphertext."""

    kek: Mapping[str, str]
    encrypted_key: bytes
    nonce: bytes
    ciphertext: bytes

    def to_bytes(self) -> bytes:
        """Return the file form (JSON, one trailing newline)."""
        doc = {
            "format": FORMAT,
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
        try:
            parts = [base64.b64decode(doc[k], validate=True) for k in _FIELDS[2:]]
        except (binascii.Error, TypeError, ValueError):
            raise SensitiveDataError(
                where, "encrypted_key, nonce or ciphertext is not base64"
            ) from None
        return cls(kek, parts[0], parts[1], parts[2])


def seal(document: Any, kek: KeyEncryptionKey) -> Envelope:
    """Encrypt a JSON-serialisable ``document`` under a fresh data key wrapped by ``kek``."""
    plaintext = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    data_key, wrapped = kek.new_data_key()
    descriptor = kek.descriptor()
    nonce = os.urandom(_NONCE_BYTES)
    ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, _header(descriptor))
    return Envelope(descriptor, wrapped, nonce, ciphertext)


def open_envelope(envelope: Envelope, kek: KeyEncryptionKey, where: str) -> Any:
    """Decrypt ``envelope`` with ``kek``; SensitiveDataError for a wrong key or tampering."""
    try:
        data_key = kek.unwrap(envelope.encrypted_key, envelope.kek)
    except SensitiveDataError as exc:
        raise SensitiveDataError(where, exc.problem) from None
    if len(envelope.nonce) != _NONCE_BYTES:
        raise SensitiveDataError(where, "tampered: the nonce is not 12 bytes")
    try:
        plaintext = AESGCM(data_key).decrypt(
            envelope.nonce, envelope.ciphertext, _header(envelope.kek)
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
