"""Runs every data-driven case in tests/cases/*.yaml against a real OPA.

A case with a ``request`` goes through the real gRPC Decide; a case with ``retention`` is a
retention query (DESIGN §3.4) sent to the sidecar's own OPA at ``data.replication.retention``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from google.protobuf.json_format import ParseDict

from sidecar._proto import policy_pb2 as pb
from sidecar.config import load_config
from sidecar.policy.opa import OpaEngine
from tests.support.sidecar import RunningSidecar, isolated_config, running_sidecar

# clock: every case pins `now`; the year-ahead run proves no case depends on today's date
pytestmark = pytest.mark.clock

CASES_DIR = Path(__file__).resolve().parents[1] / "cases"


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _load_cases() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        if path.name == "sidecar.yaml":
            continue
        for case in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
            cases.append((f"{path.stem}: {case['name']}", case))
    return cases


ALL_CASES = _load_cases()
CASES = [pytest.param(case, id=name) for name, case in ALL_CASES if "request" in case]
RETENTION_CASES = [pytest.param(case, id=name) for name, case in ALL_CASES if "retention" in case]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningSidecar]:
    config = isolated_config(
        load_config(CASES_DIR / "sidecar.yaml"), tmp_path_factory.mktemp("cases-state")
    )
    async with running_sidecar(config) as running:
        yield running


def test_cases_exist() -> None:
    assert len(CASES) >= 40, "the case table must cover every rule of DESIGN §3.3"
    assert len(RETENTION_CASES) >= 4, "the retention query (DESIGN §3.4) needs its cases"
    # A case of neither kind would silently run as nothing.
    assert [n for n, c in ALL_CASES if "request" not in c and "retention" not in c] == []


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("case", CASES)
async def test_case(sidecar: RunningSidecar, case: dict[str, Any]) -> None:
    request = ParseDict(_drop_nulls(case["request"]), pb.DecideRequest())
    # No registry holds the case images: each case states its facts (labels, now, health, access,
    # usage) as a replay does, so the runner asks with an override role (docs/facts.md).
    request.caller.roles.append("replay")
    answer = await sidecar.stub.Decide(request, timeout=10)
    decision, expect = answer.decision, case["expect"]

    assert answer.decision_id and answer.bundle_revision and len(answer.trace_id) == 32
    assert not answer.degraded
    assert decision.allow == expect["allow"]
    assert [r.registry for r in decision.routes] == expect.get("routes", [])
    assert [r.rank for r in decision.routes] == list(range(1, len(decision.routes) + 1))
    assert {d.registry: list(d.reasons) for d in decision.denied} == expect.get("denied", {})
    assert {d.registry: d.reason for d in decision.deferred} == expect.get("deferred", {})
    if "priority" in expect:
        assert decision.priority == expect["priority"]
    for registry, target in expect.get("route_targets", {}).items():
        route = next(r for r in decision.routes if r.registry == registry)
        assert f"{route.repository}:{route.tag}" == target
    # DESIGN §3.4: remove is exact in every case (none without image.present_at).
    assert {d.registry: list(d.reasons) for d in decision.remove} == expect.get("remove", {})
    # DESIGN §3.2: every registry but the source is in exactly one of routes, denied, deferred.
    listed = (
        [r.registry for r in decision.routes]
        + [d.registry for d in decision.denied]
        + [d.registry for d in decision.deferred]
    )
    others = {r.name for r in sidecar.sidecar.config.inventory()} - {request.image.registry}
    assert sorted(listed) == sorted(others)
    codes = {r.code for r in decision.reasons}
    assert set(expect.get("reasons", [])) <= codes, f"reasons present: {sorted(codes)}"
    if "actions" in expect:
        assert [
            {
                "type": a.type,
                "tenant": a.tenant,
                "keep_last": a.keep_last,
                "older_than_days": a.older_than_days,
            }
            for a in decision.actions
        ] == expect["actions"]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("case", RETENTION_CASES)
async def test_retention_case(sidecar: RunningSidecar, case: dict[str, Any]) -> None:
    runtime = sidecar.sidecar.runtime
    assert runtime is not None
    engine = OpaEngine(
        runtime.url, timeout_s=10, path="replication/retention", token=runtime.token
    )
    try:
        answer = (await engine.evaluate(case["retention"])).result
    finally:
        await engine.close()
    expect = case["expect"]

    assert sorted(answer) == ["bytes_freed", "delete", "reasons"]
    deleted = [f"{d['registry']}/{d['repository']}:{d['tag']}" for d in answer["delete"]]
    assert deleted == expect.get("delete", [])
    assert {d["reason"] for d in answer["delete"]} <= {"QUOTA_EXCEEDED"}
    assert answer["bytes_freed"] == expect.get("bytes_freed", 0)
    assert [r["code"] for r in answer["reasons"]] == expect.get("reasons", [])
    assert all(r["message"] for r in answer["reasons"])
