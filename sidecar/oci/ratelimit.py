"""A token bucket limiting the request rate to one registry (burst up to ``burst``, then ``rate``/s)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """Hands out request slots at ``rate`` per second after an initial ``burst``.

    Callers reserve a slot and wait the returned delay, so concurrent waiters are served in the
    order they asked (the bucket may go negative: debt is paid back by later refills). ``clock``
    and ``sleep`` are injectable so tests drive time without sleeping.
    """

    def __init__(
        self,
        rate: float,
        burst: int = 10,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Start full: ``burst`` requests may go at once, then ``rate`` per second."""
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)

    @property
    def available(self) -> float:
        """Tokens available right now (negative while reservations are outstanding)."""
        self._refill()
        return self._tokens

    def reserve(self) -> float:
        """Take one slot and return how many seconds the caller must wait before using it."""
        self._refill()
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def acquire(self) -> float:
        """Wait for one slot; return the seconds waited (0 when a token was available)."""
        delay = self.reserve()
        if delay > 0:
            await self._sleep(delay)
        return delay
