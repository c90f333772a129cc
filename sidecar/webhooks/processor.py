"""Drains the durable webhook inbox: what each normalised event does, whatever its source.

* ``push`` of a tagged manifest → ``on_push`` (decide and replicate). A push by digest alone or
  of a cosign-style referrer tag (``sha256-<hex>.sig|.att``) → ``on_rescan``: a new signature or
  scan attestation re-decides the images of its subject digest (a push by digest may be an
  index child; ``on_rescan`` finds no subject then and does nothing).
* ``scan`` (a scan finished: Harbor, ECR) → ``on_rescan`` for that digest (and tag, if given).
* ``delete`` → ``on_delete``: the copies the sidecar made of the deleted tag or digest are
  planned for removal (``propagate_deletes``; off: nothing).
* ``pull`` → a pull count for ``input.access``.

The endpoint records every event before acknowledging it; this processor is the only consumer.
An event is completed only after its effect is persisted (``on_push`` returned, or the pull count
was added), so a crash in between replays it on restart: at-least-once, which is safe because the
lead's ``on_push`` enqueues jobs idempotently by digest and destination. ``on_push`` raising
:class:`PolicyUnavailable` (the decision came from the fail mode) leaves the event pending too.

A failed event never blocks the ones behind it: the store is told when it may be tried next
(``retry_interval_s``, doubled per failure) and leaves it out of the pending events until then.
After ``max_attempts`` failures it is dead-lettered: kept with its last error, never retried
automatically (``policy-sidecar jobs --events`` lists it). Waiting for OPA spends no attempt.

Several replicas may drain one inbox (PostgreSQL): each claims a few events at a time with a lease
(``lease_s``, on the database's clock) and only processes what it claimed, so an event is
processed by one replica; a replica killed mid-event leaves its lease to expire, then another
takes the event over. Events of a claim not started within half the lease are given back rather
than processed on a lease about to run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
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

__all__ = ["OnDelete", "OnPush", "OnRescan", "WebhookProcessor"]

#: Decide a pushed image and replicate it (idempotent by digest and destination).
OnPush = Callable[[ImageRef], Awaitable[None]]
#: Re-decide the images of ``image.digest`` (only ``image.tag`` when set); with ``referrer`` True
#: the digest is a pushed manifest whose ``subject`` (if any) is the image to re-decide. Returns
#: how many images were re-decided.
OnRescan = Callable[[ImageRef, bool], Awaitable[int]]
#: ``image`` (its tag, or its digest when no tag) was deleted at the source: plan the removal of
#: the copies the sidecar made of it. Returns how many removals were planned.
OnDelete = Callable[[ImageRef], Awaitable[int]]

_REFERRER_TAG = re.compile(r"sha256-([0-9a-f]{64})(\.[a-z]+)?")

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
        on_delete: OnDelete | None = None,
        on_rescan: OnRescan | None = None,
        metrics: WebhookMetrics | None = None,
        retry_interval_s: float = 5.0,
        max_attempts: int = 10,
        batch: int = 10,
        owner: str = "",
        lease_s: float = 30.0,
    ) -> None:
        """Process events of ``store``; ``retry_interval_s`` paces retries of failed events (the
        first wait, doubled per failure) and ``max_attempts`` failures dead-letter an event.
        Without ``on_delete`` / ``on_rescan``, delete and scan events are ignored. Events are
        claimed ``batch`` at a time as ``owner`` (default: a fresh id) for ``lease_s``."""
        self._store = store
        self._registries = {r.name: r for r in registries}
        self._on_push = on_push
        self._on_delete = on_delete
        self._on_rescan = on_rescan
        self._metrics = metrics
        self._retry_interval_s = retry_interval_s
        self._max_attempts = max(1, max_attempts)
        self._batch = max(1, batch)
        self._owner = owner or f"inbox-{uuid.uuid4().hex[:12]}"
        self._lease_s = lease_s
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """Ask the running loop to drain now (called after events were recorded)."""
        self._wakeup.set()

    async def run(self) -> None:
        """Drain pending events (first those left by a previous run), then on every wake-up.

        Cancelled (the sidecar stops), it gives its leases back: the next process or another
        replica takes those events at once instead of after the lease.
        """
        try:
            while True:
                self._wakeup.clear()
                try:
                    await self.drain()
                except Exception as exc:  # a store outage must not kill the loop; retry later
                    _log.error("webhook inbox drain failed", problem=f"{type(exc).__name__}: {exc}")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._retry_interval_s):
                        await self._wakeup.wait()
        except asyncio.CancelledError:
            await self._release_all()
            raise

    async def drain(self) -> int:
        """Process every event due now once; return how many were completed."""
        completed = 0
        # Only events due when the drain started: one that fails now is scheduled after that
        # (by the store, in the query), so it is neither spun on nor allowed to fill the batch.
        started = datetime.now(UTC)
        while True:
            claimed = await self._store.claim_events(
                self._owner, lease_s=self._lease_s, limit=self._batch, due=started
            )
            if not claimed:
                break
            completed += await self._process_claimed(claimed)
        await self._observe()
        return completed

    async def _process_claimed(self, claimed: Sequence[tuple[str, bytes]]) -> int:
        """Process claimed events in order; give back those not reached (lease short, stopping)."""
        completed = 0
        # Measured here, not on the database's clock: only the lease's length matters.
        deadline = time.monotonic() + self._lease_s / 2
        for index, (event_id, payload) in enumerate(claimed):
            if time.monotonic() > deadline:
                # Slow events ate the lease: hand the rest back instead of racing its expiry.
                await self._store.release_events(self._owner, [e for e, _ in claimed[index:]])
                break
            if await self._process(event_id, payload):
                completed += 1
        return completed

    async def _release_all(self) -> None:
        """Give back every lease this processor holds (also a claim cancelled mid-commit)."""
        try:
            await self._store.release_events(self._owner)
        except Exception as exc:  # the leases then simply expire
            _log.warning("inbox leases not given back", problem=f"{type(exc).__name__}: {exc}")

    async def _observe(self) -> None:
        if self._metrics is not None:
            self._metrics.inbox(await self._store.inbox_counts())

    async def _process(self, event_id: str, payload: bytes) -> bool:
        action = "unknown"
        event: RegistryEvent | None = None
        with _tracer.start_as_current_span("webhook.process") as span:
            span.set_attribute("webhook.event_id", event_id)
            try:
                registry_name, event = decode_stored(payload)
                action = event.action
                span.set_attribute("webhook.action", action)
                span.set_attribute("webhook.source", event.source)
                outcome = await self._apply(registry_name, event)
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
                self._count(event, "deferred")
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
                        source=event.source if event else "unknown",
                        attempts=self._max_attempts,
                        problem=problem,
                    )
                    self._count(event, "dead")
                    return False
                _log.error(
                    "webhook event processing failed; will retry",
                    event_id=event_id,
                    action=action,
                    source=event.source if event else "unknown",
                    problem=problem,
                )
                self._count(event, "failed")
                return False
            await self._store.complete_event(event_id)
            span.set_attribute("webhook.outcome", outcome)
            self._count(event, outcome)
            if event is not None and outcome != "ignored":
                self._observe_lag(event)
            return True

    async def _apply(self, registry_name: str, event: RegistryEvent) -> ProcessOutcome:
        registry = self._registries.get(registry_name)
        if registry is None:
            # The inventory changed since the event was recorded; nothing left to act for.
            _log.warning(
                "webhook event for a registry no longer configured", registry=registry_name
            )
            return "ignored"
        handler = {
            "push": self._push,
            "pull": self._pull,
            "delete": self._delete,
            "scan": self._scan,
        }.get(event.action)
        if handler is None or not event.is_manifest:
            return "ignored"
        return await handler(registry, event)

    async def _scan(self, registry: RegistryConfig, event: RegistryEvent) -> ProcessOutcome:
        ref = ImageRef(registry.name, event.repository, event.tag, event.digest)
        return await self._rescan(ref, event, referrer=False)

    async def _push(self, registry: RegistryConfig, event: RegistryEvent) -> ProcessOutcome:
        cosign = _REFERRER_TAG.fullmatch(event.tag) if event.tag else None
        if cosign is not None:
            # A cosign-style referrer (sha256-<hex>.sig|.att|.sbom) names its subject in the tag:
            # a new signature or attestation re-decides the subject's images.
            subject = ImageRef(registry.name, event.repository, "", f"sha256:{cosign.group(1)}")
            return await self._rescan(subject, event, referrer=False)
        if not event.tag:
            # A push by digest is an index child or a referrer (an OCI manifest with a subject).
            if not event.digest:
                return "ignored"
            ref = ImageRef(registry.name, event.repository, "", event.digest)
            return await self._rescan(ref, event, referrer=True)
        ref = ImageRef(registry.name, event.repository, event.tag, event.digest)
        _log.info("registry push", image=str(ref), event_id=event.id, source=event.source)
        await self._on_push(ref)
        return "pushed"

    async def _rescan(
        self, ref: ImageRef, event: RegistryEvent, *, referrer: bool
    ) -> ProcessOutcome:
        if self._on_rescan is None or not ref.digest:
            return "ignored"
        redecided = await self._on_rescan(ref, referrer)
        if redecided:
            _log.info(
                "registry event re-decided images",
                image=str(ref),
                images=redecided,
                event_id=event.id,
                action=event.action,
                source=event.source,
            )
        return "rescanned" if redecided else "ignored"

    async def _delete(self, registry: RegistryConfig, event: RegistryEvent) -> ProcessOutcome:
        if self._on_delete is None or not (event.tag or event.digest):
            return "ignored"
        ref = ImageRef(registry.name, event.repository, event.tag, event.digest)
        planned = await self._on_delete(ref)
        _log.info(
            "registry delete",
            image=str(ref),
            removals=planned,
            event_id=event.id,
            source=event.source,
        )
        return "deleted" if planned else "ignored"

    async def _pull(self, registry: RegistryConfig, event: RegistryEvent) -> ProcessOutcome:
        region = registry.region or registry.facts.region
        if not region:
            # access is keyed by region; a registry without one cannot place the pull anywhere.
            _log.warning("pull from a registry without a region ignored", registry=registry.name)
            return "ignored"
        await self._store.add_pulls(event.repository, region)
        return "pulled"

    def _count(self, event: RegistryEvent | None, outcome: ProcessOutcome) -> None:
        if self._metrics is not None:
            action = event.action if event is not None else "unknown"
            source = event.source if event is not None else "unknown"
            self._metrics.processed(action, outcome, source=source)

    def _observe_lag(self, event: RegistryEvent) -> None:
        if self._metrics is None or not event.occurred_at:
            return
        try:
            at = datetime.fromisoformat(event.occurred_at)
        except ValueError:
            return  # a registry's odd clock format: no lag rather than no processing
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        self._metrics.lag(event.source, (datetime.now(UTC) - at).total_seconds())
