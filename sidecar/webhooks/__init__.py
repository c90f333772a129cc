"""Registry event webhooks: several formats, one durable inbox of normalised events, one processor.

How a source plugs in (the webhook routes in server.py; the ECR/SQS poller in sqs.py/ecr.py; the
Pub/Sub push route and pull subscriber in _pubsub*.py):

1. Parse the source's format into :class:`RegistryEvent`\\ s — ``source`` names the format,
   ``action`` is one of :data:`ACTIONS` (``push``, ``pull``, ``delete``, ``scan``), ``id`` is
   stable across redeliveries (the source's own id, else a hash of what identifies the event),
   ``repository``/``tag``/``digest`` name the image, ``occurred_at`` (RFC3339) feeds the lag
   metric. Leave ``media_type`` empty unless the format gives one (then only manifests count).
2. Attribute it to an inventory registry (:func:`resolve_registry`, or by name).
3. Record it with ``store.record_event(event.id, encode_stored(registry.name, event))`` BEFORE
   acknowledging the source (False = a duplicate: acknowledge, do nothing), then
   :meth:`WebhookProcessor.wake`. The processor retries, backs off and dead-letters it.

What the processor does with each action (see :mod:`sidecar.webhooks.processor`):

* ``push`` with a tag → decide and replicate (``on_push``); by digest only, or a cosign-style
  referrer tag → re-decide the subject's images (``on_rescan``, see below).
* ``scan`` → ``on_rescan(ImageRef(registry, repository, tag, digest), False)``: the images of that
  digest (only that tag, when one is given) are decided again with the facts the registry now
  holds (a new scan attestation, labels, ECR findings) and what is now allowed is replicated.
* ``delete`` → ``on_delete(ImageRef(...))``: with ``policy.replication.webhook.propagate_deletes``
  ``on`` (or ``dry-run``) the copies the sidecar itself made of that tag (or digest, when no
  tag) are queued as delete jobs (dry-run: listed, never executed); ``off`` (the default): nothing.
* ``pull`` → a pull count for ``input.access``.
"""

from __future__ import annotations

from sidecar.webhooks._pubsub import PUBSUB_PATH, PubSubMessage, gcr_event, parse_push
from sidecar.webhooks._pubsub_auth import OidcVerifier
from sidecar.webhooks._pubsub_pull import PubSubPuller
from sidecar.webhooks.ecr import EcrIgnored, parse_ecr_message
from sidecar.webhooks.envelope import (
    ACTIONS,
    ENVELOPE_MEDIA_TYPE,
    RegistryEvent,
    check_secret,
    encode_stored,
    parse_envelope,
    resolve_registry,
)
from sidecar.webhooks.metrics import WebhookMetrics
from sidecar.webhooks.processor import OnDelete, OnPush, OnRescan, WebhookProcessor
from sidecar.webhooks.server import EVENTS_PATH, SOURCE_PATHS, WebhookServer
from sidecar.webhooks.sqs import SqsMetrics, SqsPoller

__all__ = [
    "ACTIONS",
    "ENVELOPE_MEDIA_TYPE",
    "EVENTS_PATH",
    "PUBSUB_PATH",
    "SOURCE_PATHS",
    "EcrIgnored",
    "OidcVerifier",
    "OnDelete",
    "OnPush",
    "OnRescan",
    "PubSubMessage",
    "PubSubPuller",
    "RegistryEvent",
    "SqsMetrics",
    "SqsPoller",
    "WebhookMetrics",
    "WebhookProcessor",
    "WebhookServer",
    "check_secret",
    "encode_stored",
    "gcr_event",
    "parse_ecr_message",
    "parse_envelope",
    "parse_push",
    "resolve_registry",
]
