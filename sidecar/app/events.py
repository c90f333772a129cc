"""What a registry event does, whichever source brought it: the processor's three handlers.

Built once per sidecar (the propagation metric is registered in the sidecar's registry) and
handed to the one :class:`~sidecar.webhooks.WebhookProcessor` that drains the inbox — the
webhook endpoints' today; a poller (ECR/SQS, Pub/Sub) records into the same inbox and wakes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.app.replication import ReplicationParts
from sidecar.config import Config
from sidecar.errors import PolicyUnavailable
from sidecar.model.decision import DecideRequest, ImageRef
from sidecar.reconcile.propagate import DeletePropagator
from sidecar.replicate.rescan import Rescanner
from sidecar.replicate.service import ReplicationService
from sidecar.telemetry import Telemetry
from sidecar.webhooks import OnDelete, OnPush, OnRescan

__all__ = ["EventHandlers", "event_handlers"]


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
