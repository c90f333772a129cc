"""Helpers for PolicyAdmin tests: configs with tokens and role bindings, bundles, real TLS material."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sidecar._proto import policy_pb2_grpc as pb_grpc
from sidecar.app.bundle import build_local_bundle
from sidecar.config import Config, load_config
from sidecar.config._admin import AdminToken
from tests.support.sidecar import isolated_config

__all__ = [
    "CASES_CONFIG",
    "ROLES",
    "TlsMaterial",
    "admin_config",
    "admin_stub",
    "bearer",
    "build_bundle_bytes",
    "tls_material",
    "write_data",
]

ROOT = Path(__file__).resolve().parents[2]
CASES_CONFIG = ROOT / "tests" / "cases" / "sidecar.yaml"
# One token per role; each authenticates as token:<role> and is bound to that role.
ROLES = ("viewer", "policy-author", "policy-admin", "tenant-admin")
TENANT = "acme"


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Return gRPC metadata carrying ``token`` as a bearer token."""
    return (("authorization", f"Bearer {token}"),)


def admin_stub(channel: grpc.aio.Channel) -> pb_grpc.PolicyAdminStub:
    """Return a PolicyAdmin stub on ``channel``."""
    return pb_grpc.PolicyAdminStub(channel)


def write_data(root: Path, data_path: str, value: Any) -> Path:
    """Write ``value`` as ``root/<data_path>/data.json`` (a bundle data directory); return root."""
    target = root / data_path / "data.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(value), encoding="utf-8")
    return root


def admin_config(
    state_dir: Path,
    *,
    bindings: Mapping[str, Any] | None = None,
    tokens: Mapping[str, str] | None = None,
    expired: frozenset[str] = frozenset(),
    base: Path = CASES_CONFIG,
    **admin: Any,
) -> Config:
    """Return the case config, isolated under ``state_dir``, with admin tokens and bindings.

    ``tokens`` maps a token subject to its secret (default: one per role, secret "<role>-secret",
    bound to that role; the tenant admin to tenant acme). ``expired`` subjects expired in 2020.
    """
    tokens = dict(tokens or {role: f"{role}-secret" for role in ROLES})
    if bindings is None:
        bindings = {
            f"token:{role}": {"roles": [role], "tenant": TENANT if role == "tenant-admin" else None}
            for role in ROLES
        }
    data_dir = write_data(state_dir / "admin-data", "system/bindings", dict(bindings))
    config = isolated_config(load_config(base), state_dir)
    bundle = dataclasses.replace(
        config.policy.bundle, data_dirs=(*config.policy.bundle.data_dirs, str(data_dir))
    )
    expiry = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    entries = tuple(
        AdminToken(
            subject,
            hashlib.sha256(secret.encode()).hexdigest(),
            expires_at=expiry if subject in expired else None,
        )
        for subject, secret in tokens.items()
    )
    settings = dataclasses.replace(config.policy.admin, tokens=entries, **admin)
    return dataclasses.replace(
        config, policy=dataclasses.replace(config.policy, bundle=bundle, admin=settings)
    )


def build_bundle_bytes(
    config: Config, output: Path, revision: str, *, overlays: tuple[Path, ...] = ()
) -> bytes:
    """Build the config's bundle (plus data ``overlays``), signed with its key; return the bytes."""
    bundle = dataclasses.replace(
        config.policy.bundle,
        data_dirs=(*config.policy.bundle.data_dirs, *(str(o) for o in overlays)),
        output=str(output),
    )
    built = build_local_bundle(
        dataclasses.replace(config, policy=dataclasses.replace(config.policy, bundle=bundle)),
        revision=revision,
    )
    return built.bundle.path.read_bytes()


@dataclass(frozen=True)
class TlsMaterial:
    """PEM files of a test PKI: the client CA, the server pair, and client pairs by name."""

    ca: Path
    server_cert: Path
    server_key: Path
    clients: Mapping[str, tuple[Path, Path]]  # name → (certificate, key)

    def client(self, name: str) -> tuple[bytes, bytes]:
        """Return (certificate PEM, key PEM) of client ``name``."""
        cert, key = self.clients[name]
        return cert.read_bytes(), key.read_bytes()


def tls_material(directory: Path) -> TlsMaterial:
    """Generate a CA, a localhost server certificate and clients: ``alice`` (trusted, with a
    SPIFFE URI SAN), ``expired`` (trusted CA, expired) and ``mallory`` (another CA)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key, ca_cert = _ca("Test Client CA")
    rogue_key, rogue_cert = _ca("Rogue CA")
    server = _leaf(ca_key, ca_cert, "localhost", now, server=True)
    clients = {
        "alice": _leaf(ca_key, ca_cert, "alice", now, uri="spiffe://corp/alice"),
        "expired": _leaf(ca_key, ca_cert, "old-bob", now - datetime.timedelta(days=30)),
        "mallory": _leaf(rogue_key, rogue_cert, "mallory", now),
    }
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    written = {name: _write(directory, name, pair) for name, pair in clients.items()}
    server_cert, server_key = _write(directory, "server", server)
    return TlsMaterial(ca_path, server_cert, server_key, written)


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    name: str,
    issued: datetime.datetime,
    *,
    server: bool = False,
    uri: str | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(name)]
    if server:
        names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    if uri:
        names.append(x509.UniformResourceIdentifier(uri))
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(issued - datetime.timedelta(minutes=5))
        .not_valid_after(issued + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _write(
    directory: Path, name: str, pair: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]
) -> tuple[Path, Path]:
    key, cert = pair
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
