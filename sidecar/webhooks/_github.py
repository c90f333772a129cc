"""GitHub Packages webhooks (``POST /v1/registry/events/github``): ``package`` and
``registry_package`` events of container packages (ghcr.io).

Authenticated by ``X-Hub-Signature-256: sha256=<HMAC-SHA256 of the body with the secret>``; the
event kind is the ``X-GitHub-Event`` header and the id the ``X-GitHub-Delivery`` header (a
redelivery from GitHub's UI keeps it, so it is recorded once)::

    {"action": "published",
     "registry_package": {"name": "app", "namespace": "acme", "package_type": "CONTAINER",
       "package_version": {"version": "sha256:…",
         "container_metadata": {"tag": {"name": "v1", "digest": "sha256:…"}},
         "package_url": "ghcr.io/acme/app:v1"}}}

Used: ``action`` (published/updated → push; any other action and non-container packages are
acknowledged and ignored), ``package_version.container_metadata.tag`` (tag and digest), else
``package_version.version`` when it is a digest, and ``package_version.package_url`` (host and
repository; without it ``ghcr.io/<namespace>/<name>``). Cannot tell: deletions of single tags
(GitHub sends no event for them), and when it happened (no timestamp: no lag is measured).
"""

from __future__ import annotations

from sidecar.webhooks._common import (
    derived_id,
    digest_of,
    load_object,
    section,
    split_reference,
    text,
)
from sidecar.webhooks.envelope import RegistryEvent

__all__ = ["GITHUB_EVENTS", "parse_github"]

#: ``X-GitHub-Event`` values read; every other event (``ping``…) is acknowledged and ignored.
GITHUB_EVENTS = ("package", "registry_package")
_PUBLISHED = ("published", "updated")


def parse_github(body: bytes, *, event: str, delivery: str) -> tuple[RegistryEvent, ...]:
    """Parse a GitHub ``package``/``registry_package`` delivery into at most one push event."""
    doc = load_object(body, "GitHub webhook")
    if event not in GITHUB_EVENTS:
        return ()
    package = section(doc, event, "payload", required=True)
    action = text(doc, "action", "payload", required=True)
    kind = (text(package, "package_type", event) or text(package, "ecosystem", event)).upper()
    if action not in _PUBLISHED or kind not in ("CONTAINER", "DOCKER"):
        return ()
    version = section(package, "package_version", event, required=True)
    where = f"{event}.package_version"
    metadata = section(
        section(version, "container_metadata", where), "tag", f"{where}.container_metadata"
    )
    tag = text(metadata, "name", f"{where}.container_metadata.tag")
    digest = text(metadata, "digest", f"{where}.container_metadata.tag")
    if not digest and text(version, "version", where).startswith("sha256:"):
        digest = text(version, "version", where)
    digest = digest_of(digest, f"{where} digest")
    host, repository, url_tag, _ = split_reference(text(version, "package_url", where))
    if not repository:
        namespace = text(package, "namespace", event, required=True)
        host, repository = "ghcr.io", f"{namespace}/{text(package, 'name', event, required=True)}"
    tag = tag or url_tag
    if not tag:
        # A version without a tag is an untagged manifest (an index child, a signature): the
        # tagged push that follows it is the one to replicate.
        return ()
    return (
        RegistryEvent(
            id=f"github:{delivery}" if delivery else derived_id("github", repository, tag, digest),
            action="push",
            repository=repository.lower(),
            digest=digest,
            tag=tag,
            url=f"https://{host}",
            request_host=host,
            source="github",
        ),
    )
