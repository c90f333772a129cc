"""Per-identity call rate limits: one token bucket per caller, kept in a bounded LRU.

A caller is keyed by its authenticated identity (``token:ci``, a certificate subject); a caller
that could not authenticate has no identity worth trusting, so it is keyed by its peer address
(:func:`peer_bucket`: the IP without the port, an IPv6 address by its /64), which is what a
flood from one host shares. The limiter never waits: a call over its identity's rate is refused
at once (``ResourceExhausted``), so a flood costs the sidecar a dictionary lookup per call.

Memory is bounded by ``max_identities``: the least recently seen bucket is forgotten first. A
forgotten identity starts again with a full bucket, so an attacker cycling through more than
``max_identities`` addresses gets ``burst`` calls per address — the price of a bound.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from sidecar.errors import ResourceExhausted
from sidecar.telemetry import METRIC_PREFIX

__all__ = ["CallRateLimiter", "RateLimit", "peer_bucket", "rate_limited_counter"]

_IPV6_PREFIX = 64  # one host or one customer network: addresses inside a /64 are one bucket


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket's shape: ``rate`` calls per second after an initial ``burst``."""

    rate: float
    burst: int
    max_identities: int = 4096
    config_key: str = ""  # named in the refusal, e.g. "policy.admin.rate_limit"

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1 or self.max_identities < 1:
            raise ValueError(
                f"rate limit needs rate > 0, burst >= 1 and max_identities >= 1: {self}"
            )


def peer_bucket(peer: str) -> str:
    """Return the key an unauthenticated caller at gRPC ``peer`` is limited by (``peer:…``).

    ``ipv4:10.0.0.7:51234`` → ``peer:10.0.0.7``; ``ipv6:[2001:db8::1]:443`` →
    ``peer:2001:db8::/64``; a unix socket (or anything else) is one bucket per listener path.
    """
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return "peer:" + rest.rpartition(":")[0]
    if kind == "ipv6":
        host = rest.rpartition(":")[0].strip("[]")
        try:
            network = ipaddress.IPv6Network(f"{host}/{_IPV6_PREFIX}", strict=False)
        except ValueError:
            return f"peer:{host[:64]}"
        return f"peer:{network}"
    return f"peer:{peer[:128]}"


def rate_limited_counter(registry: CollectorRegistry | None) -> Counter:
    """Return ``policy_sidecar_rate_limited_calls_total``: create it once per registry, share it."""
    return Counter(
        f"{METRIC_PREFIX}rate_limited_calls",
        "Calls refused RESOURCE_EXHAUSTED by a per-identity rate limit, by surface and by "
        "whether the caller was authenticated.",
        ["surface", "caller"],
        registry=registry,
    )


class CallRateLimiter:
    """Refuses calls over ``limit`` per identity; counts refusals in a metric by ``surface``.

    ``surface`` ("admin", "policy"...) labels the metric so several RPC families can each have a
    limiter with their own buckets and settings, sharing one ``metric``
    (:func:`rate_limited_counter`).
    """

    def __init__(
        self,
        limit: RateLimit,
        *,
        surface: str,
        metric: Counter,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._surface = surface
        self._clock = clock
        # identity -> (tokens, last refill); least recently used first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._refused = metric
        for caller in ("authenticated", "unauthenticated"):
            self._refused.labels(surface=surface, caller=caller)

    @property
    def limit(self) -> RateLimit:
        """Return the bucket shape this limiter enforces."""
        return self._limit

    def __len__(self) -> int:
        return len(self._buckets)

    def try_acquire(self, identity: str) -> bool:
        """Take one call from ``identity``'s bucket; False (and counted) when it is empty."""
        now = self._clock()
        limit = self._limit
        tokens, stamp = self._buckets.pop(identity, (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + max(0.0, now - stamp) * limit.rate)
        allowed = tokens >= 1.0
        self._buckets[identity] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > limit.max_identities:
            self._buckets.popitem(last=False)
        if not allowed:
            caller = "unauthenticated" if identity.startswith("peer:") else "authenticated"
            self._refused.labels(surface=self._surface, caller=caller).inc()
        return allowed

    def exhausted(self, identity: str) -> bool:
        """Whether ``identity``'s bucket is empty now (nothing taken; an unseen one is full)."""
        entry = self._buckets.get(identity)
        if entry is None:
            return False
        tokens, stamp = entry
        refilled = tokens + max(0.0, self._clock() - stamp) * self._limit.rate
        return min(float(self._limit.burst), refilled) < 1.0

    def check(self, identity: str, what: str) -> None:
        """Take one call from ``identity``'s bucket or raise ResourceExhausted naming the limit."""
        if self.try_acquire(identity):
            return
        limit = self._limit
        where = f" ({limit.config_key})" if limit.config_key else ""
        raise ResourceExhausted(
            f"{what}: rate limit of {limit.rate:g} calls/s (burst {limit.burst}) per caller "
            f"exceeded by {identity}{where}; retry later",
            limit.config_key,
        )
