"""Artifact Registry listing for the observer: its REST API (it serves no ``/v2/_catalog``).

``GET {api}/v1/projects/{project}/locations/{location}/repositories`` (the ``DOCKER`` ones), then
``GET …/repositories/{id}/dockerImages?pageSize=&pageToken=`` for each, both paginated by
``nextPageToken``. A docker image answers its ``uri`` (``{host}/{project}/{id}/{image}@sha256:…``),
``tags``, ``mediaType`` and ``imageSizeBytes`` at once, so no HEAD per tag is made. The OCI
repository of an image is ``{project}/{id}/{image}``, as in the registry's own paths.

What the answers are trusted with: an image whose ``uri`` names another host, project or
repository than the one listed is ignored (logged): it cannot be made to look like another
registry's image; a tag listed at two digests is ignored too. The Google access token (the
registry's own credentials, user ``oauth2accesstoken``) goes only to the API origin: URLs are
built from that origin and fixed paths, a page token is only ever a query value, redirects are
not followed. Each page is capped at
4 MiB; pages per listing, page tokens' length and the tags read (``max_tags``) are bounded. The
registry's rate limit (``replication.registry_rate_limit_rps``) paces the API requests too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
import orjson
from yarl import URL

from sidecar.config import RegistryConfig
from sidecar.errors import RegistryError
from sidecar.oci import RegistryClient, RegistryClients
from sidecar.oci.ratelimit import TokenBucket
from sidecar.telemetry import get_logger
from sidecar.typing import ListedTag, TagLister

__all__ = [
    "DEFAULT_API",
    "MAX_PAGE_BYTES",
    "ArtifactRegistryLister",
    "artifact_registry_listers",
    "is_artifact_registry",
]

_log = get_logger("sidecar.reconcile")
#: Artifact Registry's API origin (``metadata.api_endpoint`` overrides it).
DEFAULT_API = "https://artifactregistry.googleapis.com"
#: One page of the API's answer; more is cut off with an error (the registry is then unreadable).
MAX_PAGE_BYTES = 4 << 20
_PAGE_SIZE = 1000  # the API's maximum
_MAX_PAGES = 1000  # per listing: 1,000 pages of 1,000 images is far past max_tags' default
_MAX_PAGE_TOKEN = 4096
_AR_TYPES = frozenset({"gar", "artifact-registry", "artifactregistry"})
_GCP_TYPES = frozenset({"gcr", "gcp", "google"})
_GOOGLE_USER = "oauth2accesstoken"
# Project and location ids, and Artifact Registry repository ids (lowercase, digits, hyphens;
# a domain-scoped project has a "domain:" prefix).
_ID = re.compile(r"^[a-z0-9][a-z0-9.:-]{0,127}$")
_REPOSITORY_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_IMAGE = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def is_artifact_registry(registry: RegistryConfig) -> bool:
    """True for a registry listed through the Artifact Registry API.

    ``type: gar`` (or ``artifact-registry``), or a Google type (``gcr``, ``gcp``, ``google``)
    whose endpoint is an Artifact Registry host (``{location}-docker.pkg.dev``).
    """
    kind = registry.type.strip().lower()
    return kind in _AR_TYPES or (kind in _GCP_TYPES and registry.host.endswith("-docker.pkg.dev"))


def _api_base(registry: RegistryConfig, override: str | None) -> URL:
    """The API origin: https anywhere, plain http only on loopback (a local fake)."""
    text = override or str(registry.metadata.get("api_endpoint") or "") or DEFAULT_API
    url = URL(text)
    what = f"registry {registry.name}: metadata.api_endpoint {text!r}"
    if url.scheme not in ("http", "https") or not url.host or url.user or url.password:
        raise RegistryError(f"{what}: not an http(s) origin")
    if url.path not in ("", "/") or url.query_string or url.fragment:
        raise RegistryError(f"{what}: an origin only (no path, query or fragment)")
    if url.scheme == "http" and not _loopback(url.host):
        raise RegistryError(f"{what}: plain http only on loopback (the token would travel clear)")
    return url.origin()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ArtifactRegistryLister:
    """Lists one Artifact Registry location of one project (``typing.TagLister``)."""

    def __init__(
        self,
        registry: RegistryConfig,
        client: RegistryClient,
        *,
        rate_limit_rps: float | None = None,
        concurrency: int = 4,
        max_tags: int = 100_000,
        api_endpoint: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        """List ``registry`` with ``client``'s credentials; ``api_endpoint`` overrides the API."""
        self._registry = registry
        self._client = client
        self._override = api_endpoint
        self._bucket = TokenBucket(rate_limit_rps, 10) if rate_limit_rps else None
        self._concurrency = max(1, concurrency)
        self._max_tags = max_tags
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_read=timeout_s)
        self._listed: dict[str, list[ListedTag]] = {}
        self.requests = 0
        self.ignored = 0  # images whose uri named another host, project or repository

    @property
    def _what(self) -> str:
        return f"registry {self._registry.name}: Artifact Registry"

    def _location(self) -> str:
        registry = self._registry
        if registry.location:
            return registry.location
        host = registry.host.split(":")[0]
        if host.endswith("-docker.pkg.dev"):
            return host.removesuffix("-docker.pkg.dev")
        return registry.region

    def _host(self) -> str:
        return (self._registry.host or f"{self._location()}-docker.pkg.dev").lower()

    async def _bearer(self) -> str:
        credentials = await self._client.credentials()
        if credentials is None or credentials[0] != _GOOGLE_USER or not credentials[1]:
            raise RegistryError(
                f"{self._what}: listing needs a Google access token (auth type gcr/gcp/google, "
                f"or auth.type token with username {_GOOGLE_USER})",
                status=401,
            )
        return credentials[1]

    async def repositories(self, *, limit: int) -> list[str]:
        """List every docker image of the location; return up to ``limit + 1`` repositories."""
        project, location = self._registry.project, self._location()
        for name, value in (("project", project), ("location", location)):
            if not _ID.match(value):
                raise RegistryError(f"{self._what}: {name} {value!r} is not a valid id")
        base = _api_base(self._registry, self._override)
        parent = f"/v1/projects/{project}/locations/{location}/repositories"
        token = await self._bearer()
        async with aiohttp.ClientSession(timeout=self._timeout) as session:
            ids = [
                str(r.get("name", "")).rsplit("/", 1)[-1]
                for r in await self._pages(session, base, parent, "repositories", token)
                if isinstance(r, Mapping) and r.get("format") == "DOCKER"
                and str(r.get("name", "")).startswith(parent.removeprefix("/v1/") + "/")
            ]  # fmt: skip
            ids = [i for i in ids if _REPOSITORY_ID.match(i)]
            limit_calls = asyncio.Semaphore(self._concurrency)

            async def images(repository_id: str) -> list[Any]:
                async with limit_calls:
                    path = f"{parent}/{repository_id}/dockerImages"
                    return await self._pages(session, base, path, "dockerImages", token)

            listed = await asyncio.gather(*(images(i) for i in ids))
        grouped: dict[str, dict[str, ListedTag]] = {}
        conflicting: set[tuple[str, str]] = set()
        for repository_id, entries in zip(ids, listed, strict=True):
            for entry in entries:
                for repository, tag in self._tags(repository_id, entry):
                    held = grouped.setdefault(repository, {}).setdefault(tag.tag, tag)
                    if held.digest != tag.digest:
                        conflicting.add((repository, tag.tag))
        for repository, tag_name in sorted(conflicting):
            # One tag names one manifest: an answer saying otherwise is not trusted with either.
            del grouped[repository][tag_name]
            self.ignored += 1
            _log.warning("reconcile: Artifact Registry tag ignored: listed at two digests",
                         registry=self._registry.name, repository=repository, tag=tag_name)  # fmt: skip
        self._listed = {r: sorted(t.values(), key=lambda t: t.tag) for r, t in grouped.items()}
        return sorted(self._listed)[: limit + 1]

    async def tags(self, repository: str, *, limit: int) -> list[ListedTag]:
        """The tags :meth:`repositories` found in ``repository`` (up to ``limit + 1``)."""
        return self._listed.get(repository, [])[: limit + 1]

    def _tags(self, repository_id: str, entry: object) -> list[tuple[str, ListedTag]]:
        """(OCI repository, tag) of one docker image; none when its uri is not this listing's."""
        if not isinstance(entry, Mapping):
            return []
        uri = str(entry.get("uri", ""))
        prefix = f"{self._host()}/{self._registry.project}/{repository_id}/"
        path, _, digest = uri.partition("@")
        image = path[len(prefix) :] if path.lower().startswith(prefix.lower()) else ""
        if not image or not _IMAGE.match(image) or not _DIGEST.match(digest):
            self.ignored += 1
            _log.warning("reconcile: Artifact Registry image ignored: not this repository's",
                         registry=self._registry.name, uri=uri[:300], expected=prefix)  # fmt: skip
            return []
        tags = entry.get("tags") or []
        media_type = str(entry.get("mediaType") or "")
        try:
            size = int(entry.get("imageSizeBytes") or 0)
        except (TypeError, ValueError):
            size = 0
        repository = f"{self._registry.project}/{repository_id}/{image}"
        return [
            (repository, ListedTag(tag=t, digest=digest, media_type=media_type, size_bytes=size))
            for t in (tags if isinstance(tags, list) else [])
            if isinstance(t, str) and _TAG.match(t)
        ]

    async def _pages(
        self, session: aiohttp.ClientSession, base: URL, path: str, key: str, token: str
    ) -> list[Any]:
        """Every item of a paginated list (stops past max_tags items: the observer refuses)."""
        items: list[Any] = []
        seen: set[str] = set()
        page_token = ""
        for _ in range(_MAX_PAGES):
            query = {"pageSize": str(_PAGE_SIZE)}
            if page_token:
                query["pageToken"] = page_token
            # The origin and path are ours; the token is only ever a query value.
            doc = await self._get(session, base.with_path(path).with_query(query), token)
            found = doc.get(key) or []
            if not isinstance(found, list):
                raise RegistryError(f"{self._what}: {path}: {key} is not a list")
            items += found
            page_token = doc.get("nextPageToken") or ""
            if not page_token or len(items) > self._max_tags:
                return items
            if not isinstance(page_token, str) or len(page_token) > _MAX_PAGE_TOKEN:
                raise RegistryError(f"{self._what}: {path}: unusable nextPageToken")
            if page_token in seen:
                raise RegistryError(f"{self._what}: {path}: nextPageToken repeats (a loop)")
            seen.add(page_token)
        raise RegistryError(f"{self._what}: {path}: more than {_MAX_PAGES} pages")

    async def _get(self, session: aiohttp.ClientSession, url: URL, token: str) -> dict[str, Any]:
        what = f"{self._what}: {url.path}"
        if self._bucket is not None:
            await self._bucket.acquire()
        self.requests += 1
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        try:
            async with session.get(url, headers=headers, allow_redirects=False) as resp:
                if resp.status != 200:
                    body = (await resp.content.read(512)).decode("utf-8", "replace")
                    raise RegistryError(
                        f"{what}: HTTP {resp.status}: {body.strip()[:200]}",
                        status=resp.status,
                        transient=resp.status >= 500 or resp.status == 429,
                    )
                declared = resp.content_length
                if declared is not None and declared > MAX_PAGE_BYTES:
                    raise RegistryError(
                        f"{what}: page of {declared} bytes cut off: more than {MAX_PAGE_BYTES}"
                    )
                data = await resp.content.read(MAX_PAGE_BYTES + 1)
                if len(data) > MAX_PAGE_BYTES:
                    raise RegistryError(f"{what}: page cut off: more than {MAX_PAGE_BYTES} bytes")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RegistryError(f"{what}: {type(exc).__name__}: {exc}", transient=True) from exc
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise RegistryError(f"{what}: the answer is not JSON") from exc
        if not isinstance(doc, dict):
            raise RegistryError(f"{what}: the answer is not a JSON object")
        return doc


def artifact_registry_listers(
    registries: Iterable[RegistryConfig],
    clients: RegistryClients,
    *,
    rate_limit_rps: Mapping[str, float] | float | None = None,
    concurrency: int = 4,
    max_tags: int = 100_000,
) -> Mapping[str, TagLister]:
    """Return an :class:`ArtifactRegistryLister` for each Artifact Registry registry, by name."""
    listers: dict[str, TagLister] = {}
    for registry in registries:
        if not is_artifact_registry(registry):
            continue
        rps = (
            rate_limit_rps.get(registry.name)
            if isinstance(rate_limit_rps, Mapping)
            else (rate_limit_rps)
        )
        listers[registry.name] = ArtifactRegistryLister(
            registry, clients.get(registry.name), rate_limit_rps=rps,
            concurrency=concurrency, max_tags=max_tags, timeout_s=registry.timeout_s or 30.0,
        )  # fmt: skip
    return listers
