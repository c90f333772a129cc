"""Wiring of the SQS event sources: one poller per ``policy.replication.sqs`` entry, one inbox.

The pollers record into the same durable inbox as the notification endpoint, and wake the
processor that drains it: the endpoint's own when ``webhook.listen`` is set, else one started
here (same retry and dead-letter settings, ``policy.replication.webhook``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from sidecar.config import Config
from sidecar.typing import InboxAndPulls
from sidecar.webhooks import OnPush, SqsMetrics, SqsPoller, WebhookMetrics, WebhookProcessor

__all__ = ["SqsRuntime", "inbox_processor", "sqs_pollers"]


@dataclass(frozen=True, slots=True)
class SqsRuntime:
    """The running SQS pollers, by source name."""

    pollers: dict[str, SqsPoller]


@contextlib.asynccontextmanager
async def inbox_processor(
    config: Config, store: InboxAndPulls, on_push: OnPush, registry: CollectorRegistry
) -> AsyncIterator[WebhookProcessor]:
    """A running inbox processor for a sidecar without a notification endpoint."""
    webhook = config.policy.replication.webhook
    processor = WebhookProcessor(
        store,
        config.registries,
        on_push=on_push,
        metrics=WebhookMetrics(registry),
        retry_interval_s=webhook.retry_interval_s,
        max_attempts=webhook.max_attempts,
    )
    task = asyncio.create_task(processor.run(), name="webhook-processor")
    try:
        yield processor
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def sqs_pollers(
    config: Config,
    store: InboxAndPulls,
    *,
    wake: Callable[[], None],
    registry: CollectorRegistry,
) -> AsyncIterator[SqsRuntime]:
    """Start a poller per configured SQS source; stop them all on exit."""
    metrics = SqsMetrics(registry)
    pollers = {
        source.name: SqsPoller(
            source, config.registry(source.registry), store, wake=wake, metrics=metrics
        )
        for source in config.policy.replication.sqs
    }
    async with contextlib.AsyncExitStack() as stack:
        for poller in pollers.values():
            await poller.start()
            stack.push_async_callback(poller.stop)
        yield SqsRuntime(pollers)
