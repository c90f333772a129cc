"""Every error status carries google.rpc details: ErrorInfo with our error code, BadRequest fields.

A real sidecar (gRPC server, managed OPA); the details are read back the way a Python client
reads them, with ``grpc_status.rpc_status.from_call`` (clients/go reads the same from Go).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from sidecar._proto import policy_pb2 as pb
from sidecar.config import load_config
from tests.support.admin import CASES_CONFIG, admin_config, admin_stub, bearer
from tests.support.sidecar import RunningSidecar, isolated_config, running_sidecar

pytestmark = pytest.mark.asyncio(loop_scope="module")

DIGEST = "sha256:" + "c" * 64


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningSidecar]:
    config = isolated_config(load_config(CASES_CONFIG), tmp_path_factory.mktemp("details-state"))
    async with running_sidecar(config) as running:
        yield running


def _details(error: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo, list[Any]]:
    """The ErrorInfo of an error status and its other details (from_call checks code and message)."""
    status = rpc_status.from_call(error)
    assert status is not None, f"no grpc-status-details-bin on {error.code()}: {error.details()}"
    infos, others = [], []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            infos.append(info)
            continue
        bad = error_details_pb2.BadRequest()
        assert detail.Unpack(bad), f"unexpected detail {detail.type_url}"
        others.append(bad)
    assert len(infos) == 1, status
    return infos[0], others


async def test_invalid_field_names_code_field_and_decision(sidecar: RunningSidecar) -> None:
    request = pb.DecideRequest(
        image=pb.Image(registry="ci", repository="team/app", tag="dev-1", digest="sha256:xyz"),
        caller=pb.Caller(subject="test"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await sidecar.stub.Decide(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, others = _details(caught.value)
    assert (info.reason, info.domain) == ("invalid_argument", "policy-sidecar")
    # The failed decision's ids: the same ones its log line and span carry.
    assert len(info.metadata["decision_id"]) == 32
    assert len(info.metadata["trace_id"]) == 32
    [bad] = others
    [violation] = bad.field_violations
    assert violation.field == "image.digest"
    assert violation.description and "image.digest" not in violation.description


async def test_unknown_decision_is_not_found_naming_the_id(sidecar: RunningSidecar) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await sidecar.stub.Explain(pb.ExplainRequest(decision_id="f" * 32), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    info, others = _details(caught.value)
    assert info.reason == "not_found"
    assert info.metadata["decision_id"] == "f" * 32
    assert others == []


async def test_missing_required_field_is_a_field_violation(sidecar: RunningSidecar) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await sidecar.stub.Explain(pb.ExplainRequest(), timeout=10)
    info, [bad] = _details(caught.value)
    assert info.reason == "invalid_argument"
    assert [(v.field, v.description) for v in bad.field_violations] == [("decision_id", "required")]


async def test_unparsable_request_bytes_get_details_too(sidecar: RunningSidecar) -> None:
    # A raw method call with bytes that are not a DecideRequest (field 1 claims 100 bytes).
    decide = sidecar.channel.unary_unary(
        "/freightliner.policy.v1.PolicyService/Decide",
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await decide(b"\x0a\x64abc", timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, [bad] = _details(caught.value)
    assert info.reason == "invalid_argument"
    assert bad.field_violations[0].field == "request"
    # ...and the server keeps serving.
    answer = await sidecar.stub.Decide(
        pb.DecideRequest(
            image=pb.Image(registry="ci", repository="team/app", tag="dev-1", digest=DIGEST),
            caller=pb.Caller(subject="test"),
        ),
        timeout=30,
    )
    assert answer.decision_id


async def test_a_long_message_still_arrives_with_its_details(sidecar: RunningSidecar) -> None:
    # The message (naming the 20,000-character registry) is echoed in the details: cut, or the
    # trailers go over the client's metadata limit and the call fails with no status at all.
    request = pb.DecideRequest(
        image=pb.Image(registry="r" * 20_000, repository="team/app", tag="dev-1", digest=DIGEST),
        caller=pb.Caller(subject="test"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await sidecar.stub.Decide(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, [bad] = _details(caught.value)
    assert info.reason == "invalid_argument"
    assert bad.field_violations[0].field == "image.registry"
    assert (caught.value.details() or "").startswith("image.registry: unknown registry 'rrr")
    assert "more characters)" in (caught.value.details() or "")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def admin_sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningSidecar]:
    config = admin_config(tmp_path_factory.mktemp("details-admin"))
    async with running_sidecar(config) as running:
        yield running


async def test_a_rejected_bundle_is_told_apart_from_a_bad_field(
    admin_sidecar: RunningSidecar, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Both are INVALID_ARGUMENT; only ErrorInfo says the bundle itself was refused.
    stub = admin_stub(admin_sidecar.channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.PublishBundle(
            pb.PublishBundleRequest(bundle=b"not a bundle"),
            metadata=bearer("policy-admin-secret"),
            timeout=60,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, _ = _details(caught.value)
    assert info.reason == "bundle_rejected"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Rollback(pb.RollbackRequest(), metadata=bearer("policy-admin-secret"))
    assert _details(caught.value)[0].reason == "invalid_argument"

    # The CLI prints the code the status carries, not a guess from the status code.
    garbage = tmp_path_factory.mktemp("garbage") / "bundle.tar.gz"
    garbage.write_bytes(b"not a bundle")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", "admin", "publish", str(garbage),
        "--server", admin_sidecar.address,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "POLICY_SIDECAR_ADMIN_TOKEN": "policy-admin-secret"},
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1, err.decode()
    assert "policy-sidecar: bundle_rejected: " in err.decode(), err.decode()


async def test_unauthenticated_admin_call_carries_its_code(admin_sidecar: RunningSidecar) -> None:
    stub = admin_stub(admin_sidecar.channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListRevisions(pb.ListRevisionsRequest(), metadata=bearer("wrong"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _details(caught.value)[0].reason == "unauthenticated"
