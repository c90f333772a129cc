"""Payloads in each registry's own webhook format (as their documentation shows them), and a
poster that sends them the way each registry does (its auth header, token or signature)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

__all__ = [
    "github_package",
    "gitlab_envelope",
    "harbor_event",
    "hub_push",
    "post_format",
    "quay_push",
]


def harbor_event(
    kind: str,
    host: str,
    repository: str,
    *,
    digest: str,
    tag: str = "",
    occur_at: int | None = None,
    scan: bool = False,
) -> dict[str, Any]:
    """A Harbor 2.x "Default" payload (PUSH_ARTIFACT, DELETE_ARTIFACT, SCANNING_COMPLETED...)."""
    namespace, _, name = repository.rpartition("/")
    reference = f"{host}/{repository}:{tag}" if tag else f"{host}/{repository}@{digest}"
    resource: dict[str, Any] = {
        "digest": digest,
        "tag": tag or digest,
        "resource_url": reference,
    }
    if scan:
        resource["scan_overview"] = {
            "application/vnd.security.vulnerability.report; version=1.1": {
                "report_id": str(uuid.uuid4()),
                "scan_status": "Success",
                "severity": "None",
                "duration": 3,
                "summary": {"total": 0, "fixable": 0, "summary": {}},
                "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "v0.50.0"},
                "complete_percent": 100,
            }
        }
    return {
        "type": kind,
        "occur_at": int(time.time()) if occur_at is None else occur_at,
        "operator": "admin",
        "event_data": {
            "resources": [resource],
            "repository": {
                "date_created": 1680501893,
                "name": name,
                "namespace": namespace,
                "repo_full_name": repository,
                "repo_type": "private",
            },
        },
    }


def hub_push(repository: str, tag: str, *, pushed_at: int | None = None) -> dict[str, Any]:
    """A Docker Hub repository webhook payload (a push of ``tag``)."""
    namespace, _, name = repository.rpartition("/")
    return {
        "callback_url": f"https://registry.hub.docker.com/u/{repository}/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/",
        "push_data": {
            "pushed_at": int(time.time()) if pushed_at is None else pushed_at,
            "pusher": "trustedbuilder",
            "tag": tag,
        },
        "repository": {
            "comment_count": 0,
            "date_created": 1417494799,
            "description": "",
            "is_official": False,
            "is_private": True,
            "is_trusted": True,
            "name": name,
            "namespace": namespace,
            "owner": namespace,
            "repo_name": repository,
            "repo_url": f"https://registry.hub.docker.com/u/{repository}/",
            "star_count": 0,
            "status": "Active",
        },
    }


def quay_push(host: str, repository: str, tags: Sequence[str]) -> dict[str, Any]:
    """A Quay "Repository Push" notification payload."""
    namespace, _, name = repository.rpartition("/")
    return {
        "name": name,
        "repository": repository,
        "namespace": namespace,
        "docker_url": f"{host}/{repository}",
        "homepage": f"https://{host}/repository/{repository}",
        "updated_tags": list(tags),
    }


def github_package(host: str, repository: str, tag: str, digest: str) -> dict[str, Any]:
    """A GitHub ``package`` event (action published) of a container package version."""
    namespace, _, name = repository.rpartition("/")
    return {
        "action": "published",
        "package": {
            "id": 1,
            "name": name,
            "namespace": namespace,
            "ecosystem": "CONTAINER",
            "package_type": "CONTAINER",
            "html_url": f"https://github.com/{namespace}/packages/container/package/{name}",
            "owner": {"login": namespace},
            "package_version": {
                "id": 2,
                "version": digest,
                "name": digest,
                "container_metadata": {
                    "tag": {"name": tag, "digest": digest},
                    "labels": {},
                    "manifest": {},
                },
                "package_url": f"{host}/{repository}:{tag}",
            },
            "registry": {"name": "GitHub CNCF Container Registry", "type": "docker"},
        },
        "repository": {"full_name": f"{namespace}/{name}"},
        "sender": {"login": namespace},
    }


def gitlab_envelope(host: str, repository: str, tag: str, digest: str) -> dict[str, Any]:
    """A GitLab container registry notification: a Distribution envelope with GitLab's extras."""
    return {
        "events": [
            {
                "id": str(uuid.uuid4()),
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "action": "push",
                "target": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest,
                    "size": 527,
                    "length": 527,
                    "repository": repository,
                    "url": f"http://{host}/v2/{repository}/manifests/{digest}",
                    "tag": tag,
                },
                "request": {
                    "id": str(uuid.uuid4()),
                    "addr": "10.0.0.1:4242",
                    "host": host,
                    "method": "PUT",
                    "useragent": "docker/24.0.7",
                },
                "actor": {"name": "root", "user_type": "personal_access_token"},
                "source": {"addr": "gitlab-registry:5000", "instanceID": str(uuid.uuid4())},
            }
        ]
    }


async def post_format(
    url: str,
    source: str,
    secret: str,
    payload: Mapping[str, Any] | bytes,
    *,
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST ``payload`` to the endpoint of ``source`` as that registry would; (status, JSON)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    sent: dict[str, str] = {"Content-Type": "application/json"}
    params = dict(query or {})
    if source in ("distribution", "gitlab"):
        sent["Authorization"] = f"Bearer {secret}"
    elif source == "harbor":
        sent["Authorization"] = secret  # Harbor sends its "Auth Header" verbatim
    elif source in ("hub", "quay"):
        params.setdefault("token", secret)
    elif source == "github":
        sent["X-GitHub-Event"] = "package"
        sent["X-GitHub-Delivery"] = str(uuid.uuid4())
        mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        sent["X-Hub-Signature-256"] = f"sha256={mac}"
    sent.update(headers or {})
    path = "" if source in ("distribution", "gitlab") else f"/{source}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}{path}", data=body, headers=sent, params=params) as resp,
    ):
        try:
            answer = await resp.json(content_type=None)
        except ValueError:
            answer = {"text": await resp.text()}
        return resp.status, answer if isinstance(answer, dict) else {"body": answer}
