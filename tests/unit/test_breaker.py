"""The OPA circuit breaker: when it fails fast, when it probes, what it reports."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from sidecar.policy.breaker import BreakerState, CircuitBreaker, CircuitOpen
from sidecar.telemetry import Metrics
from sidecar.testing import CapturedLogs


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _state_metric(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("policy_sidecar_opa_circuit_state")


def test_opens_after_threshold_consecutive_failures_and_fails_fast() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=5.0, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    with pytest.raises(CircuitOpen, match=r"next probe in 5\.00s"):
        breaker.check()


def test_a_success_resets_the_consecutive_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=1.0, clock=Clock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


def test_half_open_lets_exactly_one_probe_through_after_the_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=5.0, clock=clock)
    breaker.record_failure()
    clock.now += 4.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.allow()  # the probe
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow()  # everyone else still fails fast while the probe runs
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow() and breaker.allow()


def test_a_failed_probe_reopens_for_a_fresh_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=5.0, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    clock.now += 5.0
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_in() == pytest.approx(5.0)
    clock.now += 4.0
    assert not breaker.allow()


def test_state_changes_are_a_metric_and_a_log_event() -> None:
    registry = CollectorRegistry()
    clock = Clock()
    with CapturedLogs() as logs:
        breaker = CircuitBreaker(
            failure_threshold=1, cooldown_s=1.0, clock=clock, metrics=Metrics(registry)
        )
        assert _state_metric(registry) == 0
        breaker.record_failure()
        assert _state_metric(registry) == 2
        clock.now += 1.0
        breaker.allow()
        assert _state_metric(registry) == 1
        breaker.record_success()
        assert _state_metric(registry) == 0
    changes = logs.find("circuit breaker state changed")
    assert [(c["previous"], c["state"]) for c in changes] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert changes[0]["level"] == "warning"
