"""The authenticated data plane (policy.auth): who calls PolicyService, as which caller, may do what.

A real sidecar (managed OPA, the cases bundle plus role bindings) with an mTLS listener (gRPC's own
TLS, client certificates from a per-run PKI), hashed bearer tokens and a unix socket. The decision's
caller is derived from the identity (subject from the credential, tenant and roles from
data.system.bindings); the request may narrow it, and data.system.authz decides each call.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from structlog.testing import capture_logs

from sidecar._proto import policy_pb2 as pb
from sidecar.config import load_config
from tests.support.admin import CASES_CONFIG, TlsMaterial, tls_material
from tests.support.data_plane_auth import (
    TOKENS,
    auth_config,
    decide_request,
    short_socket_dir,
    tls_stub,
    token,
    unix_stub,
)
from tests.support.sidecar import RunningSidecar, isolated_config, running_sidecar

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return tls_material(tmp_path_factory.mktemp("pki"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def socket() -> Path:
    return short_socket_dir() / "policy.sock"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sidecar(
    tmp_path_factory: pytest.TempPathFactory, pki: TlsMaterial, socket: Path
) -> AsyncIterator[RunningSidecar]:
    config = auth_config(tmp_path_factory.mktemp("data-plane-auth"), pki, socket)
    async with running_sidecar(config) as running:
        yield running


async def _explained_caller(sidecar: RunningSidecar, decision_id: str) -> dict[str, object]:
    explained = await sidecar.stub.Explain(
        pb.ExplainRequest(decision_id=decision_id), metadata=token("auditor")
    )
    caller: dict[str, object] = json.loads(explained.input_json)["caller"]
    return caller


async def test_a_token_caller_is_its_identity_with_the_bound_tenant_and_roles(
    sidecar: RunningSidecar,
) -> None:
    answer = await sidecar.stub.Decide(decide_request(), metadata=token("acme-ci"))
    assert answer.decision.allow
    caller = await _explained_caller(sidecar, answer.decision_id)
    assert caller == {"subject": "token:acme-ci", "tenant": "acme", "roles": ["replicator"]}


async def test_a_client_certificate_caller_is_named_by_its_certificate(
    sidecar: RunningSidecar, pki: TlsMaterial
) -> None:
    channel, stub = tls_stub(sidecar, pki, "alice")
    async with channel:
        answer = await stub.Decide(decide_request())
    caller = await _explained_caller(sidecar, answer.decision_id)
    assert caller == {"subject": "CN=alice", "tenant": "acme", "roles": ["replicator"]}


async def test_the_unix_socket_caller_is_its_bound_subject_and_the_socket_is_private(
    sidecar: RunningSidecar, socket: Path
) -> None:
    mode = (await asyncio.to_thread(socket.stat)).st_mode
    assert stat.S_IMODE(mode) == 0o600
    channel, stub = unix_stub(socket)
    async with channel:
        answer = await stub.Decide(decide_request("shared/base"))
    caller = await _explained_caller(sidecar, answer.decision_id)
    # Bound without a tenant: the platform's replicator.
    assert caller == {"subject": "unix:replicator", "tenant": None, "roles": ["replicator"]}


async def test_a_request_may_narrow_its_caller(sidecar: RunningSidecar) -> None:
    # The platform's replicator acting for one tenant: its decisions are that tenant's.
    answer = await sidecar.stub.Decide(
        decide_request("globex/api", tenant="globex", subject="token:platform-ci"),
        metadata=token("platform-ci"),
    )
    caller = await _explained_caller(sidecar, answer.decision_id)
    assert caller == {"subject": "token:platform-ci", "tenant": "globex", "roles": ["replicator"]}


async def test_explain_is_role_gated(sidecar: RunningSidecar) -> None:
    answer = await sidecar.stub.Decide(decide_request(), metadata=token("acme-ci"))
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await sidecar.stub.Explain(
            pb.ExplainRequest(decision_id=answer.decision_id), metadata=token("acme-ci")
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "token:acme-ci (roles: replicator) may not call Explain" in (
        denied.value.details() or ""
    )
    # The tenant's own auditor may explain its tenant's decision.
    await sidecar.stub.Explain(
        pb.ExplainRequest(decision_id=answer.decision_id), metadata=token("acme-auditor")
    )


async def test_a_tenant_lists_only_its_own_jobs(sidecar: RunningSidecar) -> None:
    acme = await sidecar.stub.Replicate(
        pb.ReplicateRequest(request=decide_request("acme/web", tag="dev-1.0"), dry_run=True),
        metadata=token("acme-ci"),
    )
    globex = await sidecar.stub.Replicate(
        pb.ReplicateRequest(request=decide_request("globex/api", tag="dev-1.0"), dry_run=True),
        metadata=token("globex-ci"),
    )
    assert acme.job_ids and globex.job_ids
    listed = await sidecar.stub.ListJobs(pb.ListJobsRequest(limit=1000), metadata=token("acme-ci"))
    ids = {j.job_id for j in listed.jobs}
    assert set(acme.job_ids) <= ids and not ids & set(globex.job_ids)
    everything = await sidecar.stub.ListJobs(
        pb.ListJobsRequest(limit=1000), metadata=token("platform-ci")
    )
    assert set(acme.job_ids) | set(globex.job_ids) <= {j.job_id for j in everything.jobs}
    own = await sidecar.stub.GetJob(
        pb.GetJobRequest(job_id=acme.job_ids[0]), metadata=token("acme-ci")
    )
    assert own.job_id == acme.job_ids[0]


async def test_refusals_are_counted_in_metrics(sidecar: RunningSidecar) -> None:
    registry = sidecar.sidecar.telemetry.metrics_registry
    labels = {"action": "Decide", "code": "unauthenticated"}
    name = "policy_sidecar_data_plane_refusals_total"
    before = registry.get_sample_value(name, labels) or 0.0
    with pytest.raises(grpc.aio.AioRpcError):
        await sidecar.stub.Decide(decide_request())
    assert registry.get_sample_value(name, labels) == before + 1


async def test_without_policy_auth_startup_says_the_data_plane_is_unauthenticated(
    tmp_path: Path,
) -> None:
    config = isolated_config(load_config(CASES_CONFIG), tmp_path)
    with capture_logs() as logs:
        async with running_sidecar(config) as running:
            # Today's behaviour, unchanged: the request's caller is trusted as it stands.
            answer = await running.stub.Decide(decide_request(subject="anyone", tenant="acme"))
            assert answer.decision.allow
    warned = [e for e in logs if "the data plane is unauthenticated" in str(e.get("event"))]
    assert warned and warned[0]["log_level"] == "warning"
    assert "keep policy.listen on loopback" in warned[0]["event"]


async def _cli(*args: str, token: str | None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "POLICY_SIDECAR_TOKEN"}
    if token is not None:
        env["POLICY_SIDECAR_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_the_cli_calls_with_the_token_of_its_environment(sidecar: RunningSidecar) -> None:
    server = ("--server", sidecar.address)
    code, out, err = await _cli("jobs", "--json", *server, token=TOKENS["platform-ci"])
    assert code == 0, err
    assert isinstance(json.loads(out), list)
    image = f"ci/acme/web:prod-1.0@sha256:{'e' * 64}"
    code, out, err = await _cli("decide", "--image", image, *server, token=TOKENS["acme-ci"])
    assert code == 0, err
    assert json.loads(out)["decision_id"]
    code, _, err = await _cli("jobs", "--json", *server, token=None)
    assert code != 0 and "UNAUTHENTICATED" in err
    # The error code is the one the status's ErrorInfo carries, not "internal".
    assert "policy-sidecar: unauthenticated: " in err, err
