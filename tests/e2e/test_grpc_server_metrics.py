"""Standard gRPC server metrics (go-grpc-prometheus names) on a real sidecar's /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sidecar._proto import policy_pb2 as pb
from sidecar.config import load_config
from tests.support.sidecar import RunningSidecar, isolated_config, running_sidecar

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
CASES_CONFIG = ROOT / "tests" / "cases" / "sidecar.yaml"
SERVICE = "freightliner.policy.v1.PolicyService"


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[RunningSidecar]:
    config = isolated_config(load_config(CASES_CONFIG), tmp_path / "state")
    async with running_sidecar(config) as running:
        yield running


def _request(**image: str) -> pb.DecideRequest:
    fields = {"registry": "ci", "repository": "team/app", "tag": "dev-1.0"} | image
    return pb.DecideRequest(image=pb.Image(**fields), caller=pb.Caller(subject="test"))


async def _samples(running: RunningSidecar) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    assert running.sidecar.metrics is not None
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{running.sidecar.metrics.url}/metrics") as response,
    ):
        text = await response.text()
    return {
        (s.name, frozenset(s.labels.items())): float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _get(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_every_rpc_is_counted_by_method_type_and_status(sidecar: RunningSidecar) -> None:
    for _ in range(3):
        await sidecar.stub.Decide(_request(), timeout=30)
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await sidecar.stub.Decide(_request(repository=""), timeout=30)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # A bidirectional stream: two requests in, two answers out.
    stream = sidecar.stub.DecideStream()
    for _ in range(2):
        await stream.write(_request())
        await stream.read()
    await stream.done_writing()
    assert await stream.read() == grpc.aio.EOF
    # A stream the caller walks away from is CANCELLED, not an error of ours.
    dropped = sidecar.stub.DecideStream()
    await dropped.write(_request())
    await dropped.read()
    dropped.cancel()
    # A method nobody registered is answered UNIMPLEMENTED and mints no label value.
    unknown = sidecar.channel.unary_unary(f"/{SERVICE}/NoSuchMethod")
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await unknown(b"", timeout=10)
    assert missing.value.code() == grpc.StatusCode.UNIMPLEMENTED

    bidi = {"grpc_type": "bidi_stream", "grpc_service": SERVICE, "grpc_method": "DecideStream"}
    for _ in range(100):  # the server notices the cancellation on its own time
        samples = await _samples(sidecar)
        if _get(samples, "grpc_server_handled_total", **bidi, grpc_code="CANCELLED"):
            break
        await asyncio.sleep(0.05)
    assert _get(samples, "grpc_server_handled_total", **bidi, grpc_code="CANCELLED") == 1
    decide = {"grpc_type": "unary", "grpc_service": SERVICE, "grpc_method": "Decide"}
    assert _get(samples, "grpc_server_started_total", **decide) == 4
    assert _get(samples, "grpc_server_handled_total", **decide, grpc_code="OK") == 3
    assert _get(samples, "grpc_server_handled_total", **decide, grpc_code="INVALID_ARGUMENT") == 1
    assert _get(samples, "grpc_server_handling_seconds_count", **decide) == 4
    assert _get(samples, "grpc_server_msg_received_total", **decide) == 4
    assert _get(samples, "grpc_server_msg_sent_total", **decide) == 3
    assert _get(samples, "grpc_server_handled_total", **bidi, grpc_code="OK") == 1
    assert _get(samples, "grpc_server_msg_received_total", **bidi) == 3
    assert _get(samples, "grpc_server_msg_sent_total", **bidi) == 3
    # The sidecar's own families are fed by the same interceptor.
    ours = {"method": f"/{SERVICE}/Decide"}
    assert _get(samples, "policy_sidecar_grpc_requests_total", **ours, code="OK") == 3
    assert _get(samples, "policy_sidecar_requests_in_flight") == 0
    assert not any("NoSuchMethod" in dict(labels).get("grpc_method", "") for _, labels in samples)
