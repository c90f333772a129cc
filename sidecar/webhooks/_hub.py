"""Docker Hub and Quay repository-push webhooks: a tag name, never a digest.

Neither can set a header, so both authenticate with ``?token=<shared secret>`` in the URL.

**Docker Hub** (``POST /v1/registry/events/hub``)::

    {"callback_url": "…", "push_data": {"pushed_at": 1417566161, "pusher": "…", "tag": "latest"},
     "repository": {"repo_name": "acme/app", "namespace": "acme", "name": "app", …}}

Used: ``repository.repo_name`` (else ``namespace/name``), ``push_data.tag``, ``push_data.pushed_at``
(lag, and with the repository and tag the event id). Cannot tell: the digest (the sidecar reads
the tag's current digest when it decides, so a tag moved again in between replicates the newer
image), deletions (Hub sends pushes only), which registry host (always Docker Hub: the inventory
registry whose host is docker.io or registry-1.docker.io, or the one ``?registry=NAME`` names).

**Quay** (``POST /v1/registry/events/quay``, the "Repository Push" notification)::

    {"repository": "acme/app", "namespace": "acme", "name": "app",
     "docker_url": "quay.io/acme/app", "homepage": "…", "updated_tags": ["latest", "v1"]}

Used: ``repository``, ``updated_tags`` (one push each), the host of ``docker_url``. Cannot tell:
the digest (as for Hub), deletions, and when it happened or any event id: the id is derived from
the payload and a five-minute window, so a redelivery within it is recorded once, and a later
one is harmless (jobs are idempotent by digest and destination: no second copy).
"""

from __future__ import annotations

import time

from sidecar.errors import WebhookRejected
from sidecar.webhooks._common import (
    derived_id,
    epoch_rfc3339,
    items,
    load_object,
    section,
    split_reference,
    text,
)
from sidecar.webhooks.envelope import RegistryEvent

__all__ = ["HUB_HOSTS", "parse_hub", "parse_quay"]

#: Hosts that are Docker Hub, tried in order against the inventory.
HUB_HOSTS = ("docker.io", "registry-1.docker.io", "index.docker.io", "registry.hub.docker.com")
_QUAY_WINDOW_S = 300


def parse_hub(body: bytes) -> tuple[RegistryEvent, ...]:
    """Parse a Docker Hub push webhook into one push event."""
    doc = load_object(body, "Docker Hub webhook")
    push = section(doc, "push_data", "payload", required=True)
    repo = section(doc, "repository", "payload", required=True)
    repository = text(repo, "repo_name", "repository")
    if not repository:
        namespace = text(repo, "namespace", "repository") or "library"
        repository = f"{namespace}/{text(repo, 'name', 'repository', required=True)}"
    tag = text(push, "tag", "push_data", required=True)
    occurred = epoch_rfc3339(push.get("pushed_at"), "push_data.pushed_at")
    return (
        RegistryEvent(
            id=derived_id("hub", repository, tag, push.get("pushed_at")),
            action="push",
            repository=repository,
            tag=tag,
            request_host=HUB_HOSTS[0],
            source="hub",
            occurred_at=occurred,
        ),
    )


def parse_quay(body: bytes, *, now: float | None = None) -> tuple[RegistryEvent, ...]:
    """Parse a Quay repository-push notification into one push event per updated tag."""
    doc = load_object(body, "Quay notification")
    repository = text(doc, "repository", "payload", required=True)
    docker_url = text(doc, "docker_url", "payload", required=True)
    host = split_reference(docker_url)[0]
    if not host:
        raise WebhookRejected("payload.docker_url has no registry host", status=400)
    tags = items(doc, "updated_tags", "payload")
    if not tags:
        raise WebhookRejected("payload.updated_tags names no tag", status=400)
    window = int((time.time() if now is None else now) // _QUAY_WINDOW_S)
    events = []
    for i, tag in enumerate(tags):
        if not isinstance(tag, str) or not tag:
            raise WebhookRejected(f"payload.updated_tags[{i}] must be a tag name", status=400)
        events.append(
            RegistryEvent(
                id=derived_id("quay", repository, host, tag, window),
                action="push",
                repository=repository,
                tag=tag,
                url=f"https://{host}",
                request_host=host,
                source="quay",
            )
        )
    return tuple(events)
