"""Prometheus metrics of the registry webhook: events received and processed, by action and outcome,
the inbox (events pending, retrying and dead-lettered), and the lag from event to decision."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sidecar.enrich import parse_rfc3339
from sidecar.telemetry import METRIC_PREFIX

if TYPE_CHECKING:
    from sidecar.webhooks.envelope import RegistryEvent

__all__ = ["ProcessOutcome", "ReceiveOutcome", "WebhookMetrics"]

ReceiveOutcome = Literal["recorded", "duplicate", "unauthorized", "invalid", "error"]
ProcessOutcome = Literal["pushed", "pulled", "ignored", "deferred", "failed", "dead"]

# Seconds: a webhook decides within a second or two; a queue backlog or an OPA outage, hours.
_LAG_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)


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
        self._lag = Histogram(
            f"{METRIC_PREFIX}webhook_event_lag_seconds",
            "Seconds from a registry event (its timestamp) to the sidecar's decision on it, by "
            "registry and how it came (webhook: a notification endpoint; sqs: an SQS source).",
            ["registry", "via"],
            buckets=_LAG_BUCKETS,
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

    def decided(self, event: RegistryEvent, registry: str, now: datetime | None = None) -> None:
        """Observe the lag of an event of ``registry`` (a configured name) from its timestamp."""
        raw = event.raw or {}
        stamp = raw.get("timestamp")
        occurred = parse_rfc3339(stamp) if isinstance(stamp, str) else None
        if occurred is None:
            return
        # The label takes only known values: a sender's own keys must not grow the series.
        origin = raw.get("origin")
        via = "sqs" if isinstance(origin, str) and origin.startswith("sqs:") else "webhook"
        lag = ((now or datetime.now(UTC)) - occurred).total_seconds()
        # A sender's clock ahead of ours is no negative wait.
        self._lag.labels(registry=registry, via=via).observe(max(0.0, lag))
