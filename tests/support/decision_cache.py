"""A sidecar with ``policy.decision_cache`` on, and what its cache tests read back from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import orjson
from google.protobuf.json_format import ParseDict

from sidecar._proto import policy_pb2 as pb
from sidecar.config import Config, DecisionCacheSettings, load_config
from sidecar.model.decision import Decision
from sidecar.policy.opa import OpaEngine
from tests.support.sidecar import RunningSidecar, isolated_config

__all__ = ["CASES_CONFIG", "cached_config", "lookups", "opa_says_now", "proto_request"]

CASES_CONFIG = Path(__file__).resolve().parents[1] / "cases" / "sidecar.yaml"


def cached_config(state_dir: Path, *, max_entries: int = 10_000) -> Config:
    """The cases' config (tests/cases/sidecar.yaml) with the decision cache enabled."""
    config = isolated_config(load_config(CASES_CONFIG), state_dir)
    cache = DecisionCacheSettings(enabled=True, max_entries=max_entries)
    return dataclasses.replace(
        config, policy=dataclasses.replace(config.policy, decision_cache=cache)
    )


def proto_request(request: dict[str, Any]) -> pb.DecideRequest:
    """A tests/cases request (proto YAML form) stating its facts, as a replay does."""
    msg = ParseDict(_drop_nulls(request), pb.DecideRequest())
    msg.caller.roles.append("replay")
    return msg


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def lookups(running: RunningSidecar, result: str) -> float:
    """``policy_sidecar_decision_cache_lookups_total{result}`` as /metrics shows it."""
    value = running.sidecar.telemetry.metrics_registry.get_sample_value(
        "policy_sidecar_decision_cache_lookups_total", {"result": result}
    )
    return value or 0.0


async def opa_says_now(
    running: RunningSidecar, decision_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the recorded decision, what OPA answers now for the recorded input) of ``decision_id``.

    Both as DESIGN §3.2 JSON. OPA is asked at data.replication.decision, bypassing the cache.
    """
    explained = await running.stub.Explain(pb.ExplainRequest(decision_id=decision_id))
    runtime = running.sidecar.runtime
    assert runtime is not None
    engine = OpaEngine(runtime.url, timeout_s=10.0, token=runtime.token)
    try:
        answer = await engine.evaluate(orjson.loads(explained.input_json))
    finally:
        await engine.close()
    recorded = Decision.from_json(orjson.loads(explained.result_json)).to_json()
    return recorded, Decision.from_json(answer.result).to_json()
