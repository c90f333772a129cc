"""ECR listing for the observer: ``DescribeRepositories`` then ``DescribeImages`` (paginated).

ECR answers a repository's tags with their digests, sizes and media types in one paginated call,
so an ECR registry is observed without a HEAD per tag. boto3 blocks: every call runs in a
thread. The client is the registry's own, as for its ECR login (region, profile, credentials
file, assumed role, ``metadata.ecr_endpoint_url``), so its credentials go only to its own
endpoint; any failure is a RegistryError and the registry is reported unreadable (nothing is
removed from it).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sidecar.config import RegistryConfig
from sidecar.errors import RegistryError
from sidecar.oci import aws_session
from sidecar.typing import ListedTag, TagLister

if TYPE_CHECKING:  # boto3 is slow to import and only ECR registries need it
    from mypy_boto3_ecr import ECRClient

__all__ = ["EcrLister", "ecr_listers"]


class EcrLister:
    """Lists one ECR registry through the ECR API (``typing.TagLister``)."""

    def __init__(self, registry: RegistryConfig, *, endpoint_url: str | None = None) -> None:
        """List ``registry`` (type ``ecr``); ``endpoint_url`` overrides its ECR API endpoint."""
        self._registry = registry
        self._endpoint_url = (
            endpoint_url or str(registry.metadata.get("ecr_endpoint_url") or "") or None
        )
        self._client: ECRClient | None = None
        self._lock = threading.Lock()

    def _ecr(self) -> ECRClient:
        with self._lock:
            if self._client is None:
                # The registry's own credentials: profile, credentials file, assumed role.
                session = aws_session(self._registry, sts_endpoint_url=self._endpoint_url)
                self._client = session.client("ecr", endpoint_url=self._endpoint_url)
            return self._client

    def _owner(self) -> dict[str, Any]:
        account = self._registry.account_id
        return {"registryId": account} if account else {}

    async def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args)
        except Exception as exc:  # boto3 raises many unrelated types; all mean "not listed"
            raise RegistryError(
                f"registry {self._registry.name}: ECR {what}: {type(exc).__name__}: {exc}"
            ) from exc

    async def repositories(self, *, limit: int) -> list[str]:
        """Return up to ``limit + 1`` repository names (more than ``limit``: over the bound)."""

        def run() -> list[str]:
            pages = self._ecr().get_paginator("describe_repositories").paginate(**self._owner())
            return _first(
                (str(r["repositoryName"]) for page in pages for r in page["repositories"]),
                limit + 1,
            )

        names: list[str] = await self._call("DescribeRepositories", run)
        return names

    async def tags(self, repository: str, *, limit: int) -> list[ListedTag]:
        """Return up to ``limit + 1`` tags of ``repository`` with digest, media type and size."""

        def run() -> list[ListedTag]:
            pages = (
                self._ecr()
                .get_paginator("describe_images")
                .paginate(repositoryName=repository, **self._owner())
            )
            return _first(
                (
                    ListedTag(
                        tag=str(tag),
                        digest=str(image["imageDigest"]),
                        media_type=str(image.get("imageManifestMediaType") or ""),
                        size_bytes=int(image.get("imageSizeInBytes") or 0),
                    )
                    for page in pages
                    for image in page["imageDetails"]
                    for tag in image.get("imageTags") or ()
                ),
                limit + 1,
            )

        listed: list[ListedTag] = await self._call("DescribeImages", run)
        return listed


def _first(items: Iterable[Any], count: int) -> list[Any]:
    """The first ``count`` items (stops paginating once there are enough)."""
    taken: list[Any] = []
    for item in items:
        if len(taken) >= count:
            break
        taken.append(item)
    return taken


def ecr_listers(
    registries: Iterable[RegistryConfig], *, endpoint_url: str | None = None
) -> Mapping[str, TagLister]:
    """Return an :class:`EcrLister` for each registry of type ``ecr``, by name."""
    return {
        r.name: EcrLister(r, endpoint_url=endpoint_url)
        for r in registries
        if r.type.lower() == "ecr"
    }
