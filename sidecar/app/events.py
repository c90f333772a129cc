"""What a registry event does, and where events come from: the processor's handlers, its sources.

:func:`event_handlers` builds the processor's three handlers once per sidecar (the propagation
metric is registered in the sidecar's registry): a push replicates, a scan re-decides, a delete
propagates (opt-in). The one :class:`~sidecar.webhooks.WebhookProcessor` draining the inbox is the
webhook endpoints' when ``webhook.listen`` is set, else :func:`inbox_processor` starts one (same
retry and dead-letter settings) for the SQS pollers (:func:`sqs_pollers`), which record into the
same inbox and wake it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from sidecar.app.replication import ReplicationParts
from sidecar.config import Config
from sidecar.errors import PolicyUnavailable
from sidecar.model.decision import DecideRequest, ImageRef
from sidecar.reconcile.propagate import DeletePropagator
from sidecar.replicate.rescan import Rescanner
from sidecar.replicate.service import ReplicationService
from sidecar.tasks import cancel_and_wait
from sidecar.telemetry import Telemetry
from sidecar.typing import InboxAndPulls
from sidecar.webhooks import (
    OnDelete,
    OnPush,
    OnRescan,
    SqsMetrics,
    SqsPoller,
    WebhookMetrics,
    WebhookProcessor,
)

__all__ = ["EventHandlers", "SqsRuntime", "event_handlers", "inbox_processor", "sqs_pollers"]


@dataclass(frozen=True, slots=True)
class EventHandlers:
    """The processor's ``on_push``, ``on_rescan`` and ``on_delete``."""

    on_push: OnPush
    on_rescan: OnRescan
    on_delete: OnDelete


def event_handlers(
    config: Config, replication: ReplicationService, parts: ReplicationParts, telemetry: Telemetry
) -> EventHandlers:
    """Return the handlers: a push replicates, a scan re-decides, a delete propagates (opt-in)."""
    fail_mode = config.policy.fail_mode

    async def on_push(image: ImageRef) -> None:
        # A push is replicated exactly like a Replicate call (decide, then durable jobs).
        # await_policy=False: the inbox keeps the event itself (below), one record is enough.
        outcome = await replication.replicate(
            DecideRequest(image=image, event="push"), await_policy=False
        )
        if outcome.result.degraded:
            # A fail-mode answer is no verdict on the image (closed denies everything): the
            # event stays pending and is decided again once OPA answers, so a push during an
            # outage still gets the routes OPA wants. Jobs the fail mode queued are kept.
            raise PolicyUnavailable(
                f"{image}: decided by fail mode {fail_mode!r} "
                "while OPA is unavailable; the push is decided again when OPA answers"
            )

    return EventHandlers(
        on_push=on_push,
        # A scan or referrer event decides the digest's images again (same path as a push).
        on_rescan=Rescanner(parts.clients, on_push, mark=parts.referrer_marks.mark),
        # A source deletion removes only the sidecar's own copies, as delete jobs.
        on_delete=DeletePropagator(
            parts.store,
            mode=config.policy.replication.webhook.propagate_deletes,
            sources=config.policy.reconcile.sources,
            wake=parts.pool.wake,
            metrics_registry=telemetry.metrics_registry,
        ),
    )


@dataclass(frozen=True, slots=True)
class SqsRuntime:
    """The running SQS pollers, by source name."""

    pollers: dict[str, SqsPoller]


@contextlib.asynccontextmanager
async def inbox_processor(
    config: Config,
    store: InboxAndPulls,
    handlers: EventHandlers,
    registry: CollectorRegistry,
    *,
    owner: str = "",
) -> AsyncIterator[WebhookProcessor]:
    """A running inbox processor for a sidecar without a notification endpoint."""
    webhook = config.policy.replication.webhook
    processor = WebhookProcessor(
        store,
        config.registries,
        on_push=handlers.on_push,
        on_rescan=handlers.on_rescan,
        on_delete=handlers.on_delete,
        metrics=WebhookMetrics(registry),
        retry_interval_s=webhook.retry_interval_s,
        max_attempts=webhook.max_attempts,
        owner=owner,
        lease_s=webhook.lease_s,
    )
    task = asyncio.create_task(processor.run(), name="webhook-processor")
    try:
        yield processor
    finally:
        await cancel_and_wait(task)


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
