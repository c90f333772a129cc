"""CNCF Distribution notification envelopes: authentication, parsing, and which registry sent them.

Distribution POSTs ``{"events": [...]}`` (media type
``application/vnd.docker.distribution.events.v1+json``) to each configured endpoint with the
headers configured there; we require ``Authorization: Bearer <shared secret>``. Everything here is
pure so it can be tested without a server; problems raise :class:`~sidecar.errors.WebhookRejected`
carrying the HTTP status the endpoint answers with.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from sidecar.config import RegistryConfig, endpoint_host
from sidecar.errors import WebhookRejected

__all__ = [
    "ACTIONS",
    "ENVELOPE_MEDIA_TYPE",
    "MANIFEST_MEDIA_TYPES",
    "RegistryEvent",
    "check_secret",
    "decode_stored",
    "encode_stored",
    "parse_envelope",
    "resolve_registry",
]

ENVELOPE_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"

# Only manifests name an image; blob pushes/pulls (layers, configs) carry blob media types.
MANIFEST_MEDIA_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)

#: The actions the processor acts on (any other is recorded and ignored): ``push`` replicates a
#: tagged manifest (a push by digest or of a referrer re-decides its subject), ``pull`` counts a
#: pull, ``delete`` propagates a source deletion (``propagate_deletes``), ``scan`` re-decides.
ACTIONS = ("push", "pull", "delete", "scan")

# An explicit default port must still match an endpoint written without one.
_DEFAULT_PORTS = (":443", ":80")


@dataclass(frozen=True, slots=True)
class RegistryEvent:
    """One registry event in the sidecar's own terms, whatever format it arrived in.

    ``source`` names the format (``distribution``, ``harbor``, ``hub``, ``quay``, ``github``, and
    the pollers' ``ecr`` and ``pubsub``); ``action`` is one of :data:`ACTIONS` (others are
    ignored). ``id`` deduplicates: the same id is recorded once. ``occurred_at`` (RFC3339, may be
    empty) is when the registry says it happened, for the event-to-decision lag metric.
    ``media_type`` is empty when the format does not say (every non-Distribution source: they
    only ever report manifests). ``raw`` is the Distribution event object as sent.
    """

    id: str
    action: str
    repository: str
    media_type: str = ""
    digest: str = ""
    tag: str = ""
    url: str = ""
    request_host: str = ""
    source_addr: str = ""
    raw: Mapping[str, Any] | None = None
    source: str = "distribution"
    occurred_at: str = ""

    @property
    def is_manifest(self) -> bool:
        """True when the target is a manifest (an image or index), not a blob.

        Distribution says so by media type, except for deletes, which carry none (a manifest
        and a blob delete look alike; a blob digest matches no copy, so it is harmless). Other
        formats only report images.
        """
        if self.source != "distribution" or (self.action == "delete" and not self.media_type):
            return True
        return self.media_type in MANIFEST_MEDIA_TYPES

    def to_json(self) -> dict[str, Any]:
        """Return the raw event object (what the registry sent; Distribution events only)."""
        return dict(self.raw or {})

    def normalised(self) -> dict[str, str]:
        """Return the event's fields (not ``raw``) as a JSON object: its stored form."""
        return {
            "id": self.id,
            "action": self.action,
            "repository": self.repository,
            "media_type": self.media_type,
            "digest": self.digest,
            "tag": self.tag,
            "url": self.url,
            "request_host": self.request_host,
            "source_addr": self.source_addr,
            "source": self.source,
            "occurred_at": self.occurred_at,
        }


def check_secret(authorization: str | None, secret: str) -> None:
    """Raise WebhookRejected(401) unless ``authorization`` is ``Bearer <secret>``."""
    if not authorization:
        raise WebhookRejected("missing Authorization header (want: Bearer <secret>)", status=401)
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise WebhookRejected("Authorization header is not a Bearer token", status=401)
    # Constant time: the secret must not leak through response timing.
    if not hmac.compare_digest(token.strip().encode(), secret.encode()):
        raise WebhookRejected("wrong shared secret in Authorization header", status=401)


