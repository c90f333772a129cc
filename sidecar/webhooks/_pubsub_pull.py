"""A Pub/Sub pull subscription read by the sidecar: Artifact Registry events without a public endpoint.

Each round pulls up to ``max_messages``, records every readable message in the inbox and then
acknowledges it — never before its record is committed, so a crash in between only redelivers the
message, and its id (``pubsub:<messageId>``) deduplicates it. A message that cannot be recorded
(store error) is released at once (ack deadline 0) to be redelivered; one that will never be
readable (malformed, unknown registry) is acknowledged and counted ``invalid``, since redelivering
it could never succeed. google-cloud-pubsub is imported only when a subscription is configured.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from sidecar.config import PubSubSettings, RegistryConfig
from sidecar.errors import WebhookRejected
from sidecar.telemetry import get_logger
from sidecar.typing import InboxAndPulls
from sidecar.webhooks._pubsub import PubSubMessage, gcr_event
from sidecar.webhooks._pubsub_push import record_event
from sidecar.webhooks.metrics import WebhookMetrics

__all__ = ["PubSubPuller"]

# After an empty pull (an emulator answers at once; Pub/Sub itself waits for messages first).
_IDLE_S = 0.5
_PULL_TIMEOUT_S = 60.0

_log = get_logger("sidecar.webhooks")


class PubSubPuller:
    """Pulls a subscription into the inbox; ``run()`` as a task, ``close()`` after cancelling it."""

    def __init__(
        self,
        settings: PubSubSettings,
        store: InboxAndPulls,
        registries: Sequence[RegistryConfig],
        metrics: WebhookMetrics,
        *,
        on_recorded: Callable[[], None],
    ) -> None:
        """Read ``settings.subscription``; ``on_recorded`` wakes the processor after new events."""
        self._settings = settings
        self._store = store
        self._registries = tuple(registries)
        self._metrics = metrics
        self._on_recorded = on_recorded
        self._client: Any = None

    async def close(self) -> None:
        """Close the Pub/Sub channel."""
        if self._client is not None:
            await self._client.transport.close()
            self._client = None

    async def run(self) -> None:
        """Pull until cancelled; a failed round (Pub/Sub or the store down) waits and tries again."""
        _log.info("pubsub pull subscription started", subscription=self._settings.subscription)
        while True:
            try:
                received = await self.pull_once()
            except Exception as exc:
                _log.error(
                    "pubsub pull failed; retrying",
                    subscription=self._settings.subscription,
                    problem=f"{type(exc).__name__}: {exc}"[:500],
                )
                await asyncio.sleep(self._settings.pull_retry_s)
                continue
            if not received:
                await asyncio.sleep(_IDLE_S)

    async def pull_once(self) -> int:
        """Pull one batch, record it, acknowledge what is recorded; return how many were pulled."""
        client = await self._connect()
        subscription = self._settings.subscription
        response = await client.pull(
            request={"subscription": subscription, "max_messages": self._settings.max_messages},
            timeout=_PULL_TIMEOUT_S,
        )
        done: list[str] = []
        again: list[str] = []
        fresh = 0
        for received in response.received_messages:
            message = received.message
            publish = message.publish_time
            parsed = PubSubMessage(
                message_id=message.message_id,
                data=bytes(message.data),
                publish_time=publish.isoformat() if publish else "",
                attributes=dict(message.attributes),
                subscription=subscription,
            )
            try:
                registry, event = gcr_event(parsed, self._registries)
            except WebhookRejected as exc:
                self._metrics.received("unknown", "invalid", source="pubsub")
                _log.warning(
                    "pubsub message dropped: unreadable",
                    message_id=parsed.message_id,
                    problem=exc.message,
                )
                done.append(received.ack_id)
                continue
            try:
                fresh += await record_event(self._store, self._metrics, registry, event)
            except Exception as exc:
                _log.error(
                    "pubsub message not recorded; released for redelivery",
                    message_id=parsed.message_id,
                    problem=f"{type(exc).__name__}: {exc}"[:500],
                )
                again.append(received.ack_id)
                continue
            done.append(received.ack_id)
        if fresh:
            self._on_recorded()
        # Only now: every acknowledged message is committed to the inbox (or never readable).
        if done:
            await client.acknowledge(subscription=subscription, ack_ids=done)
        if again:
            await client.modify_ack_deadline(
                subscription=subscription, ack_ids=again, ack_deadline_seconds=0
            )
        return len(response.received_messages)

    async def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        # Only with a subscription configured: the SDK is large and most sidecars never need it.
        from google.pubsub_v1 import SubscriberAsyncClient  # noqa: PLC0415

        settings = self._settings
        if settings.insecure:
            # A local emulator: plaintext gRPC, no credentials (config requires an endpoint).
            # The SDK has no switch for this, so its transport gets the channel.
            import grpc  # noqa: PLC0415
            from google.pubsub_v1.services.subscriber.transports import (  # noqa: PLC0415
                SubscriberGrpcAsyncIOTransport,
            )

            transport = SubscriberGrpcAsyncIOTransport(
                channel=grpc.aio.insecure_channel(settings.endpoint)
            )
            self._client = SubscriberAsyncClient(transport=transport)
            return self._client
        # Finding credentials may read files or ask the metadata server: not on the event loop.
        credentials = await asyncio.to_thread(_credentials, settings.credentials_file)
        from google.api_core.client_options import ClientOptions  # noqa: PLC0415

        options = ClientOptions(api_endpoint=settings.endpoint) if settings.endpoint else None
        self._client = SubscriberAsyncClient(credentials=credentials, client_options=options)
        return self._client


def _credentials(credentials_file: str) -> Any:
    scopes = ["https://www.googleapis.com/auth/pubsub"]
    if credentials_file:
        from google.oauth2 import service_account  # noqa: PLC0415

        return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            credentials_file, scopes=scopes
        )
    import google.auth  # noqa: PLC0415

    credentials, _ = google.auth.default(scopes=scopes)
    return credentials
