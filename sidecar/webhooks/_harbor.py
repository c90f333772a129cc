"""Harbor webhooks (``POST /v1/registry/events/harbor``): the "Default" JSON payload.

Harbor (2.x) POSTs one JSON object per event to a webhook policy's endpoint, with the policy's
"Auth Header" sent verbatim as ``Authorization``::

    {"type": "PUSH_ARTIFACT", "occur_at": 1680501893, "operator": "admin",
     "event_data": {"resources": [{"digest": "sha256:…", "tag": "v1",
                                   "resource_url": "harbor.example.com/library/app:v1"}],
                    "repository": {"name": "app", "namespace": "library",
                                   "repo_full_name": "library/app", "repo_type": "private"}}}

Used: ``type`` (PUSH_ARTIFACT → push, DELETE_ARTIFACT → delete, SCANNING_COMPLETED → scan,
PULL_ARTIFACT → pull; any other type is acknowledged and ignored), ``occur_at`` (lag),
``event_data.repository.repo_full_name`` (the repository), and per resource ``digest``, ``tag``
(Harbor puts the digest there for an untagged artifact: read as no tag) and the host of
``resource_url`` (which inventory registry). ``scan_overview`` is not read as a fact: the
decision reads scan facts from the registry (labels, attestations), and Harbor's own reports
live only in its API. What Harbor cannot tell: the media type (always a manifest), and an
event id (derived from type, time, repository, digest and tag, so a redelivery is recorded once).
"""

from __future__ import annotations

from sidecar.errors import WebhookRejected
from sidecar.webhooks._common import (
    derived_id,
    digest_of,
    epoch_rfc3339,
    items,
    load_object,
    section,
    split_reference,
    text,
)
from sidecar.webhooks.envelope import RegistryEvent

__all__ = ["HARBOR_ACTIONS", "parse_harbor"]

#: Harbor event type → the sidecar's action.
HARBOR_ACTIONS = {
    "PUSH_ARTIFACT": "push",
    "DELETE_ARTIFACT": "delete",
    "SCANNING_COMPLETED": "scan",
    "PULL_ARTIFACT": "pull",
}


def parse_harbor(body: bytes) -> tuple[RegistryEvent, ...]:
    """Parse one Harbor webhook payload into events (none for a type the sidecar ignores)."""
    doc = load_object(body, "Harbor webhook")
    kind = text(doc, "type", "payload", required=True)
    action = HARBOR_ACTIONS.get(kind)
    data = section(doc, "event_data", "payload", required=True)
    resources = items(data, "resources", "event_data")
    occurred = epoch_rfc3339(doc.get("occur_at"), "payload.occur_at")
    if action is None:
        return ()
    repo = section(data, "repository", "event_data", required=True)
    repository = text(repo, "repo_full_name", "event_data.repository")
    if not repository:
        namespace = text(repo, "namespace", "event_data.repository")
        name = text(repo, "name", "event_data.repository", required=True)
        repository = f"{namespace}/{name}" if namespace else name
    events = []
    for i, resource in enumerate(resources):
        where = f"event_data.resources[{i}]"
        if not isinstance(resource, dict):
            raise WebhookRejected(f"{where} must be an object", status=400)
        digest = digest_of(text(resource, "digest", where), f"{where}.digest")
        tag = text(resource, "tag", where)
        if tag.startswith("sha256:"):
            tag = ""  # an untagged artifact: Harbor repeats the digest as its "tag"
        url = text(resource, "resource_url", where)
        if not digest and not tag:
            raise WebhookRejected(f"{where} names neither a digest nor a tag", status=400)
        host = split_reference(url)[0] if url else ""
        events.append(
            RegistryEvent(
                id=derived_id("harbor", kind, doc.get("occur_at"), repository, digest, tag),
                action=action,
                repository=repository,
                digest=digest,
                tag=tag,
                url=f"https://{host}" if host else "",
                request_host=host,
                source="harbor",
                occurred_at=occurred,
            )
        )
    if not events:
        raise WebhookRejected("event_data.resources names no artifact", status=400)
    return tuple(events)
