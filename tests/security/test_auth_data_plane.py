"""Attacks on the data plane's authentication (issue 15), each through the real sidecar process.

Every attack asserts the refusal and that the sidecar keeps serving the legitimate caller after it.
Before policy.auth, PolicyService trusted the request's ``caller`` (an empty tenant was a platform
caller), Explain and ListJobs answered anyone, ResolvePull answered for any registry, and the admin
TLS listener identified callers by the peer address of a relay connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket as sockets
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from sidecar._proto import policy_pb2 as pb
from sidecar._proto import policy_pb2_grpc as pb_grpc
from sidecar.config._admin import AdminTlsSettings
from tests.support.admin import TlsMaterial, admin_stub, bearer, tls_material
from tests.support.data_plane_auth import (
    auth_config,
    decide_request,
    short_socket_dir,
    tls_stub,
    token,
)
from tests.support.sidecar import RunningSidecar, running_sidecar

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return tls_material(tmp_path_factory.mktemp("pki"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sidecar(
    tmp_path_factory: pytest.TempPathFactory, pki: TlsMaterial
) -> AsyncIterator[RunningSidecar]:
    config = auth_config(
        tmp_path_factory.mktemp("auth-attacks"),
        pki,
        short_socket_dir() / "policy.sock",
        # alice may read the audit log (and, by her SAN, replicate for acme).
        bindings={"CN=alice": {"roles": ["viewer"], "tenant": "acme"}},
    )
    # The admin TLS listener too, with the same PKI.
    admin = dataclasses.replace(
        config.policy.admin,
        listen="127.0.0.1:0",
        tls=AdminTlsSettings(str(pki.server_cert), str(pki.server_key), str(pki.ca)),
    )
    config = dataclasses.replace(config, policy=dataclasses.replace(config.policy, admin=admin))
    async with running_sidecar(config) as running:
        yield running


async def _still_serving(sidecar: RunningSidecar) -> None:
    answer = await sidecar.stub.Decide(decide_request(), metadata=token("acme-ci"), timeout=30)
    assert answer.decision_id and answer.decision.allow


async def _refused(call: object, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call  # type: ignore[misc]
    assert refused.value.code() == code, refused.value.details()
    return refused.value.details() or ""


async def test_no_credentials_are_unauthenticated_on_every_method(sidecar: RunningSidecar) -> None:
    stub = sidecar.stub
    calls = [
        stub.Decide(decide_request()),
        stub.Replicate(pb.ReplicateRequest(request=decide_request(), dry_run=True)),
        stub.GetJob(pb.GetJobRequest(job_id="x")),
        stub.ListJobs(pb.ListJobsRequest()),
        stub.ResolvePull(pb.ResolvePullRequest(image=decide_request().image)),
        stub.Explain(pb.ExplainRequest(decision_id="x")),
    ]
    for call in calls:
        detail = await _refused(call, grpc.StatusCode.UNAUTHENTICATED)
        assert "no credentials" in detail
    watch = stub.WatchJob(pb.GetJobRequest(job_id="x"))
    await _refused(watch.read(), grpc.StatusCode.UNAUTHENTICATED)
    stream = stub.DecideStream(iter([decide_request()]))
    await _refused(stream.read(), grpc.StatusCode.UNAUTHENTICATED)
    await _still_serving(sidecar)


async def test_an_unknown_or_unbound_token_is_refused(sidecar: RunningSidecar) -> None:
    detail = await _refused(
        sidecar.stub.Decide(decide_request(), metadata=bearer("guessed")),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert "unknown bearer token (not in policy.auth.tokens)" in detail
    detail = await _refused(
        sidecar.stub.Decide(decide_request(), metadata=token("stranger")),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert "token:stranger (roles: none) may not call Decide" in detail
    await _still_serving(sidecar)


@pytest.mark.parametrize("client", ["mallory", "expired"])
async def test_a_certificate_of_another_ca_or_expired_gets_no_connection(
    sidecar: RunningSidecar, pki: TlsMaterial, client: str
) -> None:
    channel, stub = tls_stub(sidecar, pki, client)
    async with channel:
        await _refused(stub.Decide(decide_request(), timeout=10), grpc.StatusCode.UNAVAILABLE)
    # alice, on the same listener, still decides.
    channel, stub = tls_stub(sidecar, pki, "alice")
    async with channel:
        assert (await stub.Decide(decide_request(), timeout=30)).decision.allow
    await _still_serving(sidecar)


@pytest.mark.parametrize(
    ("caller", "problem"),
    [
        ({"tenant": "acme"}, "caller.tenant: token:globex-ci acts for tenants [globex], not 'acme'"),
        ({"roles": ("replicator", "platform-admin")},
         "caller.roles: token:globex-ci does not hold 'platform-admin'"),
        ({"subject": "token:platform-ci"}, "caller.subject: 'token:platform-ci' is not the authenticated caller"),
    ],
)  # fmt: skip
async def test_a_request_caller_that_widens_the_identity_is_refused(
    sidecar: RunningSidecar, caller: dict[str, object], problem: str
) -> None:
    request = decide_request("acme/web", **caller)  # type: ignore[arg-type]
    detail = await _refused(
        sidecar.stub.Decide(request, metadata=token("globex-ci")),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert problem in detail
    replicate = pb.ReplicateRequest(request=request, dry_run=True)
    await _refused(
        sidecar.stub.Replicate(replicate, metadata=token("globex-ci")),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    # In a stream the refusal is in-band, and the stream goes on.
    answers = [
        a
        async for a in sidecar.stub.DecideStream(
            iter([request, decide_request("globex/api")]), metadata=token("globex-ci")
        )
    ]
    assert sorted(a.error.code for a in answers) == ["", "permission_denied"]
    await _still_serving(sidecar)


async def test_an_empty_request_tenant_is_the_identitys_tenant_not_the_platform(
    sidecar: RunningSidecar,
) -> None:
    # globex's replicator, saying nothing about its tenant, asks about acme's image.
    answer = await sidecar.stub.Decide(decide_request("acme/web"), metadata=token("globex-ci"))
    assert not answer.decision.allow
    assert "CROSS_TENANT" in {r.code for r in answer.decision.reasons}
    await _still_serving(sidecar)


async def test_a_tenant_cannot_read_another_tenants_jobs(sidecar: RunningSidecar) -> None:
    acme = await sidecar.stub.Replicate(
        pb.ReplicateRequest(request=decide_request("acme/web", tag="dev-1.0"), dry_run=True),
        metadata=token("acme-ci"),
    )
    job_id = acme.job_ids[0]
    detail = await _refused(
        sidecar.stub.GetJob(pb.GetJobRequest(job_id=job_id), metadata=token("globex-ci")),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert f"job_id: {job_id!r} is not a job of token:globex-ci's tenants" in detail
    watch = sidecar.stub.WatchJob(pb.GetJobRequest(job_id=job_id), metadata=token("globex-ci"))
    await _refused(watch.read(), grpc.StatusCode.PERMISSION_DENIED)
    listed = await sidecar.stub.ListJobs(
        pb.ListJobsRequest(limit=1000), metadata=token("globex-ci")
    )
    assert job_id not in {j.job_id for j in listed.jobs}
    await _still_serving(sidecar)


async def test_a_tenant_cannot_explain_another_tenants_decision(sidecar: RunningSidecar) -> None:
    globex = await sidecar.stub.Decide(decide_request("globex/api"), metadata=token("globex-ci"))
    detail = await _refused(
        sidecar.stub.Explain(
            pb.ExplainRequest(decision_id=globex.decision_id), metadata=token("acme-auditor")
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert "is not a decision of token:acme-auditor's tenants" in detail
    await _still_serving(sidecar)


async def test_a_tenant_cannot_resolve_pulls_from_another_tenants_registry(
    sidecar: RunningSidecar,
) -> None:
    image = decide_request("acme/web", registry="acme-prod").image
    detail = await _refused(
        sidecar.stub.ResolvePull(pb.ResolvePullRequest(image=image), metadata=token("globex-ci")),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert "image.registry: 'acme-prod' is dedicated to other tenants" in detail
    # acme itself gets past the gate (the registry of the test inventory is unreachable).
    with pytest.raises(grpc.aio.AioRpcError) as answered:
        await sidecar.stub.ResolvePull(
            pb.ResolvePullRequest(image=image), metadata=token("acme-ci"), timeout=30
        )
    assert answered.value.code() != grpc.StatusCode.PERMISSION_DENIED
    await _still_serving(sidecar)


def _reusable_socket(port: int = 0) -> sockets.socket:
    sock = sockets.socket(sockets.AF_INET, sockets.SOCK_STREAM)
    sock.setsockopt(sockets.SOL_SOCKET, sockets.SO_REUSEADDR, 1)
    sock.setsockopt(sockets.SOL_SOCKET, sockets.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    return sock


async def _pinned_proxy(target: int, source: sockets.socket) -> tuple[asyncio.Server, int]:
    """A one-connection TCP forwarder to ``target`` whose upstream leaves from ``source``."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        source.setblocking(False)
        await asyncio.get_running_loop().sock_connect(source, ("127.0.0.1", target))
        up_reader, up_writer = await asyncio.open_connection(sock=source)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


