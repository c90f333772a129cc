"""When a failed copy is retried, parked or failed for good, and how long to wait before retrying."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from sidecar.errors import DigestMismatch, RegistryError, RegistryUnavailable

__all__ = ["Outcome", "RetryPolicy"]

Outcome = Literal["retry", "park", "fail"]

# Statuses meaning "not now" rather than "not this request": throttled, bad gateway, unavailable.
_UNAVAILABLE = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped; ``rng`` is injectable for deterministic tests.

    ``attempt`` counts from 1 (the attempt that just failed). After ``max_attempts`` attempts an
    unreachable, throttling or unavailable registry (429/502/503/504) parks the job until
    recovery requeues it; any other transient error (a 500, a transfer cut short) fails it.
    """

    max_attempts: int = 5
    base_s: float = 0.5
    max_s: float = 60.0
    jitter: Literal["full", "none"] = "full"
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Return seconds to wait after failed ``attempt``; a registry's Retry-After is a floor."""
        ceiling = min(self.max_s, self.base_s * 2 ** max(0, attempt - 1))
        # Full jitter spreads retries of many jobs hitting one registry over the whole window.
        wait = self.rng.uniform(0.0, ceiling) if self.jitter == "full" else ceiling
        if retry_after is not None and retry_after > wait:
            return retry_after
        return wait

    def classify(self, exc: BaseException, attempt: int = 1) -> Outcome:
        """Return what to do after ``exc`` ended attempt number ``attempt``."""
        exhausted = attempt >= self.max_attempts
        if isinstance(exc, RegistryUnavailable):
            return "park" if exhausted else "retry"
        if isinstance(exc, DigestMismatch):
            # Corrupt content does not heal by retrying; a person has to look.
            return "fail"
        if isinstance(exc, RegistryError) and exc.transient:
            if not exhausted:
                return "retry"
            # Throttled or overloaded: the registry cannot take the copy *now*. Failing would
            # lose the job for good (nothing retries a failed job), so it parks and the
            # recovery sweep queues it again later.
            return "park" if exc.status in _UNAVAILABLE else "fail"
        return "fail"
