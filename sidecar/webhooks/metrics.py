"""Prometheus metrics of the registry webhook: events received and processed, by action and outcome."""

from __future__ import annotations

from typing import Literal

from prometheus_client import CollectorRegistry, Counter

from sidecar.telemetry import METRIC_PREFIX

__all__ = ["ProcessOutcome", "ReceiveOutcome", "WebhookMetrics"]

ReceiveOutcome = Literal["recorded", "duplicate", "unauthorized", "invalid", "error"]
ProcessOutcome = Literal["pushed", "pulled", "ignored", "deferred", "failed"]


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
            "(pushed, pulled, ignored, deferred: waiting for OPA, failed).",
            ["action", "outcome"],
            registry=registry,
        )

    def received(self, action: str, outcome: ReceiveOutcome, count: int = 1) -> None:
        """Count ``count`` received events; ``action`` is "unknown" when the body was unreadable."""
        self._received.labels(action=action or "unknown", outcome=outcome).inc(count)

    def processed(self, action: str, outcome: ProcessOutcome) -> None:
        """Count one processed event."""
        self._processed.labels(action=action or "unknown", outcome=outcome).inc()