async def test_sharing_an_admins_source_port_yields_no_identity(
    sidecar: RunningSidecar, pki: TlsMaterial
) -> None:
    """alice holds an mTLS admin connection from 127.0.0.1:P; a local attacker connects from P too.

    Before: the TLS front relayed alice to the gRPC server and identities were looked up by that
    relay connection's peer string ``ipv4:127.0.0.1:P``. Linux lets connections to *different*
    destinations share a source port (connect()'s autobind, or SO_REUSEADDR on both sides), so a
    local process connecting to policy.listen from P inherited alice's certificate. Here the
    attacker gets that very peer string deterministically (both sockets SO_REUSEADDR) and calls
    every other listener: the certificate is read from the call's own TLS connection, so the
    attacker has no identity anywhere, and alice's connection is unaffected.
    """
    running = sidecar.sidecar
    assert running.admin_tls is not None and running.data_tls is not None and running.grpc

    alice_source = _reusable_socket()
    shared_port = alice_source.getsockname()[1]
    proxy, proxy_port = await _pinned_proxy(sidecar.sidecar.admin_tls.port, alice_source)
    cert, key = pki.client("alice")
    credentials = grpc.ssl_channel_credentials(pki.ca.read_bytes(), key, cert)
    alice = grpc.aio.secure_channel(
        f"127.0.0.1:{proxy_port}", credentials, [("grpc.ssl_target_name_override", "localhost")]
    )
    try:
        # alice is a policy-admin over her live connection from 127.0.0.1:shared_port.
        await admin_stub(alice).ListRevisions(pb.ListRevisionsRequest(), timeout=30)
        # Every other port the sidecar serves gRPC on (alice's own 4-tuple cannot be shared).
        for port in (running.grpc.port, running.data_tls.port):
            attacker = _reusable_socket(shared_port)
            attacker.setblocking(False)
            await asyncio.get_running_loop().sock_connect(attacker, ("127.0.0.1", port))
            assert attacker.getsockname()[1] == shared_port  # the same peer string as alice
            # gRPC over the attacker's own socket: a one-connection proxy again.
            relay, relay_port = await _pinned_proxy(port, attacker)
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{relay_port}")
            try:
                call = admin_stub(channel).ListRevisions(pb.ListRevisionsRequest(), timeout=10)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await call
                assert refused.value.code() in (
                    grpc.StatusCode.UNAUTHENTICATED,  # the plaintext port: no identity
                    grpc.StatusCode.UNAVAILABLE,  # the mTLS port: no handshake, no call
                )
                data = pb_grpc.PolicyServiceStub(channel).Decide(decide_request(), timeout=10)
                with pytest.raises(grpc.aio.AioRpcError):
                    await data
            finally:
                await channel.close()
                relay.close()
        # alice's own connection is unaffected.
        await admin_stub(alice).ListRevisions(pb.ListRevisionsRequest(), timeout=30)
    finally:
        await alice.close()
        proxy.close()
    await _still_serving(sidecar)


async def test_the_loopback_default_without_policy_auth_is_refused_elsewhere(
    tmp_path: Path,
) -> None:
    from sidecar.config import load_config  # noqa: PLC0415
    from sidecar.errors import ConfigError  # noqa: PLC0415

    config = tmp_path / "sidecar.yaml"
    config.write_text("registries: []\npolicy:\n  listen: 0.0.0.0:50051\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"not loopback, and without policy\.auth"):
        load_config(config)
    config.write_text(
        "registries: []\npolicy:\n  listen: 0.0.0.0:50051\n  allow_unauthenticated_listen: true\n",
        encoding="utf-8",
    )
    assert load_config(config).policy.listen == "0.0.0.0:50051"
