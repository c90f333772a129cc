"""Helpers for data-plane authentication tests (policy.auth): configs, identities, channels.

One config serves every test: the cases inventory (tenants acme and globex, the registry
acme-prod dedicated to acme), an mTLS listener with the test PKI of tests/support/admin.py, hashed
bearer tokens and a unix socket, and role bindings for each identity.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc

from sidecar._proto import policy_pb2 as pb
from sidecar._proto import policy_pb2_grpc as pb_grpc
from sidecar.config import AdminToken, AuthSettings, AuthUnixSettings, Config
from sidecar.config._admin import AdminTlsSettings
from tests.support.admin import TlsMaterial, admin_config, bearer
from tests.support.sidecar import RunningSidecar

__all__ = [
    "BINDINGS",
    "DIGEST",
    "TOKENS",
    "auth_config",
    "decide_request",
    "short_socket_dir",
    "tls_stub",
    "token",
    "unix_stub",
]

DIGEST = "sha256:" + "d" * 64
# Token subject → secret; each authenticates as token:<subject>.
TOKENS = {
    "acme-ci": "acme-ci-secret",
    "globex-ci": "globex-ci-secret",
    "platform-ci": "platform-ci-secret",
    "auditor": "auditor-secret",
    "acme-auditor": "acme-auditor-secret",
    "stranger": "stranger-secret",  # valid token, bound to nothing
}
BINDINGS: Mapping[str, Any] = {
    "token:acme-ci": {"roles": ["replicator"], "tenant": "acme"},
    "token:globex-ci": {"roles": ["replicator"], "tenant": "globex"},
    "token:platform-ci": {"roles": ["replicator"]},
    "token:auditor": {"roles": ["auditor"]},
    "token:acme-auditor": {"roles": ["auditor"], "tenant": "acme"},
    # alice's certificate, by its SPIFFE URI SAN: acme's replicator.
    "URI:spiffe://corp/alice": {"roles": ["replicator"], "tenant": "acme"},
    # The in-pod replication service on the unix socket: the platform's replicator.
    "unix:replicator": {"roles": ["replicator"]},
}


def short_socket_dir() -> Path:
    """Return a fresh directory under /tmp: socket paths must stay under ~100 bytes."""
    return Path(tempfile.mkdtemp(prefix="sc-auth-", dir="/tmp"))


def auth_config(
    state_dir: Path,
    pki: TlsMaterial,
    socket: Path,
    *,
    bindings: Mapping[str, Any] | None = None,
    **auth: Any,
) -> Config:
    """Return the cases config with policy.auth: mTLS listener, TOKENS, a unix socket.

    ``bindings`` are added to :data:`BINDINGS`; ``auth`` replaces AuthSettings fields.
    """
    config = admin_config(
        state_dir, bindings={**BINDINGS, **(bindings or {})}, tokens={"viewer": "viewer-secret"}
    )
    settings = AuthSettings(
        listen="127.0.0.1:0",
        tls=AdminTlsSettings(str(pki.server_cert), str(pki.server_key), str(pki.ca)),
        tokens=tuple(
            AdminToken(subject, hashlib.sha256(secret.encode()).hexdigest())
            for subject, secret in TOKENS.items()
        ),
        unix=AuthUnixSettings(str(socket), "replicator"),
    )
    settings = dataclasses.replace(settings, **auth)
    return dataclasses.replace(config, policy=dataclasses.replace(config.policy, auth=settings))


def token(subject: str) -> tuple[tuple[str, str], ...]:
    """Return the bearer metadata of the token of ``subject`` (a key of TOKENS)."""
    return bearer(TOKENS[subject])


def _an_hour_ago() -> str:
    """Return an RFC 3339 time an hour ago: a fresh scan whatever the clock says."""
    moment = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    return f"{moment:%Y-%m-%dT%H:%M:%SZ}"


def decide_request(
    repository: str = "acme/web",
    *,
    registry: str = "ci",
    subject: str = "",
    tenant: str = "",
    roles: tuple[str, ...] = (),
    tag: str = "prod-1.0",
) -> pb.DecideRequest:
    """Return an image request (prod: scanned by its labels), with the caller fields given
    (empty: derived). The labels are the caller's word: the registry is not read here, so only a
    ``dev-*`` tag, which needs no scan, is routed for a caller without a fact-override role."""
    labels = {
        "security.scan.status": "passed",
        "security.scan.completed-at": _an_hour_ago(),
        "security.scan.critical": "0",
        "security.scan.high": "0",
    }
    image = pb.Image(
        registry=registry, repository=repository, tag=tag, digest=DIGEST,
        size_bytes=1_000_000, labels=labels,
    )  # fmt: skip
    return pb.DecideRequest(
        image=image,
        caller=pb.Caller(subject=subject, tenant=tenant, roles=list(roles)),
    )


def tls_stub(
    running: RunningSidecar, pki: TlsMaterial, client: str
) -> tuple[grpc.aio.Channel, pb_grpc.PolicyServiceStub]:
    """Return a channel (close it) and stub to the mTLS listener with ``client``'s certificate."""
    assert running.sidecar.data_tls is not None
    cert, key = pki.client(client)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(), private_key=key, certificate_chain=cert
    )
    channel = grpc.aio.secure_channel(
        f"127.0.0.1:{running.sidecar.data_tls.port}",
        credentials,
        options=[("grpc.ssl_target_name_override", "localhost")],
    )
    return channel, pb_grpc.PolicyServiceStub(channel)


def unix_stub(socket: Path) -> tuple[grpc.aio.Channel, pb_grpc.PolicyServiceStub]:
    """Return a channel (close it) and stub to the unix-socket listener."""
    channel = grpc.aio.insecure_channel(f"unix:{socket}")
    return channel, pb_grpc.PolicyServiceStub(channel)
