"""Delete jobs: take one image (by digest) away from one destination tag, re-checked at run time.

A delete job is queued by the reconciler for a removal or cleanup the policy asked for; the
worker pool runs it like a copy (lease, retries, parking), and this deleter checks again, at the
moment it acts, what the reconciler checked when it planned:

* never a source registry (``policy.reconcile.sources``);
* never while the source cannot be read: its existence is unknown;
* ``delete`` (a removal the policy asked for): never once the source image is gone, its copies
  are left as they are; ``propagate-delete`` (the source deleted it, ``propagate_deletes``): the
  inverse, never while the source still holds the digest at the job's tag (a re-push: the copy
  stays);
* never a tag that holds another digest than the job's: someone else's write (the job fails,
  naming it); an absent tag is already done (the job succeeds: idempotent, nothing twice);
* by digest only when no other tag of the repository points at it, else the tag alone (a
  registry that cannot delete a tag fails the job, saying so).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from sidecar.errors import RegistryError
from sidecar.model.jobs import CopyResult, JobSpec
from sidecar.oci import RegistryClients, count_requests

__all__ = ["ImageDeleter", "RemovalRefused"]

# Tags of one repository looked at for other references to the digest; past it, untag only.
_MAX_TAGS_CHECKED = 1000


class RemovalRefused(RegistryError):
    """A delete job's rail refused it: permanent, never retried."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=409, transient=False)


class ImageDeleter:
    """Runs delete jobs against the inventory's registries (the :class:`~sidecar.typing.Deleter`)."""

    def __init__(self, clients: RegistryClients, *, sources: Collection[str] = ()) -> None:
        self._clients = clients
        self._sources = frozenset(sources)

    async def delete(self, spec: JobSpec) -> CopyResult:
        """Delete ``spec.digest`` at its destination tag within the rails; return what it did."""
        with count_requests() as tally:
            where = f"{spec.destination_registry}/{spec.destination_repository}:{spec.tag}"
            if spec.destination_registry in self._sources or (
                spec.destination_registry == spec.source_registry
            ):
                raise RemovalRefused(f"{where}: never removed from a source registry")
            if spec.kind == "propagate-delete":
                await self._source_deleted(spec, where)
            else:
                await self._source_present(spec, where)
            client = self._clients.get(spec.destination_registry)
            held = await client.head_manifest(spec.destination_repository, spec.tag)
            deleted = 0
            if held is not None:
                if held.digest != spec.digest:
                    raise RemovalRefused(
                        f"{where} holds {held.digest}, not {spec.digest}: someone else's write"
                    )
                await self._delete(client_name=spec.destination_registry, spec=spec)
                deleted = 1
        # A delete moves nothing: manifests_pushed counts the manifests it deleted (0: already gone).
        return CopyResult(spec.digest, 0, 0, 0, 0, deleted, 0, tally[0])

    async def _source_present(self, spec: JobSpec, where: str) -> None:
        source = self._clients.get(spec.source_registry)
        try:
            found = await source.head_manifest(spec.source_repository, spec.digest)
        except RegistryError as exc:
            raise RemovalRefused(
                f"{where}: the source {spec.source_registry}/{spec.source_repository}"
                f"@{spec.digest} cannot be read ({exc.message}): nothing is removed"
            ) from exc
        if found is None:
            raise RemovalRefused(f"{where}: the source image is gone: nothing is removed")

    async def _source_deleted(self, spec: JobSpec, where: str) -> None:
        """Refuse unless the source no longer holds ``spec.digest`` under ``spec.tag``."""
        source = self._clients.get(spec.source_registry)
        origin = f"{spec.source_registry}/{spec.source_repository}"
        try:
            found = await source.head_manifest(spec.source_repository, spec.digest)
            if found is not None and spec.tag:
                found = await source.head_manifest(spec.source_repository, spec.tag)
        except RegistryError as exc:
            raise RemovalRefused(
                f"{where}: the source {origin} cannot be read ({exc.message}): whether it was "
                "deleted is unknown, nothing is removed"
            ) from exc
        if found is not None and found.digest == spec.digest:
            raise RemovalRefused(
                f"{where}: the source {origin} still holds {spec.digest}"
                f"{' at ' + spec.tag if spec.tag else ''} (pushed again?): the copy stays"
            )

    async def _delete(self, *, client_name: str, spec: JobSpec) -> None:
        client = self._clients.get(client_name)
        repository = spec.destination_repository
        tags = [
            t for t in await client.list_tags(repository, limit=_MAX_TAGS_CHECKED) if t != spec.tag
        ]
        heads = await asyncio.gather(*(client.head_manifest(repository, t) for t in tags))
        others = sorted(
            t for t, h in zip(tags, heads, strict=True) if h and h.digest == spec.digest
        )
        if not others:
            await client.delete_manifest(repository, spec.digest)
            return
        try:
            await client.delete_manifest(repository, spec.tag)
        except RegistryError as exc:
            if exc.status not in (400, 405):
                raise
            raise RemovalRefused(
                f"{client_name}/{repository}:{spec.tag}: the registry refuses to delete a tag, "
                f"and the digest is kept by other tags ({', '.join(others)}): left in place"
            ) from exc
