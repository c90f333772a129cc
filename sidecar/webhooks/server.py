"""The registry notification endpoint: ``POST /v1/registry/events`` (aiohttp) plus its processor.

With ``pubsub`` configured it also serves Artifact Registry events pushed by a Pub/Sub subscription
(``POST /v1/registry/events/pubsub``) and/or pulls them from one; they share the inbox.

A request is authenticated, parsed and attributed to an inventory registry as a whole; then each
event is recorded in the store before the 200 goes out, so an acknowledged event survives a crash.
Duplicate ids (Distribution retries whole envelopes) are acknowledged and not recorded again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from aiohttp import web
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from sidecar.config import PubSubSettings, RegistryConfig
from sidecar.errors import ConfigError, WebhookRejected
from sidecar.telemetry import get_logger
from sidecar.typing import InboxAndPulls
from sidecar.webhooks._pubsub import PUBSUB_PATH
from sidecar.webhooks._pubsub_pull import PubSubPuller
from sidecar.webhooks._pubsub_push import PubSubPush
from sidecar.webhooks.envelope import (
    check_secret,
    encode_stored,
    parse_envelope,
    resolve_registry,
)
from sidecar.webhooks.metrics import ReceiveOutcome, WebhookMetrics
from sidecar.webhooks.processor import OnPush, WebhookProcessor

__all__ = ["EVENTS_PATH", "WebhookServer"]

EVENTS_PATH = "/v1/registry/events"

_log = get_logger("sidecar.webhooks")
_tracer = trace.get_tracer("sidecar.webhooks")


class WebhookServer:
    """Receives registry notifications, records them durably and processes them in the background."""

    def __init__(
        self,
        store: InboxAndPulls,
        registries: Sequence[RegistryConfig],
        *,
        secret: str,
        on_push: OnPush,
        host: str = "127.0.0.1",
        port: int = 0,
        metrics_registry: CollectorRegistry | None = None,
        retry_interval_s: float = 5.0,
        max_attempts: int = 10,
        pubsub: PubSubSettings | None = None,
    ) -> None:
        """Serve on ``host:port`` (0 = any free port); ``secret`` is the shared Bearer token;
        ``pubsub`` adds the Pub/Sub push endpoint and/or pull subscription."""
        if not secret:
            raise ConfigError("webhooks.secret", "must not be empty: notifications need a secret")
        self._store = store
        self._registries = tuple(registries)
        self._secret = secret
        self._host = host
        self._port = port
        self._metrics = WebhookMetrics(metrics_registry or CollectorRegistry())
        self.processor = WebhookProcessor(
            store,
            self._registries,
            on_push=on_push,
            metrics=self._metrics,
            retry_interval_s=retry_interval_s,
            max_attempts=max_attempts,
        )
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self._pubsub_push: PubSubPush | None = None
        self._puller: PubSubPuller | None = None
        self._pull_task: asyncio.Task[None] | None = None
        if pubsub is not None and pubsub.push:
            self._pubsub_push = PubSubPush(
                pubsub, store, self._registries, self._metrics, on_recorded=self.processor.wake
            )
        if pubsub is not None and pubsub.subscription:
            self._puller = PubSubPuller(
                pubsub, store, self._registries, self._metrics, on_recorded=self.processor.wake
            )

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        return self._port

    @property
    def url(self) -> str:
        """The full URL registries should notify (after :meth:`start`)."""
        return f"http://{self._host}:{self._port}{EVENTS_PATH}"

    async def start(self) -> None:
        """Bind the endpoint and start the processor (which first drains leftover events)."""
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post(EVENTS_PATH, self._handle)
        if self._pubsub_push is not None:
            app.router.add_post(PUBSUB_PATH, self._pubsub_push.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        self._task = asyncio.create_task(self.processor.run(), name="webhook-processor")
        if self._puller is not None:
            self._pull_task = asyncio.create_task(self._puller.run(), name="pubsub-puller")
        _log.info("webhook endpoint listening", url=self.url)

    async def stop(self) -> None:
        """Stop accepting events and stop the processor; pending events stay in the store."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for task in (self._pull_task, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._pull_task = None
        if self._puller is not None:
            await self._puller.close()
        if self._pubsub_push is not None:
            await self._pubsub_push.close()

    async def _handle(self, request: web.Request) -> web.Response:
        with _tracer.start_as_current_span("webhook.receive") as span:
            try:
                recorded = await self._receive(request)
            except WebhookRejected as exc:
                outcome: ReceiveOutcome = "unauthorized" if exc.status == 401 else "invalid"
                self._metrics.received("unknown", outcome)
                span.set_attribute("webhook.rejected", exc.message)
                _log.warning(
                    "registry notification rejected", status=exc.status, problem=exc.message
                )
                return web.json_response({"error": exc.message}, status=exc.status)
            span.set_attribute("webhook.recorded", recorded)
            if recorded:
                self.processor.wake()
            return web.json_response({"recorded": recorded})

    async def _receive(self, request: web.Request) -> int:
        check_secret(request.headers.get("Authorization"), self._secret)
        events = parse_envelope(await request.read())
        # Attribute every event before recording any, so a 400 never leaves half an envelope behind.
        attributed = [(resolve_registry(e, self._registries), e) for e in events]
        recorded = 0
        for registry, event in attributed:
            try:
                fresh = await self._store.record_event(
                    event.id, encode_stored(registry.name, event)
                )
            except Exception:
                # Not recorded means not acknowledged: a 5xx makes Distribution retry the envelope.
                self._metrics.received(event.action, "error")
                raise
            self._metrics.received(event.action, "recorded" if fresh else "duplicate")
            recorded += int(fresh)
        return recorded
