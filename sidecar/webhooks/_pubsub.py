"""Artifact Registry / GCR notifications carried by Pub/Sub: the push envelope and the ``gcr`` message.

Artifact Registry (and Container Registry) publish to the topic ``gcr`` of their project. Each
message's ``data`` is JSON: ``{"action": "INSERT"|"DELETE", "digest": "HOST/PATH@sha256:...",
"tag": "HOST/PATH:TAG"}`` — ``digest``, ``tag`` or both. A push subscription POSTs
``{"message": {"data": base64, "messageId", "publishTime", "attributes"}, "subscription": ...}``;
a pull subscription hands us the same message. Both become one :class:`RegistryEvent` whose id is
``pubsub:<messageId>``, so a redelivered message (Pub/Sub is at-least-once) is deduplicated by the
inbox, whichever way it came.

The event is stored in the CNCF Distribution shape (``target``/``request``), so the inbox and the
processor treat it like any other push; the original message rides along under ``pubsub``. Pure
functions: problems raise :class:`~sidecar.errors.WebhookRejected` with the HTTP status to answer.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from sidecar.config import RegistryConfig
from sidecar.errors import WebhookRejected
from sidecar.webhooks.envelope import RegistryEvent, resolve_registry

__all__ = [
    "ACTIONS",
    "MAX_DATA_BYTES",
    "MAX_PUSH_BYTES",
    "PUBSUB_PATH",
    "PubSubMessage",
    "gcr_event",
    "parse_push",
]

PUBSUB_PATH = "/v1/registry/events/pubsub"

# A gcr message is a few hundred bytes; an envelope adds attributes and base64 (4/3).
MAX_PUSH_BYTES = 64 * 1024
MAX_DATA_BYTES = 16 * 1024
_MAX_ID = 128  # Pub/Sub message ids are decimal strings of ~16-20 digits

# gcr action → the inbox's action. Untagged INSERTs (index children, referrers) are pushes by
# digest, which the processor ignores like Distribution's.
ACTIONS = {"INSERT": "push", "DELETE": "delete"}

# The events name images only (never blobs), but not which manifest type: any manifest media type
# makes the processor treat the event as an image.
_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

# The Distribution reference grammar (host[:port]/path components), bounded.
# (No nested quantifiers: these run on attacker-supplied text.)
_HOST = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9.-]{0,251}[a-zA-Z0-9])?(?::[0-9]{1,5})?$")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_MESSAGE_ID = re.compile(r"^[\w.:-]{1,128}$")


@dataclass(frozen=True, slots=True)
class PubSubMessage:
    """One Pub/Sub message: id, decoded data, publish time and attributes."""

    message_id: str
    data: bytes
    publish_time: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)
    subscription: str = ""


def _bad(problem: str) -> WebhookRejected:
    return WebhookRejected(problem, status=400)


def parse_push(body: bytes) -> PubSubMessage:
    """Parse a push subscription's POST body; raise WebhookRejected (400, 413) naming the problem."""
    if len(body) > MAX_PUSH_BYTES:
        raise WebhookRejected(f"push body over {MAX_PUSH_BYTES} bytes", status=413)
    if not body.strip():
        raise _bad("empty body (want a Pub/Sub push envelope with a message)")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _bad(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("message"), dict):
        raise _bad("body is not a Pub/Sub push envelope: no message object")
    message: dict[str, Any] = doc["message"]
    # Pub/Sub sends both spellings (messageId and message_id); either will do.
    message_id = message.get("messageId", message.get("message_id"))
    if not isinstance(message_id, str) or not _MESSAGE_ID.match(message_id):
        raise _bad("message.messageId is missing or not a Pub/Sub message id")
    data = message.get("data")
    if not isinstance(data, str) or not data:
        raise _bad("message.data is missing or not a base64 string")
    if len(data) > MAX_DATA_BYTES * 4 // 3 + 4:
        raise WebhookRejected(f"message.data over {MAX_DATA_BYTES} bytes", status=413)
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("message.data is not valid base64") from None
    publish_time = message.get("publishTime", message.get("publish_time", ""))
    attributes = message.get("attributes") or {}
    if not isinstance(publish_time, str) or len(publish_time) > 64:
        raise _bad("message.publishTime must be a short string")
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise _bad("message.attributes must map strings to strings")
    subscription = doc.get("subscription", "")
    if not isinstance(subscription, str) or len(subscription) > 512:
        raise _bad("subscription must be a short string")
    return PubSubMessage(message_id, decoded, publish_time, attributes, subscription)


