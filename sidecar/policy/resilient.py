"""A policy engine wrapper that retries an unavailable OPA within one overall deadline.

Only :class:`PolicyUnavailable` is retried (exponential backoff with full jitter); a
:class:`PolicyError` means OPA answered and the policy is broken, so it fails the same way on every
attempt and is raised at once. The circuit breaker makes calls fail fast while OPA is known down,
so a dead OPA costs callers microseconds instead of a full deadline each.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

from sidecar.config import OpaSettings
from sidecar.errors import PolicyError, PolicyUnavailable
from sidecar.model.decision import EngineAnswer
from sidecar.policy.breaker import CircuitBreaker
from sidecar.telemetry import Metrics
from sidecar.telemetry.names import ATTR_OPA_ATTEMPTS
from sidecar.typing import PolicyEngine

__all__ = ["ResilientEngine", "RetryPolicy", "resilient_engine"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry an unavailable OPA for one decision."""

    attempts: int = 3
    base_s: float = 0.05
    max_s: float = 0.5
    deadline_s: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.base_s <= 0 or self.max_s < self.base_s:
            raise ValueError("backoff needs 0 < base_s <= max_s")
        if self.deadline_s <= 0:
            raise ValueError("deadline_s must be positive")

    def backoff(self, retry: int, draw: float) -> float:
        """Delay before retry number ``retry`` (0-based): full jitter, ``draw`` in [0, 1)."""
        # Full jitter (AWS architecture blog): spreads the retries of many callers that failed
        # together, so a restarting OPA is not hit by synchronised waves.
        return float(draw * min(self.max_s, self.base_s * (2**retry)))


class ResilientEngine:
    """Implements typing.PolicyEngine over another engine: deadline, retries, circuit breaker."""

    def __init__(
        self,
        engine: PolicyEngine,
        *,
        retry: RetryPolicy,
        breaker: CircuitBreaker,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.retry = retry
        self.breaker = breaker
        self._sleep = sleep
        self._rand = rand
        self._clock = clock

    async def evaluate(self, policy_input: Mapping[str, Any]) -> EngineAnswer:
        """Evaluate with retries; PolicyUnavailable when OPA stays unreachable until the deadline."""
        span = trace.get_current_span()
        deadline = self._clock() + self.retry.deadline_s
        last: PolicyUnavailable | None = None
        attempt = 0
        while attempt < self.retry.attempts:
            attempt += 1
            self.breaker.check()  # raises CircuitOpen: fail fast, the fallback answers
            remaining = deadline - self._clock()
            try:
                # The inner engine has its own per-attempt timeout; this one keeps the last
                # attempt from running past the overall deadline.
                async with asyncio.timeout(max(remaining, 0.001)):
                    answer = await self.engine.evaluate(policy_input)
            except TimeoutError:
                last = PolicyUnavailable(
                    f"OPA did not answer within the {self.retry.deadline_s:g}s decision deadline"
                )
                self.breaker.record_failure()
            except PolicyUnavailable as exc:
                last = exc
                self.breaker.record_failure()
            except PolicyError:
                self.breaker.record_success()  # OPA is up; the policy is what is broken
                raise
            else:
                self.breaker.record_success()
                span.set_attribute(ATTR_OPA_ATTEMPTS, attempt)
                return answer
            if attempt >= self.retry.attempts:
                break
            delay = self.retry.backoff(attempt - 1, self._rand())
            if self._clock() + delay >= deadline:
                break  # sleeping would pass the deadline: answer now instead
            span.add_event(
                "opa retry", {"attempt": attempt, "delay_s": delay, "error": last.message}
            )
            await self._sleep(delay)
        span.set_attribute(ATTR_OPA_ATTEMPTS, attempt)
        if last is None:  # unreachable: attempts >= 1 and every attempt that ends here sets it
            raise PolicyUnavailable("OPA was not asked")
        raise PolicyUnavailable(f"{last.message} (gave up after {attempt} attempt(s))") from last

    async def close(self) -> None:
        """Close the wrapped engine."""
        await self.engine.close()


def resilient_engine(
    engine: PolicyEngine, settings: OpaSettings, metrics: Metrics | None = None
) -> ResilientEngine:
    """Wrap ``engine`` with the deadline, retries and breaker configured in ``policy.opa``."""
    return ResilientEngine(
        engine,
        retry=RetryPolicy(
            attempts=settings.attempts,
            base_s=settings.backoff_base_ms / 1000,
            max_s=settings.backoff_max_ms / 1000,
            deadline_s=settings.deadline_ms / 1000,
        ),
        breaker=CircuitBreaker(
            failure_threshold=settings.breaker_threshold,
            cooldown_s=settings.breaker_cooldown_s,
            metrics=metrics,
        ),
    )
