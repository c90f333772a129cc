"""Runs every data-driven case in tests/cases/*.yaml through the real gRPC Decide against a real OPA."""

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


def _load_cases() -> list[Any]:
    cases = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        if path.name == "sidecar.yaml":
            continue
        for case in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
            cases.append(pytest.param(case, id=f"{path.stem}: {case['name']}"))
    return cases


CASES = _load_cases()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningSidecar]:
    config = isolated_config(
        load_config(CASES_DIR / "sidecar.yaml"), tmp_path_factory.mktemp("cases-state")
    )
    async with running_sidecar(config) as running:
        yield running


def test_cases_exist() -> None:
    assert len(CASES) >= 40, "the case table must cover every rule of DESIGN §3.3"


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
