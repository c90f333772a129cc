"""Metrics: what a Prometheus scrape shows after decisions, OPA errors and revision changes."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sidecar.errors import ErrorCode
from sidecar.telemetry import Metrics, Telemetry


def _samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Parse the exposition text exactly as Prometheus would scrape it."""
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return _samples(registry).get((name, frozenset(labels.items())))


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry)


def test_decisions_are_counted_by_outcome_and_degraded(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.observe_decision("allow", False, 0.002)
    metrics.observe_decision("allow", False, 0.003)
    metrics.observe_decision("deny", True, 0.7)
    metrics.observe_decision("error", False, 0.0004)

    name = "policy_sidecar_decisions_total"
    assert _value(registry, name, outcome="allow", degraded="false") == 2
    assert _value(registry, name, outcome="deny", degraded="true") == 1
    assert _value(registry, name, outcome="error", degraded="false") == 1
    assert _value(registry, name, outcome="deny", degraded="false") == 0


def test_decision_latency_histogram_has_sub_millisecond_to_second_buckets(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.observe_decision("allow", False, 0.0004)
    metrics.observe_decision("allow", False, 0.7)

    bucket = "policy_sidecar_decision_latency_seconds_bucket"
    assert _value(registry, bucket, le="0.0005") == 1
    assert _value(registry, bucket, le="0.5") == 1
    assert _value(registry, bucket, le="1.0") == 2
    assert _value(registry, bucket, le="+Inf") == 2
    assert _value(registry, "policy_sidecar_decision_latency_seconds_count") == 2


def test_every_series_exists_before_the_first_event(registry: CollectorRegistry) -> None:
    Metrics(registry)
    samples = _samples(registry)
    for outcome in ("allow", "deny", "error"):
        for degraded in ("true", "false"):
            key = (
                "policy_sidecar_decisions_total",
                frozenset({"outcome": outcome, "degraded": degraded}.items()),
            )
            assert samples[key] == 0
    assert _value(registry, "policy_sidecar_opa_errors_total", code="policy_unavailable") == 0


def test_unknown_outcome_is_refused(metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="outcome"):
        metrics.observe_decision("maybe", False, 0.1)  # type: ignore[arg-type]


def test_opa_errors_and_latency(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.observe_opa_error(ErrorCode.POLICY_UNAVAILABLE)
    metrics.observe_opa_error("policy_error")
    metrics.observe_opa_error("policy_error")
    metrics.observe_opa_query(0.001)

    errors = "policy_sidecar_opa_errors_total"
    assert _value(registry, errors, code="policy_unavailable") == 1
    assert _value(registry, errors, code="policy_error") == 2
    assert _value(registry, "policy_sidecar_opa_query_latency_seconds_count") == 1
    assert _value(registry, "policy_sidecar_opa_query_latency_seconds_bucket", le="0.001") == 1


def test_unknown_error_code_is_refused(metrics: Metrics) -> None:
    # A free-form label would let one bad caller explode the series count.
    with pytest.raises(ValueError, match="not a valid ErrorCode"):
        metrics.observe_opa_error("connection reset by peer")


def test_revision_gauge_marks_only_the_active_revision(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    name = "policy_sidecar_bundle_revision_info"
    metrics.set_active_revision("rev-1")
    assert _value(registry, name, revision="rev-1") == 1

    metrics.set_active_revision("rev-2")
    assert _value(registry, name, revision="rev-2") == 1
    assert _value(registry, name, revision="rev-1") is None
    assert metrics.active_revision == "rev-2"

    metrics.set_active_revision("rev-2")  # repeating is a no-op, not a flap
    revisions = [k for k in _samples(registry) if k[0] == name]
    assert revisions == [(name, frozenset({("revision", "rev-2")}))]


def test_requests_in_flight_and_grpc_requests(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    with metrics.track_in_flight(), metrics.track_in_flight():
        assert _value(registry, "policy_sidecar_requests_in_flight") == 2
    assert _value(registry, "policy_sidecar_requests_in_flight") == 0

    metrics.observe_grpc("/freightliner.policy.v1.PolicyService/Decide", "OK")
    metrics.observe_grpc("/freightliner.policy.v1.PolicyService/Decide", "OK")
    metrics.observe_grpc("/freightliner.policy.v1.PolicyService/Decide", "INVALID_ARGUMENT")
    name = "policy_sidecar_grpc_requests_total"
    decide = "/freightliner.policy.v1.PolicyService/Decide"
    assert _value(registry, name, method=decide, code="OK") == 2
    assert _value(registry, name, method=decide, code="INVALID_ARGUMENT") == 1


def test_telemetry_registers_into_a_given_registry_or_its_own() -> None:
    shared = CollectorRegistry()
    given = Telemetry("a", metrics_registry=shared)
    own_a, own_b = Telemetry("b"), Telemetry("c")
    try:
        given.metrics.observe_decision("allow", False, 0.001)
        own_a.metrics.observe_decision("deny", False, 0.001)
        assert given.metrics_registry is shared
        assert _value(shared, "policy_sidecar_decisions_total", outcome="allow", degraded="false")
        # Two Telemetry objects never collide on metric names: each has its own registry.
        assert (
            _value(
                own_b.metrics_registry,
                "policy_sidecar_decisions_total",
                outcome="deny",
                degraded="false",
            )
            == 0
        )
    finally:
        for tel in (given, own_a, own_b):
            tel.shutdown()
