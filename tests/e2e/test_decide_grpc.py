"""The gRPC decision path end to end: real sidecar, real managed OPA, real signed bundle."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
import pytest_asyncio
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace

from sidecar._proto import policy_pb2 as pb
from sidecar.config import load_config
from sidecar.tools import find_tool
from tests.support.sidecar import RunningSidecar, isolated_config, running_sidecar

ROOT = Path(__file__).resolve().parents[2]
CASES_CONFIG = ROOT / "tests" / "cases" / "sidecar.yaml"
DIGEST = "sha256:" + "c" * 64
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"

pytestmark = pytest.mark.asyncio(loop_scope="module")


def _request(**image: object) -> pb.DecideRequest:
    fields: dict[str, object] = {
        "registry": "ci",
        "repository": "team/app",
        "tag": "dev-1.0",
        "digest": DIGEST,
    }
    fields.update(image)
    return pb.DecideRequest(image=pb.Image(**fields), caller=pb.Caller(subject="test"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningSidecar]:
    config = isolated_config(load_config(CASES_CONFIG), tmp_path_factory.mktemp("grpc-state"))
    async with running_sidecar(config) as running:
        yield running


async def _run(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.parametrize(
    ("image", "field"),
    [
        ({"repository": ""}, "image.repository"),
        ({"digest": "sha256:xyz"}, "image.digest"),
        ({"labels": {f"k{i}": "v" for i in range(1000)}}, "image.labels"),
        ({"labels": {"big": "x" * 100_000}}, "image.labels"),
        ({"registry": "no-such-registry"}, "image.registry"),
        ({"tag": "bad tag!"}, "image.tag"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    sidecar: RunningSidecar, image: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sidecar.stub.Decide(_request(**image), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (err.value.details() or "")


async def test_traceparent_continues_the_callers_trace(sidecar: RunningSidecar) -> None:
    sidecar.spans.clear()
    metadata = (("traceparent", f"00-{TRACE_ID}-{PARENT_SPAN}-01"),)
    answer = await sidecar.stub.Decide(_request(), metadata=metadata, timeout=10)
    assert answer.trace_id == TRACE_ID
    # OpenTelemetry's gRPC server span continues the caller's trace, by the book (rpc.*)...
    (rpc,) = sidecar.spans.by_name("/freightliner.policy.v1.PolicyService/Decide")
    assert rpc.kind is trace.SpanKind.SERVER
    assert rpc.parent is not None and format(rpc.parent.span_id, "016x") == PARENT_SPAN
    assert rpc.attributes is not None and rpc.attributes["rpc.system"] == "grpc"
    assert rpc.attributes["rpc.method"] == "Decide"
    assert rpc.attributes["rpc.service"] == "freightliner.policy.v1.PolicyService"
    # ...and the decision is its child.
    (decide,) = sidecar.spans.by_name("policy.decide")
    assert decide.parent is not None and decide.parent.span_id == rpc.context.span_id
    assert decide.kind is trace.SpanKind.INTERNAL
    assert decide.attributes is not None
    assert decide.attributes["policy.decision_id"] == answer.decision_id
    assert decide.attributes["policy.bundle_revision"] == answer.bundle_revision
    assert decide.attributes["policy.route_count"] == len(answer.decision.routes)
    (query,) = sidecar.spans.by_name("opa.query")
    assert query.parent is not None and query.parent.span_id == decide.context.span_id


async def test_explain_returns_input_that_replays_to_the_same_decision(
    sidecar: RunningSidecar, tmp_path: Path
) -> None:
    answer = await sidecar.stub.Decide(_request(tag="prod-2.0"), timeout=10)
    explained = await sidecar.stub.Explain(pb.ExplainRequest(decision_id=answer.decision_id))
    assert explained.bundle_revision == answer.bundle_revision
    assert explained.trace_id == answer.trace_id
    policy_input = json.loads(explained.input_json)
    assert policy_input["image"]["tag"] == "prod-2.0" and policy_input["now"]
    # A policy author replays the input with the CLI, against its own real OPA.
    (tmp_path / "input.json").write_text(explained.input_json, encoding="utf-8")
    raw = yaml.safe_load(CASES_CONFIG.read_text(encoding="utf-8"))
    raw["policy"]["state_dir"] = str(tmp_path / "state")
    raw["policy"]["bundle"]["output"] = str(tmp_path / "bundle.tar.gz")
    raw["policy"]["bundle"]["data_dirs"] = [
        str((CASES_CONFIG.parent / d).resolve()) for d in raw["policy"]["bundle"]["data_dirs"]
    ]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sidecar",
        "--config",
        str(tmp_path / "config.yaml"),
        "decide",
        "--policy-input",
        str(tmp_path / "input.json"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    assert json.loads(out) == json.loads(explained.result_json)


async def test_explain_unknown_id_is_not_found(sidecar: RunningSidecar) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sidecar.stub.Explain(pb.ExplainRequest(decision_id="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_decide_stream_answers_every_request_and_reports_bad_ones_in_band(
    sidecar: RunningSidecar,
) -> None:
    async def requests() -> AsyncIterator[pb.DecideRequest]:
        for i in range(30):
            msg = _request(tag=f"prod-{i}") if i != 7 else _request(digest="sha256:bad")
            msg.request_id = f"r{i}"
            yield msg

    answers = {a.request_id: a async for a in sidecar.stub.DecideStream(requests(), timeout=30)}
    assert set(answers) == {f"r{i}" for i in range(30)}
    assert answers["r7"].error.field == "image.digest"
    assert answers["r7"].error.code == "invalid_argument"
    assert all(a.decision_id for k, a in answers.items() if k != "r7")


async def test_an_oversized_message_is_resource_exhausted_and_serving_goes_on(
    sidecar: RunningSidecar,
) -> None:
    # Issue 15: every RPC accepted ~17 MiB messages (the admin bundle cap applied to all of them).
    huge = _request(labels={"big": "x" * (2 * 1024 * 1024)})
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sidecar.stub.Decide(huge, timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_message_bytes" in (err.value.details() or "")

    async def requests() -> AsyncIterator[pb.DecideRequest]:
        yield huge

    with pytest.raises(grpc.aio.AioRpcError) as err:
        _ = [a async for a in sidecar.stub.DecideStream(requests(), timeout=10)]
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    answer = await sidecar.stub.Decide(_request(), timeout=10)
    assert answer.decision_id


async def test_health_reflection_and_grpcurl(sidecar: RunningSidecar) -> None:
    health = health_pb2_grpc.HealthStub(sidecar.channel)
    status = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    grpcurl = str(find_tool("grpcurl"))
    # The server runs in this event loop, so grpcurl must run without blocking it.
    listed = await _run(grpcurl, "-plaintext", sidecar.address, "list")
    assert "freightliner.policy.v1.PolicyService" in listed
    body = json.dumps({"image": {"registry": "ci", "repository": "team/app", "tag": "dev-1"}})
    called = await _run(
        grpcurl,
        "-plaintext",
        "-d",
        body,
        sidecar.address,
        "freightliner.policy.v1.PolicyService/Decide",
    )
    answer = json.loads(called)
    assert answer.get("decisionId") or answer.get("decision_id"), called


async def test_metrics_expose_decisions_and_active_revision(sidecar: RunningSidecar) -> None:
    answer = await sidecar.stub.Decide(_request(), timeout=10)
    assert sidecar.sidecar.metrics is not None
    url = f"http://127.0.0.1:{sidecar.sidecar.metrics.port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/metrics") as resp:
            text = await resp.text()
        async with http.get(f"{url}/readyz") as resp:
            assert resp.status == 200
    assert "policy_sidecar_decisions_total{" in text
    assert f'policy_sidecar_bundle_revision_info{{revision="{answer.bundle_revision}"}} 1.0' in text
    assert "policy_sidecar_decision_latency_seconds_bucket" in text


async def test_managed_opa_is_restarted_after_it_dies(sidecar: RunningSidecar) -> None:
    runtime = sidecar.sidecar.runtime
    assert runtime is not None and runtime.managed is not None
    os.kill(runtime.managed.pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        # While OPA is down the fail mode (closed) answers, marked degraded; never an error.
        # Retries within the decision deadline often ride out the restart: no degraded answer.
        answer = await sidecar.stub.Decide(_request(), timeout=10)
        if not answer.degraded and runtime.managed.restarts >= 1:
            break
        if answer.degraded:
            assert not answer.decision.allow, "a degraded closed-mode answer must deny"
        assert time.monotonic() < deadline, "managed OPA was not restarted"
        await asyncio.sleep(0.2)
    assert answer.decision_id and answer.decision.allow


async def test_opa_down_answers_degraded_deny_within_the_deadline(tmp_path: Path) -> None:
    base = load_config(CASES_CONFIG)
    opa = dataclasses.replace(base.policy.opa, address="http://127.0.0.1:9", timeout_ms=300)
    config = isolated_config(base, tmp_path, opa=opa)
    async with running_sidecar(config) as running:
        started = time.monotonic()
        answer = await running.stub.Decide(_request(), timeout=30)
        elapsed = time.monotonic() - started
    assert (answer.degraded, answer.decision.allow, list(answer.decision.routes)) == (
        True,
        False,
        [],
    )
    assert elapsed < 5, f"took {elapsed:.1f}s: a dead OPA must fail fast, not hang"
