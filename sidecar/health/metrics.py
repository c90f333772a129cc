"""Prometheus families of registry health and recovery, registered in a caller-owned registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sidecar.telemetry import METRIC_PREFIX

__all__ = ["PROBE_BUCKETS", "HealthMetrics"]

# Loopback probes take ~1 ms, cross-region ones 50-300 ms; the top buckets catch timeouts.
PROBE_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class HealthMetrics:
    """Health gauge, probe latency, state changes and the work recovery put back in the queue."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register the families in ``registry``."""
        p = METRIC_PREFIX
        self.healthy = Gauge(
            f"{p}registry_healthy",
            "1 while decisions treat the registry as healthy, 0 while it is failed over.",
            ["registry"],
            registry=registry,
        )
        self.probe_seconds = Histogram(
            f"{p}registry_probe_seconds",
            "Latency of one health probe (GET /v2/ with auth), by outcome (ok or the error code).",
            ["registry", "outcome"],
            buckets=PROBE_BUCKETS,
            registry=registry,
        )
        self.transitions = Counter(
            f"{p}registry_health_transitions",
            "Changes of a registry's probed health state, by the state entered.",
            ["registry", "state"],
            registry=registry,
        )
        self.recovered = Counter(
            f"{p}recovery_work",
            "Work recovery put back in the queue, by kind: requeued (parked jobs), deferred "
            "(deferred destinations decided again), reconciled (missing copies found by HEAD).",
            ["registry", "kind"],
            registry=registry,
        )
