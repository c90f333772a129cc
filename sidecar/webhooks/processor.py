"""Drains the durable webhook inbox: pushes of tagged manifests trigger ``on_push``, pulls count.

The endpoint records every event before acknowledging it; this processor is the only consumer.
An event is completed only after its effect is persisted (``on_push`` returned, or the pull count
was added), so a crash in between replays it on restart: at-least-once, which is safe because the
lead's ``on_push`` enqueues jobs idempotently by digest and destination. ``on_push`` raising
:class:`PolicyUnavailable` (the decision came from the fail mode) leaves the event pending too.

A failed event never blocks the ones behind it: the store is told when it may be tried next
(``retry_interval_s``, doubled per failure) and leaves it out of the pending events until then.
After ``max_attempts`` failures it is dead-lettered: kept with its last error, never retried
automatically (``policy-sidecar jobs --events`` lists it). Waiting for OPA spends no attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from opentelemetry import trace

from sidecar.config import RegistryConfig
from sidecar.errors import InvalidArgument, PolicyUnavailable, WebhookRejected
from sidecar.model.decision import ImageRef
from sidecar.telemetry import get_logger
from sidecar.typing import InboxAndPulls
from sidecar.webhooks.envelope import RegistryEvent, decode_stored
from sidecar.webhooks.metrics import ProcessOutcome, WebhookMetrics

__all__ = ["OnPush", "WebhookProcessor"]

OnPush = Callable[[ImageRef], Awaitable[None]]

_REFERRER_TAG = re.compile(r"sha256-[0-9a-f]{64}(\.[a-z]+)?")

_log = get_logger("sidecar.webhooks")
_tracer = trace.get_tracer("sidecar.webhooks")


class WebhookProcessor:
    """Processes recorded events in order; ``wake()`` after recording, ``run()`` as a task."""

    def __init__(
        self,
        store: InboxAndPulls,
        registries: Sequence[RegistryConfig],
        *,
        on_push: OnPush,
        metrics: WebhookMetrics | None = None,
        retry_interval_s: float = 5.0,
        max_attempts: int = 10,
        batch: int = 100,
    ) -> None:
        """Process events of ``store``; ``retry_interval_s`` paces retries of failed events (the
        first wait, doubled per failure) and ``max_attempts`` failures dead-letter an event."""
        self._store = store
        self._registries = {r.name: r for r in registries}
        self._on_push = on_push
        self._metrics = metrics
        self._retry_interval_s = retry_interval_s
        self._max_attempts = max(1, max_attempts)
        self._batch = batch
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """Ask the running loop to drain now (called after events were recorded)."""
        self._wakeup.set()

    async def run(self) -> None:
        """Drain pending events (first those left by a previous run), then on every wake-up."""
        while True:
            self._wakeup.clear()
            try:
                await self.drain()
            except Exception as exc:  # a store outage must not kill the loop; retry later
                _log.error("webhook inbox drain failed", problem=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._retry_interval_s):
                    await self._wakeup.wait()

    async def drain(self) -> int:
        """Process every event due now once; return how many were completed."""
        completed = 0
        # Only events due when the drain started: one that fails now is scheduled after that
        # (by the store, in the query), so it is neither spun on nor allowed to fill the batch.
        started = datetime.now(UTC)
        while True:
            pending = await self._store.pending_events(self._batch, due=started)
            if not pending:
                break
            for event_id, payload in pending:
                if await self._process(event_id, payload):
                    completed += 1
        await self._observe()
        return completed

    async def _observe(self) -> None:
        if self._metrics is not None:
            self._metrics.inbox(await self._store.inbox_counts())

    async def _process(self, event_id: str, payload: bytes) -> bool:
        action = "unknown"
        with _tracer.start_as_current_span("webhook.process") as span:
            span.set_attribute("webhook.event_id", event_id)
            try:
                registry_name, event = decode_stored(payload)
                action = event.action
                span.set_attribute("webhook.action", action)
                outcome = await self._apply(registry_name, event)
                if self._metrics is not None:
                    known = registry_name if registry_name in self._registries else "unknown"
                    self._metrics.decided(event, known)
            except WebhookRejected as exc:
                # A stored event we cannot read will never become readable: drop it, loudly.
                _log.error("unreadable webhook event dropped", event_id=event_id, problem=str(exc))
                outcome = "ignored"
            except InvalidArgument as exc:
                # The image it names is malformed (a tag or repository the registry allowed but
                # the sidecar refuses): no retry can change that, so it must not stay pending.
                _log.error(
                    "invalid webhook event dropped",
                    event_id=event_id,
                    action=action,
                    problem=str(exc),
                )
                outcome = "ignored"
            except PolicyUnavailable as exc:
                # OPA is down: the event waits (pending) and is decided again on the next drain.
                _log.warning(
                    "webhook event waits for the policy engine", event_id=event_id, problem=str(exc)
                )
                await self._store.fail_event(
                    event_id,
                    error=str(exc),
                    retry_in_s=self._retry_interval_s,
                    max_attempts=self._max_attempts,
                    count=False,
                )
                self._count(action, "deferred")
                return False
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(trace.StatusCode.ERROR, str(exc))
                problem = f"{type(exc).__name__}: {exc}"
                dead = await self._store.fail_event(
                    event_id,
                    error=problem,
                    retry_in_s=self._retry_interval_s,
                    max_attempts=self._max_attempts,
                )
                if dead:
                    _log.error(
                        "webhook event dead-lettered: not retried any more",
                        event_id=event_id,
                        action=action,
                        attempts=self._max_attempts,
                        problem=problem,
                    )
                    self._count(action, "dead")
                    return False
                _log.error(
                    "webhook event processing failed; will retry",
                    event_id=event_id,
                    action=action,
                    problem=problem,
                )
                self._count(action, "failed")
                return False
            await self._store.complete_event(event_id)
            span.set_attribute("webhook.outcome", outcome)
            self._count(action, outcome)
            return True

    async def _apply(self, registry_name: str, event: RegistryEvent) -> ProcessOutcome:
        registry = self._registries.get(registry_name)
        if registry is None:
            # The inventory changed since the event was recorded; nothing left to act for.
            _log.warning(
                "webhook event for a registry no longer configured", registry=registry_name
            )
            return "ignored"
        if not event.is_manifest:
            return "ignored"
        if event.action == "push":
            return await self._push(registry, event)
        if event.action == "pull":
            return await self._pull(registry, event)
        return "ignored"

    async def _push(self, registry: RegistryConfig, event: RegistryEvent) -> ProcessOutcome:
        if not event.tag or _REFERRER_TAG.fullmatch(event.tag):
            # Pushes by digest are index children or referrers, and cosign-style tags
            # (sha256-<hex>.sig|.att|.sbom) are referrers too: the tagged parent's copy carries them.
            return "ignored"
        ref = ImageRef(registry.name, event.repository, event.tag, event.digest)
        _log.info("registry push", image=str(ref), event_id=event.id)
        await self._on_push(ref)
        return "pushed"

    async def _pull(self, registry: RegistryConfig, event: RegistryEvent) -> ProcessOutcome:
        region = registry.region or registry.facts.region
        if not region:
            # access is keyed by region; a registry without one cannot place the pull anywhere.
            _log.warning("pull from a registry without a region ignored", registry=registry.name)
            return "ignored"
        await self._store.add_pulls(event.repository, region)
        return "pulled"

    def _count(self, action: str, outcome: ProcessOutcome) -> None:
        if self._metrics is not None:
            self._metrics.processed(action, outcome)
