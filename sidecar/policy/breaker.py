"""A circuit breaker for the policy engine: stop asking an OPA that keeps failing, probe it later.

closed → open after ``failure_threshold`` consecutive unavailability failures; open → half-open
once ``cooldown_s`` has passed, letting exactly one probe through; half-open → closed when the
probe succeeds, back to open (a fresh cool-down) when it fails. Single event loop, no locks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from sidecar.errors import PolicyUnavailable
from sidecar.telemetry import Metrics, get_logger

__all__ = ["BreakerState", "CircuitBreaker", "CircuitOpen"]

_log = get_logger("sidecar.policy.breaker")


class BreakerState(StrEnum):
    """The breaker's state; the value is what logs and the state metric report."""

    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


class CircuitOpen(PolicyUnavailable):
    """The breaker refused the call without asking OPA (it failed too often just now)."""


class CircuitBreaker:
    """Counts consecutive unavailability failures and fails fast while OPA is known to be down."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
        name: str = "opa",
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown_s <= 0:
            raise ValueError("cooldown_s must be positive")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.name = name
        self._clock = clock
        self._metrics = metrics
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        if metrics is not None:
            metrics.set_circuit_state(self._state.value)

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose cool-down is over still says open until asked)."""
        return self._state

    @property
    def failures(self) -> int:
        """Consecutive unavailability failures counted so far."""
        return self._failures

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when not open)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.cooldown_s - self._clock())

    def allow(self) -> bool:
        """Return whether a call may go to OPA now; a True in half-open reserves the one probe."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            if self.retry_in() > 0:
                return False
            self._change(BreakerState.HALF_OPEN)
        if self._probe_in_flight:
            # Only one probe at a time: a flood of requests must not all hit a recovering OPA.
            return False
        self._probe_in_flight = True
        return True

    def check(self) -> None:
        """Raise CircuitOpen unless :meth:`allow` lets the call through."""
        if not self.allow():
            raise CircuitOpen(
                f"circuit breaker for {self.name} is {self._state.value} after "
                f"{self._failures} consecutive failures; next probe in {self.retry_in():.2f}s"
            )

    def record_success(self) -> None:
        """OPA answered (even with a policy error): it is reachable, close the breaker."""
        self._failures = 0
        self._probe_in_flight = False
        if self._state is not BreakerState.CLOSED:
            self._change(BreakerState.CLOSED)

    def record_failure(self) -> None:
        """OPA was unreachable or too slow: count it, open when the threshold is reached."""
        self._failures += 1
        was_probe = self._probe_in_flight
        self._probe_in_flight = False
        # A failed probe re-opens at once; a closed breaker opens at the threshold.
        if was_probe or self._failures >= self.failure_threshold:
            self._open()

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._change(BreakerState.OPEN)

    def _change(self, state: BreakerState) -> None:
        previous, self._state = self._state, state
        if previous is state:
            return
        if self._metrics is not None:
            self._metrics.set_circuit_state(state.value)
        log = _log.warning if state is BreakerState.OPEN else _log.info
        log(
            "circuit breaker state changed",
            breaker=self.name,
            previous=previous.value,
            state=state.value,
            consecutive_failures=self._failures,
            cooldown_s=self.cooldown_s,
        )
