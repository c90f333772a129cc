"""The health breaker of one registry: probe outcomes in, a health state with hysteresis out.

``unknown`` → ``healthy`` on the first successful probe. ``healthy`` → ``unhealthy`` after
``failure_threshold`` consecutive failures; ``unhealthy`` → ``healthy`` after
``success_threshold`` consecutive successes. Either flip also waits until the state is at least
``min_dwell_s`` old, so a registry flapping faster than that cannot thrash decisions: its
outcomes keep being counted and the flip happens once the dwell is over, if the streak holds.

A registry that has never answered stays ``unknown`` and keeps its configured health: an
endpoint that was never reachable is more often a missing route or credential than an outage,
and failing it over would move work away on a guess. Pure state machine, clock injectable.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["HealthBreaker", "HealthState", "Transition"]


class HealthState(StrEnum):
    """A registry's probed health; the value is what logs, metrics and the job store use."""

    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of a registry's health state, with the streak and error that caused it."""

    registry: str
    previous: HealthState
    state: HealthState
    consecutive: int
    error: str = ""

    @property
    def recovered(self) -> bool:
        """True when a registry known to be down came back (recovery must catch up)."""
        return self.previous is HealthState.UNHEALTHY and self.state is HealthState.HEALTHY


class HealthBreaker:
    """Counts consecutive probe outcomes of one registry and flips its state with hysteresis."""

    def __init__(
        self,
        registry: str,
        *,
        failure_threshold: int = 3,
        success_threshold: int = 2,
        min_dwell_s: float = 30.0,
        state: HealthState = HealthState.UNKNOWN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Start in ``state`` (a remembered state counts as old: the first flip needs no dwell)."""
        if failure_threshold < 1 or success_threshold < 1:
            raise ValueError("thresholds must be at least 1")
        if min_dwell_s < 0:
            raise ValueError("min_dwell_s must not be negative")
        self.registry = registry
        self._failure_threshold = failure_threshold
        self._success_threshold = success_threshold
        self._min_dwell_s = min_dwell_s
        self._clock = clock
        self._state = state
        self._changed_at = -math.inf
        self._failures = 0
        self._successes = 0

    @property
    def state(self) -> HealthState:
        """The current state."""
        return self._state

    @property
    def consecutive_failures(self) -> int:
        """Failed probes in a row, up to the latest."""
        return self._failures

    @property
    def consecutive_successes(self) -> int:
        """Successful probes in a row, up to the latest."""
        return self._successes

    def record(self, ok: bool, error: str = "", *, conclusive: bool = False) -> Transition | None:
        """Count one probe outcome; return the transition when the state flips, else None.

        ``conclusive`` marks a failure that needs no first contact to mean "down": the sidecar's
        own credentials for the registry are unusable (its secret is missing or malformed).
        """
        if ok:
            self._successes, self._failures = self._successes + 1, 0
        else:
            self._failures, self._successes = self._failures + 1, 0
        target = self._target(ok, conclusive)
        if target is None:
            return None
        previous, self._state = self._state, target
        if previous is not HealthState.UNKNOWN:
            # First contact changes nothing a decision sees, so it starts no dwell.
            self._changed_at = self._clock()
        streak = self._successes if ok else self._failures
        return Transition(self.registry, previous, target, streak, "" if ok else error)

    def _target(self, ok: bool, conclusive: bool = False) -> HealthState | None:
        state = self._state
        if state is HealthState.UNKNOWN:
            # First contact proves the route and credentials; before it nothing is concluded,
            # unless the credentials are known unusable: no contact will ever be made then.
            if ok:
                return HealthState.HEALTHY
            down = conclusive and self._failures >= self._failure_threshold
            return HealthState.UNHEALTHY if down else None
        if self._clock() - self._changed_at < self._min_dwell_s:
            return None
        if state is HealthState.HEALTHY and self._failures >= self._failure_threshold:
            return HealthState.UNHEALTHY
        if state is HealthState.UNHEALTHY and self._successes >= self._success_threshold:
            return HealthState.HEALTHY
        return None
