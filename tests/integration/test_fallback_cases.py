"""The legacy case table (tests/cases/legacy.yaml) answered by the native `legacy` fail mode, no OPA.

The same cases run through real gRPC + real OPA in tests/e2e/test_cases.py; here the engine points
at a closed loopback port, so every decision hits a real PolicyUnavailable and the fail mode
answers. Routes, route targets, allow and priority must equal the OPA expectations for everything
the legacy rules decide. Intentional differences (docs/policy.md, "When OPA is down"):

* only legacy rules route: a registry OPA routes by environment (or explicit rules) and no legacy
  rule names is denied POLICY_UNAVAILABLE;
* there is no environment routing, so ENV_MISMATCH never appears; every other code (scan, GDPR,
  tenancy, DR standby, explicit-rule denials) does, on every registry, exactly as OPA gives it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml

from sidecar.config import Config, load_config
from sidecar.decide import DecisionService
from sidecar.fallback.modes import POLICY_UNAVAILABLE, Fallback, load_fallback_data
from sidecar.policy.opa import OpaEngine
from sidecar.telemetry import Telemetry
from tests.support.fallback import (
    CASES_DIR,
    closed_port,
    decision_service,
    fallback_count,
    request_from_case,
)

CASES = yaml.safe_load((CASES_DIR / "legacy.yaml").read_text(encoding="utf-8"))
REVISION = "rev-last-seen"


@pytest.fixture(scope="module")
def config() -> Config:
    """The shared case config (inventory, legacy rules, data_dirs)."""
    return load_config(CASES_DIR / "sidecar.yaml")


@pytest.fixture
async def service(config: Config) -> AsyncIterator[tuple[DecisionService, Telemetry]]:
    """A DecisionService in legacy fail mode whose OPA address refuses connections."""
    engine = OpaEngine(f"http://127.0.0.1:{closed_port()}", timeout_s=2.0)
    fallback = Fallback("legacy", data=load_fallback_data(config))
    try:
        yield decision_service(config, engine, fallback, bundle_revision=REVISION)
    finally:
        await engine.close()


def _expected_denied(case: dict[str, Any], routes: list[str], source: str) -> dict[str, list[str]]:
    expect, dests = case["expect"], set(case["fallback"]["legacy_destinations"])
    opa_denied: dict[str, list[str]] = expect.get("denied", {})
    if not expect["allow"]:
        return opa_denied  # SCAN_EXPIRED / CROSS_TENANT: identical with or without OPA
    others = set(opa_denied) | set(expect.get("routes", [])) | set(expect.get("deferred", {}))
    out: dict[str, list[str]] = {}
    for name in sorted(others - {source} - set(routes) - set(expect.get("deferred", {}))):
        codes = set(opa_denied.get(name, [])) - {"ENV_MISMATCH"}
        if name not in dests:
            codes.add(POLICY_UNAVAILABLE)
        out[name] = sorted(codes)
    return out


def test_every_legacy_case_says_what_the_legacy_rules_name() -> None:
    assert len(CASES) >= 10
    assert all("legacy_destinations" in case.get("fallback", {}) for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
async def test_legacy_fail_mode_matches_the_policy(
    service: tuple[DecisionService, Telemetry], case: dict[str, Any]
) -> None:
    decisions, telemetry = service
    request = request_from_case(case["request"])
    result = await decisions.decide(request)
    decision, expect = result.decision, case["expect"]
    dests = case["fallback"]["legacy_destinations"]

    assert result.degraded
    assert result.bundle_revision == REVISION  # the last revision OPA reported
    assert fallback_count(telemetry, "legacy") == 1
    assert decision.allow == expect["allow"]
    # The policy's routes, minus those only environment routing gives: same registries, order, rank.
    routes = [r for r in expect.get("routes", []) if r in dests]
    assert [r.registry for r in decision.routes] == routes
    assert [r.rank for r in decision.routes] == list(range(1, len(routes) + 1))
    for registry, target in expect.get("route_targets", {}).items():
        if registry in routes:
            route = next(r for r in decision.routes if r.registry == registry)
            assert f"{route.repository}:{route.tag}" == target
    if "priority" in expect:
        assert decision.priority == expect["priority"]
    deferred = {k: v for k, v in expect.get("deferred", {}).items() if k in dests}
    assert {d.registry: d.reason for d in decision.deferred} == deferred
    denied = {d.registry: list(d.reasons) for d in decision.denied}
    assert denied == _expected_denied(case, routes, request.image.registry)
    codes = {r.code for r in decision.reasons}
    wanted = set(expect.get("reasons", [])) - {"ENV_MISMATCH"}
    if not routes:
        wanted.discard("LEGACY_RULE")
    assert wanted <= codes, f"reasons present: {sorted(codes)}"
