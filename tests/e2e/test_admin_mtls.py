"""Admin callers identified by client certificate over the sidecar's TLS admin listener.

Certificates are generated per test run (cryptography): a trusted client bound to policy-admin by
its SPIFFE URI SAN, an expired one and one from a CA the sidecar does not trust. The listener is
gRPC's own TLS with client authentication (issue 15: no relay keyed by peer addresses), so a
refused certificate never gets a connection: the handshake fails and nothing reaches the API.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from sidecar._proto import policy_pb2 as pb
from sidecar.config._admin import AdminTlsSettings
from tests.support.admin import TlsMaterial, admin_config, admin_stub, bearer, tls_material
from tests.support.sidecar import RunningSidecar, running_sidecar

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

BINDINGS = {
    "URI:spiffe://corp/alice": {"roles": ["policy-admin"]},
    # Bound, yet refused: a binding never makes an untrusted or expired certificate acceptable.
    "CN=mallory": {"roles": ["policy-admin"]},
    "CN=old-bob": {"roles": ["policy-admin"]},
    "token:viewer": {"roles": ["viewer"]},
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return tls_material(tmp_path_factory.mktemp("pki"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sidecar(
    tmp_path_factory: pytest.TempPathFactory, pki: TlsMaterial
) -> AsyncIterator[RunningSidecar]:
    config = admin_config(
        tmp_path_factory.mktemp("admin-mtls"),
        bindings=BINDINGS,
        tokens={"viewer": "viewer-secret"},
        listen="127.0.0.1:0",
        tls=AdminTlsSettings(str(pki.server_cert), str(pki.server_key), str(pki.ca)),
    )
    async with running_sidecar(config) as running:
        yield running


def _tls_channel(sidecar: RunningSidecar, pki: TlsMaterial, client: str | None) -> grpc.aio.Channel:
    cert, key = pki.client(client) if client else (None, None)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(), private_key=key, certificate_chain=cert
    )
    assert sidecar.sidecar.admin_tls is not None
    return grpc.aio.secure_channel(
        f"127.0.0.1:{sidecar.sidecar.admin_tls.port}",
        credentials,
        options=[("grpc.ssl_target_name_override", "localhost")],
    )


async def _last_event(sidecar: RunningSidecar, pki: TlsMaterial) -> pb.AuditEvent:
    async with _tls_channel(sidecar, pki, "alice") as channel:
        log = await admin_stub(channel).GetAuditLog(pb.GetAuditLogRequest(limit=1))
    return log.events[0]


async def test_a_trusted_certificate_acts_with_the_roles_bound_to_its_san(
    sidecar: RunningSidecar, pki: TlsMaterial
) -> None:
    async with _tls_channel(sidecar, pki, "alice") as channel:
        stub = admin_stub(channel)
        listing = await stub.ListRevisions(pb.ListRevisionsRequest())
        startup = listing.revisions[0].revision
        rolled = await stub.Rollback(pb.RollbackRequest(revision=startup))
    assert rolled.revision == startup
    event = await _last_event(sidecar, pki)
    assert (event.actor, event.action, event.outcome) == ("CN=alice", "Rollback", "rolled_back")


@pytest.mark.parametrize("client", ["mallory", "expired"])
async def test_untrusted_or_expired_certificates_get_no_connection(
    sidecar: RunningSidecar, pki: TlsMaterial, client: str
) -> None:
    before = await _last_event(sidecar, pki)
    async with _tls_channel(sidecar, pki, client) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await admin_stub(channel).ListRevisions(pb.ListRevisionsRequest(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    # Refused in the handshake: no call, so no audit row; the listener keeps serving.
    assert (await _last_event(sidecar, pki)).seq == before.seq


async def test_a_token_over_tls_names_the_caller_and_not_the_plaintext_port(
    sidecar: RunningSidecar, pki: TlsMaterial
) -> None:
    async with _tls_channel(sidecar, pki, "alice") as channel:
        stub = admin_stub(channel)
        await stub.ListRevisions(pb.ListRevisionsRequest(), metadata=bearer("viewer-secret"))
        # The token, not alice's certificate, is the caller: a viewer may not roll back.
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.Rollback(pb.RollbackRequest(revision="x"), metadata=bearer("viewer-secret"))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "token:viewer" in (denied.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await admin_stub(sidecar.channel).ListRevisions(
            pb.ListRevisionsRequest(), metadata=bearer("viewer-secret")
        )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "must come through the TLS admin listener" in (refused.value.details() or "")
    event = await _last_event(sidecar, pki)
    assert event.actor.startswith("peer:ipv4:127.0.0.1:") and event.outcome == "unauthenticated"
    # Decisions stay on the plaintext port, unaffected.
    decided = await sidecar.stub.Decide(
        pb.DecideRequest(image=pb.Image(registry="ci", repository="team/app", tag="dev-1"))
    )
    assert decided.bundle_revision


async def test_admin_cli_speaks_mtls(sidecar: RunningSidecar, pki: TlsMaterial) -> None:
    assert sidecar.sidecar.admin_tls is not None
    cert, key = pki.clients["alice"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", "admin", "revisions",
        "--server", f"127.0.0.1:{sidecar.sidecar.admin_tls.port}", "--server-name", "localhost",
        "--ca", str(pki.ca), "--cert", str(cert), "--key", str(key),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "POLICY_SIDECAR_ADMIN_TOKEN"},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    revisions = json.loads(out)["revisions"]
    assert revisions and revisions[0]["published_by"] in ("sidecar:startup", "CN=alice")