def _split(reference: str, key: str, separator: str) -> tuple[str, str, str]:
    """Split ``HOST/PATH<separator>REF`` into (host, repository, ref); 400 when malformed."""
    if len(reference) > 512:
        raise _bad(f"data.{key} is longer than 512 characters")
    host, slash, rest = reference.partition("/")
    repository, sep, ref = rest.rpartition(separator)
    if not slash or not sep or not _HOST.match(host) or not _REPOSITORY.match(repository):
        raise _bad(f"data.{key} is not HOST/REPOSITORY{separator}REF: {reference[:100]!r}")
    return host.lower(), repository, ref


def _parse_data(data: bytes) -> tuple[str, str, str, str, str]:
    """Return (action, host, repository, digest, tag) of a gcr message's data."""
    if len(data) > MAX_DATA_BYTES:
        raise WebhookRejected(f"message.data over {MAX_DATA_BYTES} bytes", status=413)
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise _bad(f"message.data is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _bad("message.data is not a JSON object")
    action = doc.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        raise _bad(f"data.action must be one of {', '.join(ACTIONS)}, got {str(action)[:40]!r}")
    named: dict[str, tuple[str, str, str]] = {}
    for key, separator, grammar in (("digest", "@", _DIGEST), ("tag", ":", _TAG)):
        value = doc.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise _bad(f"data.{key} must be a string")
        host, repository, ref = _split(value, key, separator)
        if not grammar.match(ref):
            raise _bad(f"data.{key} names an invalid {key}: {ref[:100]!r}")
        named[key] = (host, repository, ref)
    if not named:
        raise _bad("message.data names no image: neither digest nor tag")
    images = {(host, repository) for host, repository, _ in named.values()}
    if len(images) > 1:
        raise _bad("data.digest and data.tag name different images")
    ((host, repository),) = images
    digest = named["digest"][2] if "digest" in named else ""
    tag = named["tag"][2] if "tag" in named else ""
    return ACTIONS[action], host, repository, digest, tag


def gcr_event(
    message: PubSubMessage, registries: Sequence[RegistryConfig]
) -> tuple[RegistryConfig, RegistryEvent]:
    """Return the inventory registry and the event of a gcr message; WebhookRejected(400) if not."""
    action, host, repository, digest, tag = _parse_data(message.data)
    event_id = f"pubsub:{message.message_id}"
    raw: dict[str, Any] = {
        "id": event_id,
        "action": action,
        "target": {
            "repository": repository,
            "mediaType": _MANIFEST,
            "digest": digest,
            "tag": tag,
            "url": f"https://{host}/v2/{repository}/manifests/{digest or tag}",
        },
        "request": {"host": host},
        # What Pub/Sub delivered, for `jobs --events` and the audit of where a copy came from.
        "pubsub": {
            "messageId": message.message_id,
            "publishTime": message.publish_time,
            "subscription": message.subscription,
            "data": orjson.loads(message.data),
        },
    }
    event = RegistryEvent(
        id=event_id,
        action=action,
        repository=repository,
        media_type=_MANIFEST,
        digest=digest,
        tag=tag,
        url=raw["target"]["url"],
        request_host=host,
        raw=raw,
    )
    return resolve_registry(event, registries), event
