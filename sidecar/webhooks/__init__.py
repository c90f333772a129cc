"""Registry notification webhooks: a durable inbox of push/pull events and its processor."""

from __future__ import annotations

from sidecar.webhooks._pubsub import PUBSUB_PATH, PubSubMessage, gcr_event, parse_push
from sidecar.webhooks._pubsub_auth import OidcVerifier
from sidecar.webhooks._pubsub_pull import PubSubPuller
from sidecar.webhooks.envelope import (
    ENVELOPE_MEDIA_TYPE,
    RegistryEvent,
    check_secret,
    parse_envelope,
    resolve_registry,
)
from sidecar.webhooks.metrics import WebhookMetrics
from sidecar.webhooks.processor import OnPush, WebhookProcessor
from sidecar.webhooks.server import EVENTS_PATH, WebhookServer

__all__ = [
    "ENVELOPE_MEDIA_TYPE",
    "EVENTS_PATH",
    "PUBSUB_PATH",
    "OidcVerifier",
    "OnPush",
    "PubSubMessage",
    "PubSubPuller",
    "RegistryEvent",
    "WebhookMetrics",
    "WebhookProcessor",
    "WebhookServer",
    "check_secret",
    "gcr_event",
    "parse_envelope",
    "parse_push",
    "resolve_registry",
]
