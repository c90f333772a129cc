"""Prometheus metrics of the registry webhooks, per source format: events received and processed,
by action and outcome, the lag from the registry's event time to its decision, and the inbox:
events pending, retrying and dead-lettered."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sidecar.telemetry import METRIC_PREFIX

__all__ = ["ProcessOutcome", "ReceiveOutcome", "WebhookMetrics"]

ReceiveOutcome = Literal["recorded", "duplicate", "unauthorized", "invalid", "error"]
ProcessOutcome = Literal[
    "pushed", "pulled", "deleted", "rescanned", "ignored", "deferred", "failed", "dead"
]
_LAG_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class WebhookMetrics:
    """The webhook's counters, registered in a caller-owned Prometheus registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register the webhook metric families in ``registry``."""
        self._received = Counter(
            f"{METRIC_PREFIX}webhook_events_received",
            "Registry events received, by source format, action and outcome "
            "(recorded, duplicate: deduplicated, unauthorized, invalid, error).",
            ["source", "action", "outcome"],
            registry=registry,
        )
        self._processed = Counter(
            f"{METRIC_PREFIX}webhook_events_processed",
            "Recorded registry events processed, by source format, action and outcome "
            "(pushed, pulled, deleted: removals planned, rescanned: re-decided, ignored, "
            "deferred: waiting for OPA, failed: retried later, dead: dead-lettered).",
            ["source", "action", "outcome"],
            registry=registry,
        )
        self._lag = Histogram(
            f"{METRIC_PREFIX}webhook_event_lag_seconds",
            "From the registry's event time to the sidecar's decision on it, by source format "
            "(events whose format carries no time are not observed).",
            ["source"],
            buckets=_LAG_BUCKETS,
            registry=registry,
        )
        self._inbox = Gauge(
            f"{METRIC_PREFIX}webhook_inbox_events",
            "Registry events in the inbox, by state (pending: not tried yet, retrying: failed or "
            "waiting for OPA, dead: dead-lettered, kept and never retried automatically).",
            ["state"],
            registry=registry,
        )

    def received(
        self, action: str, outcome: ReceiveOutcome, count: int = 1, *, source: str = "distribution"
    ) -> None:
        """Count ``count`` received events; ``action`` is "unknown" when the body was unreadable."""
        self._received.labels(source=source, action=action or "unknown", outcome=outcome).inc(count)

    def processed(
        self, action: str, outcome: ProcessOutcome, *, source: str = "distribution"
    ) -> None:
        """Count one processed event."""
        self._processed.labels(source=source, action=action or "unknown", outcome=outcome).inc()

    def lag(self, source: str, seconds: float) -> None:
        """Observe one event's lag from its event time to its decision."""
        self._lag.labels(source=source).observe(max(0.0, seconds))

    def inbox(self, counts: Mapping[str, int]) -> None:
        """Set the inbox gauge from ``counts`` by state (pending, retrying, dead)."""
        for state, count in counts.items():
            self._inbox.labels(state=state).set(count)
