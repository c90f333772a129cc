"""Builds a real DecisionService (static enrichment, real engine, real fail mode) for outage tests."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from google.protobuf.json_format import ParseDict
from prometheus_client import CollectorRegistry

from sidecar._proto import policy_pb2 as pb
from sidecar.api.convert import decide_request_from_proto
from sidecar.config import Config
from sidecar.decide import DecisionService
from sidecar.enrich import StaticEnricher, validate_request
from sidecar.fallback.modes import Fallback
from sidecar.model.decision import DecideRequest
from sidecar.records import DecisionRecords
from sidecar.telemetry import Telemetry
from sidecar.testing import InMemorySpans
from sidecar.typing import PolicyEngine

__all__ = [
    "CASES_DIR",
    "closed_port",
    "decision_service",
    "fallback_count",
    "fresh_telemetry",
    "request_from_case",
]

CASES_DIR = Path(__file__).resolve().parents[1] / "cases"


def closed_port() -> int:
    """Return a loopback port nothing listens on (bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request_from_case(request: dict[str, Any]) -> DecideRequest:
    """Turn a tests/cases request (proto YAML form) into the model the service takes."""
    clean = {k: v for k, v in request.items() if v is not None}
    msg = ParseDict(clean, pb.DecideRequest())
    # The cases state their facts, as a replay does: believed only with an override role, which
    # the case runner (tests/e2e/test_cases.py) adds too.
    msg.caller.roles.append("replay")
    return decide_request_from_proto(msg)


def decision_service(
    config: Config,
    engine: PolicyEngine,
    fallback: Fallback | None,
    *,
    telemetry: Telemetry | None = None,
    bundle_revision: str = "",
) -> tuple[DecisionService, Telemetry]:
    """Return a DecisionService wired like app.py wires it, plus its telemetry."""
    telemetry = telemetry or fresh_telemetry()

    def validate(request: DecideRequest) -> None:
        validate_request(request, config.policy.limits, config.inventory())

    service = DecisionService(
        enricher=StaticEnricher(config),
        engine=engine,
        telemetry=telemetry,
        records=DecisionRecords(),
        validate=validate,
        fallback=fallback,
        bundle_revision=bundle_revision,
    )
    return service, telemetry


def fresh_telemetry(spans: InMemorySpans | None = None) -> Telemetry:
    """Return a Telemetry with its own metrics registry and an optional in-memory span exporter."""
    return Telemetry("fallback-test", span_exporter=spans, metrics_registry=CollectorRegistry())


def fallback_count(telemetry: Telemetry, mode: str) -> float:
    """Return policy_sidecar_fallback_decisions_total{mode} as /metrics would show it."""
    value = telemetry.metrics_registry.get_sample_value(
        "policy_sidecar_fallback_decisions_total", {"mode": mode}
    )
    return value if value is not None else 0.0
