"""The key-encryption keys of sensitive policy data: an AWS KMS key, or a local 256-bit key file.

Both implement :class:`sidecar.typing.KeyEncryptionKey`. A key file holds 32 random bytes in
base64 on one line (``policy-sidecar data keygen``); its envelope header names it by a
fingerprint, never by the key. A KMS key is named by its ARN; data keys come from KMS
``GenerateDataKey`` and are unwrapped with ``Decrypt`` pinned to the configured key, with an
encryption context that binds them to this use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sidecar.errors import KeyServiceUnavailable, SensitiveDataError

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

__all__ = ["FileKey", "KmsKey", "generate_key_file"]

_T = TypeVar("_T")

_KEY_BYTES = 32
_NONCE_BYTES = 12
_WRAP_AAD = b"policy-sidecar sensitive-data data-key v1"
_CONTEXT = {"policy-sidecar": "sensitive-data/v1"}
# KMS answers these when the key or the request is wrong; anything else is the service's problem.
_KEY_PROBLEMS = {
    "NotFoundException": "does not exist (or not in this region/account)",
    "DisabledException": "is disabled",
    "KMSInvalidStateException": "is not usable in its current state (pending deletion?)",
    "AccessDeniedException": "refused the request: wrong key for this file, or no kms:Decrypt",
    "IncorrectKeyException": "is not the key this file was encrypted with",
    "InvalidCiphertextException": "cannot decrypt the wrapped data key: the file is tampered",
    "InvalidKeyUsageException": "cannot encrypt/decrypt (not a symmetric ENCRYPT_DECRYPT key)",
    "UnrecognizedClientException": "rejected the AWS credentials",
    "InvalidSignatureException": "rejected the AWS request signature (credentials)",
}


def _fingerprint(key: bytes) -> str:
    # A domain-separated hash: names the key in headers and errors without revealing it.
    return "sha256:" + hashlib.sha256(b"policy-sidecar kek\0" + key).hexdigest()[:32]


def generate_key_file(path: Path) -> str:
    """Write a new random key file (mode 0600, never over an existing file); return its fingerprint."""
    key = os.urandom(_KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(base64.b64encode(key).decode() + "\n")
    return _fingerprint(key)


class FileKey:
    """A 256-bit key read from a local file; wraps data keys with AES-256-GCM."""

    def __init__(self, path: Path) -> None:
        where = str(path)
        try:
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SensitiveDataError(where, f"cannot read the key file: {exc}") from None
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != _KEY_BYTES:
            raise SensitiveDataError(
                where,
                "a key file holds 32 random bytes in base64 on one line "
                "(make one with `policy-sidecar data keygen`)",
            )
        self._key = key
        self.fingerprint = _fingerprint(key)

    def __repr__(self) -> str:
        return f"FileKey({self.fingerprint})"

    def descriptor(self) -> dict[str, str]:
        """Return ``{"type": "key-file", "fingerprint": …}``."""
        return {"type": "key-file", "fingerprint": self.fingerprint}

    def new_data_key(self) -> tuple[bytes, bytes]:
        """Return a random data key and ``nonce || AES-GCM(key, data key)``."""
        data_key = os.urandom(_KEY_BYTES)
        nonce = os.urandom(_NONCE_BYTES)
        return data_key, nonce + AESGCM(self._key).encrypt(nonce, data_key, _WRAP_AAD)

    def unwrap(self, wrapped: bytes, descriptor: Mapping[str, str]) -> bytes:
        """Return the data key; SensitiveDataError for another key or a tampered wrapped key."""
        if descriptor.get("type") != "key-file":
            raise SensitiveDataError(
                "kek",
                f"wrong key: encrypted with {_describe(descriptor)}, but a key file is configured",
            )
        if descriptor.get("fingerprint") != self.fingerprint:
            raise SensitiveDataError(
                "kek",
                f"wrong key: encrypted with key file {descriptor.get('fingerprint')}, "
                f"the configured key file is {self.fingerprint}",
            )
        try:
            return AESGCM(self._key).decrypt(
                wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], _WRAP_AAD
            )
        except (InvalidTag, ValueError):
            raise SensitiveDataError(
                "kek", "tampered: the wrapped data key fails authentication"
            ) from None


class KmsKey:
    """A symmetric AWS KMS key (id, ARN or alias); talks to KMS through boto3."""

    def __init__(
        self,
        key_id: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        # Loaded here, not at import: boto3 takes a second and tens of MiB, and only a KMS key
        # needs it.
        import boto3  # noqa: PLC0415
        import botocore.config  # noqa: PLC0415

        self.key_id = key_id
        self._endpoint = endpoint_url or "AWS KMS"
        self._client: KMSClient = boto3.client(
            "kms",
            region_name=region,
            endpoint_url=endpoint_url,
            config=botocore.config.Config(
                connect_timeout=timeout_s,
                read_timeout=timeout_s,
                retries={"max_attempts": 2, "mode": "standard"},
            ),
        )
        self._arn: str | None = None

    def __repr__(self) -> str:
        return f"KmsKey({self.key_id!r})"

    def _call(self, what: str, call: Callable[[], _T]) -> _T:
        import botocore.exceptions  # noqa: PLC0415 - loaded with the client (see __init__)

        try:
            return call()
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            problem = _KEY_PROBLEMS.get(code)
            if problem is None:
                raise KeyServiceUnavailable(
                    f"{self._endpoint}: {what} with KMS key {self.key_id!r} failed: {exc}"
                ) from None
            raise SensitiveDataError("kek", f"KMS key {self.key_id!r} {problem} ({code})") from None
        except botocore.exceptions.NoCredentialsError:
            raise SensitiveDataError(
                "kek", "no AWS credentials for KMS (environment, profile or instance role)"
            ) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise KeyServiceUnavailable(
                f"{self._endpoint}: {what} with KMS key {self.key_id!r} failed: {exc}"
            ) from None

    def arn(self) -> str:
        """Return the key's ARN (DescribeKey), checking it is enabled and symmetric."""
        if self._arn is None:
            meta = self._call("DescribeKey", lambda: self._client.describe_key(KeyId=self.key_id))[
                "KeyMetadata"
            ]
            state = meta.get("KeyState", "Enabled")
            if state != "Enabled":
                raise SensitiveDataError("kek", f"KMS key {self.key_id!r} is {state}, not Enabled")
            self._arn = meta["Arn"]
        return self._arn

    def descriptor(self) -> dict[str, str]:
        """Return ``{"type": "aws-kms", "key_id": <ARN>}``."""
        return {"type": "aws-kms", "key_id": self.arn()}

    def new_data_key(self) -> tuple[bytes, bytes]:
        """Return a data key from KMS GenerateDataKey and its KMS ciphertext."""
        answer = self._call(
            "GenerateDataKey",
            lambda: self._client.generate_data_key(
                KeyId=self.arn(), KeySpec="AES_256", EncryptionContext=_CONTEXT
            ),
        )
        return answer["Plaintext"], answer["CiphertextBlob"]

    def unwrap(self, wrapped: bytes, descriptor: Mapping[str, str]) -> bytes:
        """Return the data key from KMS Decrypt; SensitiveDataError for another key or tampering."""
        if descriptor.get("type") != "aws-kms":
            raise SensitiveDataError(
                "kek",
                f"wrong key: encrypted with {_describe(descriptor)}, but a KMS key is configured",
            )
        arn = self.arn()
        if descriptor.get("key_id") != arn:
            raise SensitiveDataError(
                "kek",
                f"wrong key: encrypted with KMS key {descriptor.get('key_id')}, "
                f"the configured key {self.key_id!r} is {arn}",
            )
        answer = self._call(
            "Decrypt",
            lambda: self._client.decrypt(
                CiphertextBlob=wrapped, KeyId=arn, EncryptionContext=_CONTEXT
            ),
        )
        return answer["Plaintext"]


def _describe(descriptor: Mapping[str, str]) -> str:
    kind = descriptor.get("type", "?")
    if kind == "aws-kms":
        return f"KMS key {descriptor.get('key_id')}"
    if kind == "key-file":
        return f"key file {descriptor.get('fingerprint')}"
    return f"an unknown key type {kind!r}"
