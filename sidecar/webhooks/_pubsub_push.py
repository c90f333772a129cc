"""``POST /v1/registry/events/pubsub``: a Pub/Sub push subscription delivering Artifact Registry events.

Order per request: authenticate (OIDC token or URL token) before reading the body, read at most
:data:`MAX_PUSH_BYTES`, parse the envelope and the gcr message, attribute it to an inventory
registry, record it in the inbox — and only then answer 200, which is Pub/Sub's acknowledgement.
Any refusal is a 4xx naming the problem with nothing recorded; a store error is a 5xx, so Pub/Sub
redelivers. A redelivered message id is acknowledged without a second record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aiohttp import web
from opentelemetry import trace

from sidecar.config import PubSubSettings, RegistryConfig
from sidecar.errors import WebhookRejected
from sidecar.telemetry import get_logger
from sidecar.typing import InboxAndPulls
from sidecar.webhooks._pubsub import MAX_PUSH_BYTES, gcr_event, parse_push
from sidecar.webhooks._pubsub_auth import TOKEN_HEADER, OidcVerifier, check_push_token
from sidecar.webhooks.envelope import RegistryEvent, encode_stored
from sidecar.webhooks.metrics import ReceiveOutcome, WebhookMetrics

__all__ = ["PubSubPush", "record_event"]

_log = get_logger("sidecar.webhooks")
_tracer = trace.get_tracer("sidecar.webhooks")


async def record_event(
    store: InboxAndPulls, metrics: WebhookMetrics, registry: RegistryConfig, event: RegistryEvent
) -> bool:
    """Record ``event`` of ``registry`` in the inbox; True when new, False for a duplicate id."""
    try:
        fresh = await store.record_event(event.id, encode_stored(registry.name, event))
    except Exception:
        metrics.received(event.action, "error", source="pubsub")
        raise
    metrics.received(event.action, "recorded" if fresh else "duplicate", source="pubsub")
    return fresh


async def _read_limited(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise WebhookRejected(f"push body over {limit} bytes", status=413)
    body = bytearray()
    async for chunk in request.content.iter_chunked(16 * 1024):
        body += chunk
        if len(body) > limit:
            raise WebhookRejected(f"push body over {limit} bytes", status=413)
    return bytes(body)


class PubSubPush:
    """The push endpoint's handler: authenticate, parse, attribute, record, acknowledge."""

    def __init__(
        self,
        settings: PubSubSettings,
        store: InboxAndPulls,
        registries: Sequence[RegistryConfig],
        metrics: WebhookMetrics,
        *,
        on_recorded: Callable[[], None],
    ) -> None:
        """Serve pushes for ``settings``; ``on_recorded`` wakes the processor after a new event."""
        self._settings = settings
        self._store = store
        self._registries = tuple(registries)
        self._metrics = metrics
        self._on_recorded = on_recorded
        self._oidc = OidcVerifier(settings.oidc) if settings.oidc is not None else None

    async def close(self) -> None:
        """Release the JWKS client."""
        if self._oidc is not None:
            await self._oidc.close()

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one push: 200 once recorded (or already recorded), 4xx refused, 5xx retry."""
        with _tracer.start_as_current_span("webhook.pubsub.receive") as span:
            try:
                fresh = await self._receive(request)
            except WebhookRejected as exc:
                outcome: ReceiveOutcome = "unauthorized" if exc.status == 401 else "invalid"
                if exc.status >= 500:
                    outcome = "error"
                self._metrics.received("unknown", outcome, source="pubsub")
                span.set_attribute("webhook.rejected", exc.message)
                _log.warning("pubsub push rejected", status=exc.status, problem=exc.message)
                return web.json_response({"error": exc.message}, status=exc.status)
            span.set_attribute("webhook.recorded", fresh)
            if fresh:
                self._on_recorded()
            return web.json_response({"recorded": int(fresh)})

    async def _receive(self, request: web.Request) -> bool:
        # Authenticate before reading the body: an unauthenticated sender costs no parsing.
        if self._oidc is not None:
            await self._oidc.verify(request.headers.get("Authorization"))
        if self._settings.token:
            check_push_token(
                request.query.get("token"), request.headers.get(TOKEN_HEADER), self._settings.token
            )
        message = parse_push(await _read_limited(request, MAX_PUSH_BYTES))
        registry, event = gcr_event(message, self._registries)
        _log.debug("pubsub push", event_id=event.id, registry=registry.name, action=event.action)
        return await record_event(self._store, self._metrics, registry, event)
