"""OPA outages against a real managed OPA serving the real bundle: every fail mode, recovery, restarts.

The sidecar's decision path (DecisionService + ResilientEngine + Fallback) runs in-process; OPA is
stopped, killed and started for real. Deadlines are short so the whole file takes a few seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.app.bundle import LocalBundle, build_local_bundle
from sidecar.config import Config, load_config
from sidecar.decide import DecisionService
from sidecar.errors import PolicyError
from sidecar.fallback.modes import POLICY_UNAVAILABLE, Fallback, load_fallback_data
from sidecar.model.decision import DecideRequest, DecisionResult
from sidecar.policy.breaker import CircuitBreaker
from sidecar.policy.managed import ManagedOpa
from sidecar.policy.opa import OpaEngine
from sidecar.policy.resilient import ResilientEngine, RetryPolicy
from sidecar.telemetry import Telemetry
from sidecar.testing import InMemorySpans
from sidecar.tools import find_tool
from tests.support.fallback import (
    CASES_DIR,
    closed_port,
    decision_service,
    fallback_count,
    fresh_telemetry,
    request_from_case,
)
from tests.support.opa import SigningKeys, build_test_bundle, running_opa, write_source_tree
from tests.support.sidecar import isolated_config

pytestmark = pytest.mark.integration

DEADLINE_S = 1.0
COOLDOWN_S = 0.3
# legacy.yaml: "two captures and include tags route a release to prod" — OPA routes sandbox (by
# environment) and prod-us (by legacy rule legacy-1).
CASE = yaml.safe_load((CASES_DIR / "legacy.yaml").read_text(encoding="utf-8"))[2]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, LocalBundle]:
    """The case config and its real, signed local bundle (built once for the module)."""
    state = tmp_path_factory.mktemp("outage")
    config = isolated_config(load_config(CASES_DIR / "sidecar.yaml"), state)
    return config, build_local_bundle(config)


@pytest.fixture
async def managed(setup: tuple[Config, LocalBundle]) -> AsyncIterator[ManagedOpa]:
    """A managed OPA on a fixed port (so a stopped one comes back on the same URL)."""
    _, local = setup
    opa = ManagedOpa(
        find_tool("opa"),
        Path(local.bundle.path),
        verification_key=local.verification_key,
        port=closed_port(),
        startup_timeout_s=20.0,
        backoff_s=(0.5, 1.0),
    )
    async with opa:
        yield opa


def _resilient(opa: ManagedOpa, telemetry: Telemetry) -> ResilientEngine:
    return ResilientEngine(
        OpaEngine(opa.url, timeout_s=0.5, token=opa.token),
        retry=RetryPolicy(attempts=3, base_s=0.02, max_s=0.1, deadline_s=DEADLINE_S),
        breaker=CircuitBreaker(
            failure_threshold=3, cooldown_s=COOLDOWN_S, metrics=telemetry.metrics
        ),
    )


def _service(
    config: Config, opa: ManagedOpa, mode: str, spans: InMemorySpans | None = None
) -> tuple[DecisionService, Telemetry]:
    data = load_fallback_data(config) if mode == "legacy" else None
    telemetry = fresh_telemetry(spans)
    engine = _resilient(opa, telemetry)
    return decision_service(config, engine, Fallback(mode, data=data), telemetry=telemetry)


async def _timed(service: DecisionService, request: DecideRequest) -> tuple[DecisionResult, float]:
    started = time.monotonic()
    result = await service.decide(request)
    return result, time.monotonic() - started


async def _until(check: Callable[[], Any], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def _routes(result: DecisionResult) -> dict[str, str]:
    return {r.registry: f"{r.repository}:{r.tag}" for r in result.decision.routes}


@pytest.mark.parametrize("mode", ["closed", "legacy", "last-known"])
async def test_opa_down_is_answered_degraded_per_mode_then_recovers(
    setup: tuple[Config, LocalBundle], managed: ManagedOpa, mode: str
) -> None:
    config, local = setup
    spans = InMemorySpans()
    service, telemetry = _service(config, managed, mode, spans)
    request = request_from_case(CASE["request"])
    up = await service.decide(request)
    assert not up.degraded and up.bundle_revision == local.bundle.revision
    assert list(_routes(up)) == ["sandbox", "prod-us"]

    await managed.stop()
    # Same facts, another moment: last-known must still recognise them.
    later = dataclasses.replace(request, now="2026-11-28T13:00:00Z")
    down, elapsed = await _timed(service, later)
    assert down.degraded and elapsed < DEADLINE_S + 0.5
    assert down.bundle_revision == local.bundle.revision
    assert fallback_count(telemetry, mode) == 1
    decide_span = spans.by_name("policy.decide")[-1]
    assert decide_span.attributes is not None
    assert decide_span.attributes["policy.degraded"] is True
    assert decide_span.attributes["policy.fail_mode"] == mode
    if mode == "closed":
        assert not down.decision.allow and not down.decision.routes
        assert {d.reasons for d in down.decision.denied} == {(POLICY_UNAVAILABLE,)}
    elif mode == "legacy":
        assert down.decision.allow
        assert _routes(down) == {"prod-us": "apps-mirror/frontend-web:release-3"}
        assert ("sandbox", (POLICY_UNAVAILABLE,)) in {
            (d.registry, d.reasons) for d in down.decision.denied
        }
    else:
        assert down.decision == up.decision

    # The breaker is open now: the next answer does not wait for OPA at all.
    again, elapsed = await _timed(service, later)
    assert again.degraded and elapsed < 0.2

    await managed.start()

    async def recovered() -> bool:
        return not (await service.decide(request)).degraded

    await _until(recovered)
    back = await service.decide(request)
    assert back.decision == up.decision and back.bundle_revision == local.bundle.revision


async def test_killed_opa_is_restarted_and_decisions_never_block(
    setup: tuple[Config, LocalBundle], managed: ManagedOpa
) -> None:
    config, _ = setup
    service, _telemetry = _service(config, managed, "legacy")
    request = request_from_case(CASE["request"])
    assert not (await service.decide(request)).degraded
    pid = managed.pid
    assert pid is not None and managed.ready

    os.kill(pid, signal.SIGKILL)

    async def not_ready() -> bool:
        return not managed.ready

    await _until(not_ready)
    during, elapsed = await _timed(service, request)
    assert elapsed < DEADLINE_S + 0.5  # answered (degraded or by the restarted OPA) in time
    assert during.degraded or managed.ready

    async def ready() -> bool:
        return managed.ready

    await _until(ready)
    assert managed.restarts == 1 and managed.pid not in (None, pid)

    async def recovered() -> bool:
        return not (await service.decide(request)).degraded

    await _until(recovered)


BROKEN_POLICY = """\
package replication

import rego.v1

# Two complete definitions that both hold: OPA answers eval_conflict_error for every input.
decision := {"allow": true} if input.event
decision := {"allow": false} if input.image
"""


async def test_a_broken_policy_is_an_error_not_a_fallback(
    setup: tuple[Config, LocalBundle], tmp_path: Path, opa_keys: SigningKeys
) -> None:
    config, _ = setup
    source = write_source_tree(tmp_path / "src", policy=BROKEN_POLICY)
    bundle = build_test_bundle(source, opa_keys, tmp_path / "broken.tar.gz")
    async with running_opa(bundle.path, opa_keys) as opa:
        service, telemetry = _service(config, opa, "legacy")
        with pytest.raises(PolicyError, match="eval_conflict_error"):
            await service.decide(request_from_case(CASE["request"]))
    assert fallback_count(telemetry, "legacy") == 0
