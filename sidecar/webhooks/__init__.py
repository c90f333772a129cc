"""Registry notification webhooks: a durable inbox of push/pull events and its processor.

Events arrive on the notification endpoint (server.py) or from SQS queues of ECR events
(sqs.py, ecr.py); both record into the same inbox, which the processor drains.
"""

from __future__ import annotations

from sidecar.webhooks._pubsub import PUBSUB_PATH, PubSubMessage, gcr_event, parse_push
from sidecar.webhooks._pubsub_auth import OidcVerifier
from sidecar.webhooks._pubsub_pull import PubSubPuller
from sidecar.webhooks.ecr import EcrIgnored, parse_ecr_message
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
from sidecar.webhooks.sqs import SqsMetrics, SqsPoller

__all__ = [
    "ENVELOPE_MEDIA_TYPE",
    "EVENTS_PATH",
    "PUBSUB_PATH",
    "EcrIgnored",
    "OidcVerifier",
    "OnPush",
    "PubSubMessage",
    "PubSubPuller",
    "RegistryEvent",
    "SqsMetrics",
    "SqsPoller",
    "WebhookMetrics",
    "WebhookProcessor",
    "WebhookServer",
    "check_secret",
    "gcr_event",
    "parse_ecr_message",
    "parse_envelope",
    "parse_push",
    "resolve_registry",
]
