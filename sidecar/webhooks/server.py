"""The registry notification endpoints (aiohttp) plus their processor.

``POST /v1/registry/events`` takes CNCF Distribution envelopes (also what GitLab's and other
Distribution-based registries send); sibling paths take other registries' own formats, each
parsed by its private module into the same :class:`RegistryEvent`: ``/harbor``, ``/hub``
(Docker Hub), ``/quay`` and ``/github`` (GitHub Packages). A request is authenticated, parsed
and attributed to an inventory registry as a whole; then each event is recorded in the same
inbox before the 200 goes out, so an acknowledged event survives a crash. Duplicate ids
(redeliveries) are acknowledged and not recorded again. ``?registry=NAME`` names the inventory
registry for a sender whose payload carries no usable host (Docker Hub, a Harbor behind a proxy).

With ``pubsub`` configured it also serves Artifact Registry events pushed by a Pub/Sub subscription
(``POST /v1/registry/events/pubsub``) and/or pulls them from one; they share the inbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence

from aiohttp import web
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from sidecar.config import PubSubSettings, RegistryConfig
from sidecar.errors import ConfigError, WebhookRejected
from sidecar.tasks import cancel_and_wait
from sidecar.telemetry import get_logger
from sidecar.typing import InboxAndPulls
from sidecar.webhooks._common import check_header_secret, check_hmac_sha256, check_query_token
from sidecar.webhooks._github import parse_github
from sidecar.webhooks._harbor import parse_harbor
from sidecar.webhooks._hub import HUB_HOSTS, parse_hub, parse_quay
from sidecar.webhooks._pubsub import PUBSUB_PATH
from sidecar.webhooks._pubsub_pull import PubSubPuller
from sidecar.webhooks._pubsub_push import PubSubPush
from sidecar.webhooks.envelope import (
    RegistryEvent,
    check_secret,
    encode_stored,
    parse_envelope,
    resolve_registry,
)
from sidecar.webhooks.metrics import ReceiveOutcome, WebhookMetrics
from sidecar.webhooks.processor import OnDelete, OnPush, OnRescan, WebhookProcessor

__all__ = ["EVENTS_PATH", "SOURCE_PATHS", "WebhookServer"]

EVENTS_PATH = "/v1/registry/events"
#: Source format → its path (Distribution's is :data:`EVENTS_PATH` itself).
SOURCE_PATHS = {
    "distribution": EVENTS_PATH,
    "harbor": f"{EVENTS_PATH}/harbor",
    "hub": f"{EVENTS_PATH}/hub",
    "quay": f"{EVENTS_PATH}/quay",
    "github": f"{EVENTS_PATH}/github",
}

#: Authenticates and parses one request of a source: (request, body, secret) → events.
_Reader = Callable[[web.Request, bytes, str], tuple[RegistryEvent, ...]]


def _distribution(request: web.Request, body: bytes, secret: str) -> tuple[RegistryEvent, ...]:
    check_secret(request.headers.get("Authorization"), secret)
    return parse_envelope(body)


def _harbor(request: web.Request, body: bytes, secret: str) -> tuple[RegistryEvent, ...]:
    check_header_secret(request.headers.get("Authorization"), secret, "Authorization")
    return parse_harbor(body)


def _hub(request: web.Request, body: bytes, secret: str) -> tuple[RegistryEvent, ...]:
    check_query_token(request.query.get("token"), secret)
    return parse_hub(body)


def _quay(request: web.Request, body: bytes, secret: str) -> tuple[RegistryEvent, ...]:
    check_query_token(request.query.get("token"), secret)
    return parse_quay(body)


def _github(request: web.Request, body: bytes, secret: str) -> tuple[RegistryEvent, ...]:
    check_hmac_sha256(
        request.headers.get("X-Hub-Signature-256"), body, secret, "X-Hub-Signature-256"
    )
    return parse_github(
        body,
        event=request.headers.get("X-GitHub-Event", ""),
        delivery=request.headers.get("X-GitHub-Delivery", "")[:100],
    )


_READERS: dict[str, _Reader] = {
    "distribution": _distribution,
    "harbor": _harbor,
    "hub": _hub,
    "quay": _quay,
    "github": _github,
}

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
        source_secrets: Mapping[str, str] | None = None,
        on_delete: OnDelete | None = None,
        on_rescan: OnRescan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        metrics_registry: CollectorRegistry | None = None,
        retry_interval_s: float = 5.0,
        max_attempts: int = 10,
        pubsub: PubSubSettings | None = None,
        owner: str = "",
        lease_s: float = 30.0,
    ) -> None:
        """Serve on ``host:port`` (0 = any free port); ``secret`` is the shared secret every
        source proves, unless ``source_secrets`` gives that source its own; ``pubsub`` adds the
        Pub/Sub push endpoint and/or pull subscription; ``owner`` and ``lease_s`` name and time
        the processor's inbox leases."""
        if not secret:
            raise ConfigError("webhooks.secret", "must not be empty: notifications need a secret")
        self._store = store
        self._registries = tuple(registries)
        self._secret = secret
        self._source_secrets = {k: v for k, v in (source_secrets or {}).items() if v}
        self._host = host
        self._port = port
        self._metrics = WebhookMetrics(metrics_registry or CollectorRegistry())
        self.processor = WebhookProcessor(
            store,
            self._registries,
            on_push=on_push,
            on_delete=on_delete,
            on_rescan=on_rescan,
            metrics=self._metrics,
            retry_interval_s=retry_interval_s,
            max_attempts=max_attempts,
            owner=owner,
            lease_s=lease_s,
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
        for source, path in SOURCE_PATHS.items():
            app.router.add_post(path, self._handler(source))
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
        await cancel_and_wait(self._pull_task, self._task)
        self._task = self._pull_task = None
        if self._puller is not None:
            await self._puller.close()
        if self._pubsub_push is not None:
            await self._pubsub_push.close()

    def _handler(self, source: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            return await self._handle(source, request)

        return handle

    async def _handle(self, source: str, request: web.Request) -> web.Response:
        with _tracer.start_as_current_span("webhook.receive") as span:
            span.set_attribute("webhook.source", source)
            try:
                recorded = await self._receive(source, request)
            except WebhookRejected as exc:
                outcome: ReceiveOutcome = "unauthorized" if exc.status == 401 else "invalid"
                self._metrics.received("unknown", outcome, source=source)
                span.set_attribute("webhook.rejected", exc.message)
                _log.warning(
                    "registry notification rejected",
                    source=source,
                    status=exc.status,
                    problem=exc.message,
                )
                return web.json_response({"error": exc.message}, status=exc.status)
            span.set_attribute("webhook.recorded", recorded)
            if recorded:
                self.processor.wake()
            return web.json_response({"recorded": recorded})

    async def _receive(self, source: str, request: web.Request) -> int:
        secret = self._source_secrets.get(source, self._secret)
        events = _READERS[source](request, await request.read(), secret)
        # Attribute every event before recording any, so a 400 never leaves half a request behind.
        attributed = [(self._attribute(source, request, e), e) for e in events]
        recorded = 0
        for registry, event in attributed:
            try:
                fresh = await self._store.record_event(
                    event.id, encode_stored(registry.name, event)
                )
            except Exception:
                # Not recorded means not acknowledged: a 5xx makes the sender retry the request.
                self._metrics.received(event.action, "error", source=source)
                raise
            outcome: ReceiveOutcome = "recorded" if fresh else "duplicate"
            self._metrics.received(event.action, outcome, source=source)
            _log.info(
                "registry event received",
                source=source,
                event_id=event.id,
                action=event.action,
                repository=event.repository,
                tag=event.tag,
                digest=event.digest,
                outcome=outcome,
            )
            recorded += int(fresh)
        return recorded

    def _attribute(self, source: str, request: web.Request, event: RegistryEvent) -> RegistryConfig:
        """The inventory registry of ``event``: ``?registry=NAME`` when given, else by host."""
        named = request.query.get("registry", "")
        if named and source != "distribution":
            for registry in self._registries:
                if registry.name == named:
                    return registry
            raise WebhookRejected(f"?registry={named[:100]!r} is not in the inventory", status=400)
        if source == "hub":
            for host in HUB_HOSTS:
                try:
                    return resolve_registry(
                        RegistryEvent(id=event.id, action="", repository="", request_host=host),
                        self._registries,
                    )
                except WebhookRejected:
                    continue
        return resolve_registry(event, self._registries)
