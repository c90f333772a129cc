"""A small fake of Artifact Registry's REST API (the listing calls the reconciler makes).

``GET /v1/projects/{p}/locations/{l}/repositories`` and ``…/repositories/{r}/dockerImages``, the
documented JSON (``repositories[]``, ``dockerImages[]`` with ``name``, ``uri``, ``tags``,
``imageSizeBytes``, ``mediaType``, ``uploadTime``, ``updateTime``; ``nextPageToken``), paginated by
``pageSize``/``pageToken``, on a loopback port. Every call must carry ``Authorization: Bearer
<token>`` (else 401). Every request is recorded (path, query, Authorization) so tests can assert
what was asked and what was sent. Hostile answers for the attack tests: ``extra_images`` (entries
as given, e.g. a ``uri`` naming another host), ``oversized`` (a page past the client's cap),
``next_token`` (a fixed ``nextPageToken``, e.g. a URL).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.ports import free_port

__all__ = ["FakeArtifactRegistry", "Image", "fake_artifact_registry"]


@dataclass(frozen=True)
class Image:
    """One docker image of one repository: its image path, digest, tags and size."""

    repository: str  # the Artifact Registry repository id
    image: str  # e.g. "web/app"
    digest: str
    tags: tuple[str, ...] = ()
    size_bytes: int = 1234


@dataclass
class FakeArtifactRegistry:
    """The fake's state: what it serves, and what it was asked."""

    project: str
    location: str
    token: str
    host: str = ""  # the docker host in uris (default: {location}-docker.pkg.dev)
    repositories: dict[str, str] = field(default_factory=dict)  # id → format
    images: list[Image] = field(default_factory=list)
    page_size_cap: int = 1000
    extra_images: list[dict[str, Any]] = field(default_factory=list)
    oversized: bool = False
    next_token: str = ""
    requests: list[tuple[str, dict[str, str], str]] = field(default_factory=list)
    url: str = ""

    def _docker_host(self) -> str:
        return self.host or f"{self.location}-docker.pkg.dev"

    def _parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/repositories"

    def _image_json(self, image: Image) -> dict[str, Any]:
        quoted = image.image.replace("/", "%2F")
        return {
            "name": f"{self._parent()}/{image.repository}/dockerImages/{quoted}@{image.digest}",
            "uri": f"{self._docker_host()}/{self.project}/{image.repository}/{image.image}"
            f"@{image.digest}",
            "tags": list(image.tags),
            "imageSizeBytes": str(image.size_bytes),
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "uploadTime": "2026-12-01T10:00:00.000000Z",
            "updateTime": "2026-12-01T10:00:00.000000Z",
        }

    def _page(self, request: web.Request, items: list[Any], key: str) -> web.Response:
        size = min(int(request.query.get("pageSize", "50")), self.page_size_cap)
        token = request.query.get("pageToken", "")
        start = int(token) if token.isdigit() else 0  # a token it did not issue: from the start
        page = items[start : start + size]
        doc: dict[str, Any] = {key: page}
        if start + size < len(items):
            doc["nextPageToken"] = str(start + size)
        if self.next_token:
            doc["nextPageToken"] = self.next_token
        if self.oversized:
            doc["padding"] = "x" * (5 << 20)
        return web.json_response(doc)

    def _authorized(self, request: web.Request) -> bool:
        sent = request.headers.get("Authorization", "")
        self.requests.append((request.path, dict(request.query), sent))
        return sent == f"Bearer {self.token}"

    async def list_repositories(self, request: web.Request) -> web.Response:
        """``repositories.list``."""
        if not self._authorized(request):
            return web.json_response({"error": {"code": 401}}, status=401)
        if (request.match_info["p"], request.match_info["l"]) != (self.project, self.location):
            return web.json_response({"error": {"code": 404}}, status=404)
        items = [
            {"name": f"{self._parent()}/{rid}", "format": fmt}
            for rid, fmt in sorted(self.repositories.items())
        ]
        return self._page(request, items, "repositories")

    async def list_images(self, request: web.Request) -> web.Response:
        """``dockerImages.list``."""
        if not self._authorized(request):
            return web.json_response({"error": {"code": 401}}, status=401)
        rid = request.match_info["r"]
        if rid not in self.repositories:
            return web.json_response({"error": {"code": 404}}, status=404)
        items: list[Any] = [self._image_json(i) for i in self.images if i.repository == rid]
        items += self.extra_images
        return self._page(request, items, "dockerImages")


@contextlib.asynccontextmanager
async def fake_artifact_registry(
    project: str = "acme-prod",
    location: str = "us-east1",
    token: str = "ya29.test-token",  # noqa: S107 - the fake's own token
) -> AsyncIterator[FakeArtifactRegistry]:
    """Serve a fake Artifact Registry API on a free loopback port (``.url`` is its origin)."""
    fake = FakeArtifactRegistry(project, location, token)
    app = web.Application()
    base = "/v1/projects/{p}/locations/{l}/repositories"
    app.router.add_get(base, fake.list_repositories)
    app.router.add_get(base + "/{r}/dockerImages", fake.list_images)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()
