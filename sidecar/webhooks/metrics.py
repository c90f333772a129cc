"""Prometheus metrics of the registry webhook: events received and processed, by action and outcome,
and the inbox: events pending, retrying and dead-lettered."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge

from sidecar.telemetry import METRIC_PREFIX

__all__ = ["ProcessOutcome", "ReceiveOutcome", "WebhookMetrics"]

ReceiveOutcome = Literal["recorded", "duplicate", "unauthorized", "invalid", "error"]
ProcessOutcome = Literal["pushed", "pulled", "ignored", "deferred", "failed", "dead"]


class WebhookMetrics:
    """The webhook's counters, registered in a caller-owned Prometheus registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register the webhook metric families in ``registry``."""
        self._received = Counter(
            f"{METRIC_PREFIX}webhook_events_received",
            "Registry notification events received, by action and outcome "
            "(recorded, duplicate, unauthorized, invalid, error).",
            ["action", "outcome"],
            registry=registry,
        )
        self._processed = Counter(
            f"{METRIC_PREFIX}webhook_events_processed",
            "Recorded registry events processed, by action and outcome "
            "(pushed, pulled, ignored, deferred: waiting for OPA, failed: retried later, "
            "dead: failed its last attempt and dead-lettered).",
            ["action", "outcome"],
            registry=registry,
        )
        self._inbox = Gauge(
            f"{METRIC_PREFIX}webhook_inbox_events",
            "Registry events in the inbox, by state (pending: not tried yet, retrying: failed or "
            "waiting for OPA, dead: dead-lettered, kept and never retried automatically).",
            ["state"],
            registry=registry,
        )

    def received(self, action: str, outcome: ReceiveOutcome, count: int = 1) -> None:
        """Count ``count`` received events; ``action`` is "unknown" when the body was unreadable."""
        self._received.labels(action=action or "unknown", outcome=outcome).inc(count)

    def processed(self, action: str, outcome: ProcessOutcome) -> None:
        """Count one processed event."""
        self._processed.labels(action=action or "unknown", outcome=outcome).inc()

    def inbox(self, counts: Mapping[str, int]) -> None:
        """Set the inbox gauge from ``counts`` by state (pending, retrying, dead)."""
        for state, count in counts.items():
            self._inbox.labels(state=state).set(count)
