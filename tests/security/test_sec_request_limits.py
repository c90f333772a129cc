"""Issue 15, "Memory and loop exhaustion": oversized requests are refused before they cost memory.

The finding: every RPC accepted 17 MiB messages and ``access``, ``platforms`` and ``roles`` had no
size limits (30 Decide calls carrying a 12.5 MB ``access`` map grew the sidecar to 2.4 GiB RSS).
Each attack below goes through the real gRPC listener of a running sidecar.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from sidecar._proto import policy_pb2 as pb
from tests.support.security import (
    assert_serving,
    attacked_sidecar,
    decide_request,
    sidecar_config,
)
from tests.support.sidecar import RunningSidecar

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

MAX_MESSAGE = 1024 * 1024  # policy.limits.max_message_bytes default


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningSidecar]:
    async with attacked_sidecar(sidecar_config(), tmp_path_factory.mktemp("sec-limits")) as running:
        yield running


async def _refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call  # type: ignore[misc]
    return refused.value


async def test_the_reported_12_mb_access_map_is_refused_unparsed(sidecar: RunningSidecar) -> None:
    # The measurement: a 12.5 MB access map per call. 30 of them, as in the report.
    regions = {f"region-{n:07d}-" + "r" * 20: n for n in range(400_000)}
    huge = decide_request(access=regions)
    assert huge.ByteSize() > 12 * MAX_MESSAGE
    for _ in range(30):
        error = await _refused(sidecar.stub.Decide(huge, timeout=30))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "policy.limits.max_message_bytes" in (error.details() or "")
    await assert_serving(sidecar)


async def test_a_message_just_over_the_cap_is_refused_on_every_policy_rpc(
    sidecar: RunningSidecar,
) -> None:
    labels = {"pad": "x" * (MAX_MESSAGE + 1)}
    over = decide_request(labels=labels)
    for call in (
        sidecar.stub.Decide(over, timeout=10),
        sidecar.stub.Replicate(pb.ReplicateRequest(request=over, dry_run=True), timeout=10),
        sidecar.stub.Explain(pb.ExplainRequest(decision_id="d" * (MAX_MESSAGE + 1)), timeout=10),
    ):
        error = await _refused(call)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
        assert f"over the limit of {MAX_MESSAGE}" in (error.details() or "")

    async def stream() -> AsyncIterator[pb.DecideRequest]:
        yield decide_request(1)
        yield over

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        _ = [answer async for answer in sidecar.stub.DecideStream(stream(), timeout=10)]
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    await assert_serving(sidecar)


@pytest.mark.parametrize(
    ("field", "request_fields", "problem"),
    [
        ("access", {"access": {f"r{n}": n for n in range(257)}}, "257 entries, at most 256"),
        ("access", {"access": {"r" * 257: 1}}, "257 bytes, at most 256"),
        ("image.platforms", {"platforms": [f"linux/p{n}" for n in range(65)]}, "65 entries"),
        ("image.platforms", {"platforms": ["p" * 300]}, "300 bytes, at most 256"),
        (
            "caller.roles",
            {"caller": pb.Caller(subject="x", roles=[f"role{n}" for n in range(65)])},
            "65 entries, at most 64",
        ),
    ],
)
async def test_maps_and_lists_over_their_limits_are_invalid_argument_naming_the_field(
    sidecar: RunningSidecar, field: str, request_fields: dict[str, object], problem: str
) -> None:
    # Under the message cap, still far more than any real caller sends: refused by count or size.
    error = await _refused(sidecar.stub.Decide(decide_request(**request_fields), timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error.details() or ""
    assert details.startswith(f"{field}: ") and problem in details, details
    await assert_serving(sidecar)


async def test_decision_records_stay_within_their_byte_budget(tmp_path: Path) -> None:
    # Records used to be capped by count only (10,000) while keeping whole inputs: 10,000
    # decisions with ~900 kB of labels each would be kept, ~9 GB. A 4 MiB budget keeps ~4 of them.
    doc = sidecar_config(decision_records={"max_bytes": 4 * MAX_MESSAGE})
    labels = {f"pad-{n}": "v" * 4000 for n in range(220)}  # ~0.9 MB: under every request limit
    async with attacked_sidecar(doc, tmp_path) as running:
        ids = []
        for i in range(12):
            answer = await running.stub.Decide(decide_request(i, labels=labels), timeout=30)
            ids.append(answer.decision_id)
        # The newest is still explainable; the oldest were dropped to stay within the budget.
        newest = await running.stub.Explain(pb.ExplainRequest(decision_id=ids[-1]), timeout=10)
        assert len(newest.input_json) > 800_000
        error = await _refused(running.stub.Explain(pb.ExplainRequest(decision_id=ids[0])))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        kept = 0
        for decision_id in ids:
            try:
                await running.stub.Explain(pb.ExplainRequest(decision_id=decision_id), timeout=10)
                kept += 1
            except grpc.aio.AioRpcError:
                pass
        assert 1 <= kept <= 5, f"{kept} records of ~0.9 MB kept under a 4 MiB budget"
        await assert_serving(running)