def _text(obj: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = obj.get(key)
    if value is None or value == "":
        if required:
            raise WebhookRejected(f"{where}.{key} is missing", status=400)
        return ""
    if not isinstance(value, str):
        raise WebhookRejected(f"{where}.{key} must be a string", status=400)
    return value


def _section(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = obj.get(key, {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebhookRejected(f"{where}.{key} must be an object", status=400)
    return value


def _event(obj: object, where: str) -> RegistryEvent:
    if not isinstance(obj, dict):
        raise WebhookRejected(f"{where} must be an object", status=400)
    target = _section(obj, "target", where)
    request = _section(obj, "request", where)
    source = _section(obj, "source", where)
    timestamp = obj.get("timestamp")
    return RegistryEvent(
        id=_text(obj, "id", where, required=True),
        action=_text(obj, "action", where, required=True),
        repository=_text(target, "repository", f"{where}.target", required=True),
        media_type=_text(target, "mediaType", f"{where}.target"),
        digest=_text(target, "digest", f"{where}.target"),
        tag=_text(target, "tag", f"{where}.target"),
        url=_text(target, "url", f"{where}.target"),
        request_host=_text(request, "host", f"{where}.request"),
        source_addr=_text(source, "addr", f"{where}.source"),
        raw=obj,
        occurred_at=timestamp if isinstance(timestamp, str) else "",
        source=_raw_source(obj),
    )


_RAW_SOURCES = ("distribution", "ecr", "pubsub")


def _raw_source(obj: Mapping[str, Any]) -> str:
    """The source of a raw-stored event: the SQS and Pub/Sub parsers keep their message beside a
    Distribution-shaped event (under ``ecr`` / ``pubsub``), so metrics and logs can name it."""
    for source in _RAW_SOURCES[1:]:
        if isinstance(obj.get(source), dict):
            return source
    return "distribution"


def parse_envelope(body: bytes) -> tuple[RegistryEvent, ...]:
    """Parse a notification envelope; raise WebhookRejected(400) naming the first problem."""
    if not body.strip():
        raise WebhookRejected("empty body (want a JSON envelope with an events list)", status=400)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WebhookRejected(f"body is not JSON: {exc}", status=400) from None
    if not isinstance(doc, dict) or "events" not in doc:
        raise WebhookRejected("body is not an envelope: no events list", status=400)
    events = doc["events"]
    if not isinstance(events, list):
        raise WebhookRejected("events must be a list", status=400)
    return tuple(_event(e, f"events[{i}]") for i, e in enumerate(events))


def encode_stored(registry: str, event: RegistryEvent) -> bytes:
    """Return the durable form of ``event`` plus the inventory registry it came from.

    A Distribution event is kept as the registry sent it (the raw object); every other source's
    event as its normalised fields (``"normalised"``), which is what a poller records too.
    """
    if event.source in _RAW_SOURCES and event.raw is not None:
        return orjson.dumps({"registry": registry, "event": event.to_json()})
    return orjson.dumps({"registry": registry, "normalised": event.normalised()})


def _from_normalised(obj: object) -> RegistryEvent:
    if not isinstance(obj, dict):
        raise WebhookRejected("stored event: normalised must be an object", status=400)
    f = {key: _text(obj, key, "normalised") for key in _NORMALISED}
    if not f["id"] or not f["action"] or not f["repository"]:
        raise WebhookRejected("stored event lacks its id, action or repository", status=400)
    return RegistryEvent(
        id=f["id"],
        action=f["action"],
        repository=f["repository"],
        media_type=f["media_type"],
        digest=f["digest"],
        tag=f["tag"],
        url=f["url"],
        request_host=f["request_host"],
        source_addr=f["source_addr"],
        source=f["source"] or "unknown",
        occurred_at=f["occurred_at"],
    )


_NORMALISED = (
    "id",
    "action",
    "repository",
    "media_type",
    "digest",
    "tag",
    "url",
    "request_host",
    "source_addr",
    "source",
    "occurred_at",
)


def decode_stored(payload: bytes) -> tuple[str, RegistryEvent]:
    """Return (registry name, event) from :func:`encode_stored`; WebhookRejected(400) when broken."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise WebhookRejected(f"stored event is not JSON: {exc}", status=400) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("registry"), str):
        raise WebhookRejected("stored event has no registry name", status=400)
    if "normalised" in doc:
        return doc["registry"], _from_normalised(doc["normalised"])
    return doc["registry"], _event(doc.get("event"), "event")


def _normalise(host: str) -> str:
    host = host.strip().lower()
    for suffix in _DEFAULT_PORTS:
        if host.endswith(suffix):
            return host[: -len(suffix)]
    return host


def resolve_registry(event: RegistryEvent, registries: Sequence[RegistryConfig]) -> RegistryConfig:
    """Return the inventory registry that sent ``event``; raise WebhookRejected(400) when unknown.

    Tried in order: the Host the client used (``request.host``), the host of ``target.url``, and
    the registry's own ``source.addr`` — the first is what clients (and our config) call the
    registry; ``source.addr`` is the registry's hostname, which rarely matches an endpoint.
    """
    by_host = {_normalise(r.host): r for r in registries if r.host}
    url_host = endpoint_host(event.url) if event.url else ""
    candidates = [h for h in (event.request_host, url_host, event.source_addr) if h]
    for candidate in candidates:
        found = by_host.get(_normalise(candidate))
        if found is not None:
            return found
    tried = ", ".join(candidates) or "no host in request.host, target.url or source.addr"
    raise WebhookRejected(
        f"event {event.id}: unknown registry ({tried}); known hosts: {', '.join(sorted(by_host))}",
        status=400,
    )
