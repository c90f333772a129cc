"""Registry health and failover: the prober and its breaker, recovery after outages, ResolvePull.

See :mod:`sidecar.health.monitor` (probing, hysteresis, holds), :mod:`sidecar.health.recovery`
(parking, deferred replay, reconcile, sweep) and :mod:`sidecar.health.resolve` (nearest holder).
"""

from __future__ import annotations

from sidecar.health.breaker import HealthBreaker, HealthState, Transition
from sidecar.health.monitor import HealthMonitor, ProbeResult
from sidecar.health.recovery import Recovery
from sidecar.health.resolve import PullAnswer, PullCandidate, PullResolver, nearest, proximity
from sidecar.health.source import HealthView, ProbedHealth

__all__ = [
    "HealthBreaker",
    "HealthMonitor",
    "HealthState",
    "HealthView",
    "ProbeResult",
    "ProbedHealth",
    "PullAnswer",
    "PullCandidate",
    "PullResolver",
    "Recovery",
    "Transition",
    "nearest",
    "proximity",
]
