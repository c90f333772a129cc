"""Generates the RSA key pair that signs bundles (private) and that OPA verifies them with."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sidecar.errors import BundleError

__all__ = ["PRIVATE_KEY_NAME", "PUBLIC_KEY_NAME", "generate_keypair"]

PRIVATE_KEY_NAME = "bundle-signing.pem"
PUBLIC_KEY_NAME = "bundle-verification.pem"


def generate_keypair(directory: Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write a new RSA-2048 pair into ``directory``; return (private PEM, public PEM) paths.

    The private key is created with mode 0600 from the start (never world-readable, not even
    briefly). An existing key is kept unless ``overwrite``: silently replacing a signing key
    would make every bundle signed with it unverifiable.
    """
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = directory / PRIVATE_KEY_NAME, directory / PUBLIC_KEY_NAME
    if not overwrite:
        existing = [str(p) for p in (private_path, public_path) if p.exists()]
        if existing:
            raise BundleError(
                "refusing to overwrite existing key files (pass overwrite=True to replace them)",
                tuple(existing),
            )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    _write_private(private_path, private_pem)
    public_path.write_bytes(public_pem)
    return private_path, public_path


def _write_private(path: Path, content: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        # O_CREAT's mode does not apply to a file that already existed (overwrite=True).
        os.fchmod(handle.fileno(), 0o600)
        handle.write(content)
