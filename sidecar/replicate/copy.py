"""The image copier: one image by digest, with its index children and referrers, to one destination.

Order is what makes a copy safe to interrupt: blobs first (HEAD-skipped, mounted within a
registry, else streamed source → destination and verified), then child and referrer manifests by
digest, then the referrers fallback tags, and the top manifest last — under the tag when there is
one — so the destination tag never points at a partial image.

A tag never moves backwards: right before writing it, the copier asks the source what the tag
names now. When the source tag has moved to another digest (a newer push whose own copy owns the
tag), the image is pushed by digest only and the copy ends with :class:`TagSuperseded`. The source
tag is the one of the request the job was decided from, so a legacy rule's
``destination_tag_prefix``/``_suffix`` (source ``v1``, destination ``mirror-v1``) is checked
too; a job without a request checks the destination tag's name at the source. A source without
that tag (deleted) cannot say, and the tag is written as decided. The check and the write are
two requests: a push landing between them can still lose, which the newer image's own copy
(queued after it) then corrects.

Shared layers move once per destination registry. The copier remembers which repository of each
destination it last saw holding a blob, and mounts from there (one request, no bytes) when another
repository needs it; concurrent copies needing the same blob at the same registry take turns, so
the second one mounts what the first uploaded instead of uploading it again. A mount the registry
refuses (202) turns into the upload itself, in the session it opened.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import orjson
from opentelemetry import trace

from sidecar.errors import RegistryError, SidecarError, TagSuperseded
from sidecar.model.jobs import CopyPlan, CopyProgress, CopyResult, JobSpec, ProgressCallback
from sidecar.oci import (
    OCI_INDEX,
    REF_NAME,
    Descriptor,
    Manifest,
    RegistryClient,
    RegistryClients,
    count_requests,
    digest_of,
    fallback_tag,
)
from sidecar.telemetry import get_logger

__all__ = [
    "MANIFEST_CONCURRENCY",
    "MAX_FOLLOWED_MANIFESTS",
    "SPAN_COPY",
    "ImageCopier",
    "source_tag_of",
]

SPAN_COPY = "oci.copy"
_T = TypeVar("_T")
_PROGRESS_INTERVAL_S = 0.2  # at most ~5 progress reports a second: each may be a database write
# Index children and referrers one copy follows (all levels together): beyond it the copy fails
# before fetching them — a hostile or broken source must not make us walk an unbounded tree.
MAX_FOLLOWED_MANIFESTS = 1_000
MANIFEST_CONCURRENCY = 8  # manifest fetches and referrer lookups in flight per copy
_MAX_REQUEST_CHARS = 256 * 1024  # a stored request is a few hundred bytes; never parse a huge one
_KNOWN_BLOBS = 50_000  # blob locations remembered per destination registry (least recent go first)
_log = get_logger(__name__)


@dataclass
class _Tree:
    """Everything below the top manifest: blobs, manifests in push order, referrer listings."""

    blobs: dict[str, Descriptor] = field(default_factory=dict)
    manifests: list[tuple[Manifest, str]] = field(default_factory=list)
    listings: dict[str, list[Descriptor]] = field(default_factory=dict)
    referrers: int = 0
    followed: int = 0  # child and referrer manifests fetched (or about to be)


@dataclass
class _Run:
    """Counters of one copy and its throttled progress reporting."""

    progress: ProgressCallback | None
    bytes_total: int = 0
    blobs_total: int = 0
    bytes_done: int = 0
    bytes_moved: int = 0
    copied: int = 0
    skipped: int = 0
    mounted: int = 0
    last_report: float = 0.0

    async def report(self, *, force: bool = False) -> None:
        """Tell the callback the cumulative counts, unless it heard from us very recently."""
        now = time.monotonic()
        if self.progress is None or (not force and now - self.last_report < _PROGRESS_INTERVAL_S):
            return
        self.last_report = now
        done = self.copied + self.skipped + self.mounted
        await self.progress(CopyProgress(self.bytes_total, self.bytes_done, self.blobs_total, done))

    async def counting(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Pass chunks through, counting the bytes moved."""
        async for chunk in chunks:
            self.bytes_moved += len(chunk)
            self.bytes_done += len(chunk)
            yield chunk
            await self.report()


class _Locations:
    """Where blobs were last seen at one registry: digest → repository, least recent dropped."""

    def __init__(self, limit: int = _KNOWN_BLOBS) -> None:
        self._limit = limit
        self._where: OrderedDict[str, str] = OrderedDict()

    def get(self, digest: str) -> str:
        """The repository last known to hold ``digest`` ("" when none is)."""
        return self._where.get(digest, "")

    def add(self, digest: str, repository: str) -> None:
        """Remember that ``repository`` holds ``digest``."""
        self._where[digest] = repository
        self._where.move_to_end(digest)
        if len(self._where) > self._limit:
            self._where.popitem(last=False)


async def _bounded(jobs: Iterable[Callable[[], Awaitable[None]]], limit: int) -> None:
    """Run ``jobs`` at most ``limit`` at a time; the first failure cancels the rest and is raised."""
    semaphore = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[None]]) -> None:
        async with semaphore:
            await job()

    try:
        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(run(job))
    except BaseExceptionGroup as failures:
        raise _first(failures) from None


async def _all(aws: Iterable[Coroutine[Any, Any, _T]]) -> list[_T]:
    """Await every coroutine at once; results in order. The first failure cancels the rest."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(aw) for aw in aws]
    except BaseExceptionGroup as failures:
        raise _first(failures) from None
    return [task.result() for task in tasks]


async def _all_bounded(calls: Iterable[Callable[[], Awaitable[_T]]], limit: int) -> list[_T]:
    """Like :func:`_all`, with at most ``limit`` of the calls running at a time."""
    semaphore = asyncio.Semaphore(limit)

    async def run(call: Callable[[], Awaitable[_T]]) -> _T:
        async with semaphore:
            return await call()

    return await _all(run(call) for call in calls)


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The most telling failure of a group: our own errors before anything else."""
    flat: list[BaseException] = []
    for exc in group.exceptions:
        flat.extend(exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,))
    return next((e for e in flat if isinstance(e, SidecarError)), flat[0])


class ImageCopier:
    """Copies images between inventory registries through :class:`RegistryClients`."""

    def __init__(
        self,
        clients: RegistryClients,
        *,
        blob_concurrency: int = 4,
        tracer: trace.Tracer | None = None,
        max_manifests: int = MAX_FOLLOWED_MANIFESTS,
        manifest_concurrency: int = MANIFEST_CONCURRENCY,
    ) -> None:
        """Copy with up to ``blob_concurrency`` blobs in flight; spans go to ``tracer``.

        A copy follows at most ``max_manifests`` index children and referrers (it fails beyond),
        fetching up to ``manifest_concurrency`` of them (or referrer lookups) at a time.

        Pass ``Telemetry.tracer``: the sidecar owns its provider, the global one is a no-op.
        """
        self._clients = clients
        self._concurrency = max(1, blob_concurrency)
        self._tracer = tracer or trace.get_tracer(__name__)
        self._max_manifests = max(0, max_manifests)
        self._manifest_concurrency = max(1, manifest_concurrency)
        self._locations: dict[str, _Locations] = {}  # per destination registry
        # (registry, digest) → done when the blob operation in flight there ends.
        self._in_flight: dict[tuple[str, str], asyncio.Future[None]] = {}

    def _ends(self, spec: JobSpec) -> tuple[RegistryClient, RegistryClient]:
        return self._clients.get(spec.source_registry), self._clients.get(spec.destination_registry)

    async def _already_there(self, dst: RegistryClient, spec: JobSpec) -> tuple[bool, bool]:
        """(present by digest, tag already pointing at it): the cheap idempotency check."""
        repo = spec.destination_repository
        if spec.tag:
            # One HEAD answers the common repeat: the tag resolves to the digest we want.
            tagged = await dst.head_manifest(repo, spec.tag)
            if tagged is not None and tagged.digest == spec.digest:
                return True, True
        present = await dst.head_manifest(repo, spec.digest) is not None
        return present, present and not spec.tag

    def _follow(self, src: RegistryClient, repo: str, tree: _Tree, count: int) -> None:
        """Count ``count`` more manifests to fetch; RegistryError when past the cap."""
        tree.followed += count
        if tree.followed > self._max_manifests:
            raise RegistryError(
                f"registry {src.name}: {repo}: the image has more than {self._max_manifests} "
                "index children and referrers to follow; not copied"
            )

    async def _add(self, src: RegistryClient, repo: str, manifest: Manifest, tree: _Tree) -> None:
        """Add the blobs of an image, or the children (pushed before it) of an index."""
        for blob in manifest.blobs():
            tree.blobs.setdefault(blob.digest, blob)
        children = manifest.children()
        self._follow(src, repo, tree, len(children))
        subs = await _all_bounded(
            [partial(src.get_manifest, repo, child.digest) for child in children],
            self._manifest_concurrency,
        )
        for sub in subs:
            await self._add(src, repo, sub, tree)
            tree.manifests.append((sub, sub.digest))

    async def _collect(self, src: RegistryClient, repo: str, top: Manifest) -> _Tree:
        """Walk the image and the referrers of its digest and of every child digest."""
        tree = _Tree()
        await self._add(src, repo, top, tree)
        seen = {top.digest} | {m.digest for m, _ in tree.manifests}
        subjects = [top.digest, *(c.digest for c in top.children())]
        listed = await _all_bounded(
            [partial(src.referrers, repo, subject) for subject in subjects],
            self._manifest_concurrency,
        )
        for subject, refs in zip(subjects, listed, strict=True):
            for ref in refs:
                if ref.digest in seen:
                    continue
                seen.add(ref.digest)
                self._follow(src, repo, tree, 1)
                manifest = await src.get_manifest(repo, ref.digest)
                await self._add(src, repo, manifest, tree)
                tag = ref.annotations.get(REF_NAME, "")
                tree.manifests.append((manifest, tag if tag.startswith("sha256-") else ref.digest))
                tree.referrers += 1
                if not tag:
                    tree.listings.setdefault(subject, []).append(ref)
        return tree

    async def plan(self, spec: JobSpec) -> CopyPlan:
        """Return what :meth:`copy` would move (reads only)."""
        src, dst = self._ends(spec)
        present, tagged = await self._already_there(dst, spec)
        if present:
            return CopyPlan(
                manifests=0 if tagged else 1, blobs_missing=0, blobs_present=0, bytes_to_copy=0
            )
        top = await src.get_manifest(spec.source_repository, spec.digest)
        tree = await self._collect(src, spec.source_repository, top)
        missing: list[Descriptor] = []

        async def check(blob: Descriptor) -> None:
            if not await dst.blob_exists(spec.destination_repository, blob.digest):
                missing.append(blob)

        await _bounded([partial(check, b) for b in tree.blobs.values()], self._concurrency)
        return CopyPlan(
            manifests=len(tree.manifests) + len(tree.listings) + 1,
            blobs_missing=len(missing),
            blobs_present=len(tree.blobs) - len(missing),
            bytes_to_copy=sum(b.size for b in missing),
        )

    async def copy(self, spec: JobSpec, progress: ProgressCallback | None = None) -> CopyResult:
        """Copy ``spec``: blobs, then child and referrer manifests, then the top manifest."""
        src, dst = self._ends(spec)
        source = f"{spec.source_registry}/{spec.source_repository}@{spec.digest}"
        destination = f"{spec.destination_registry}/{spec.destination_repository}"
        with self._tracer.start_as_current_span(SPAN_COPY) as span, count_requests() as requests:
            span.set_attributes(
                {"source": source, "destination": destination, "digest": spec.digest}
            )
            run = _Run(progress)
            pushed, referrers = await self._copy(spec, src, dst, run)
            span.set_attribute("bytes", run.bytes_moved)
            result = CopyResult(
                digest=spec.digest,
                bytes_moved=run.bytes_moved,
                blobs_copied=run.copied,
                blobs_skipped=run.skipped,
                blobs_mounted=run.mounted,
                manifests_pushed=pushed,
                referrers_copied=referrers,
                requests=requests[0],
            )
        _log.info("image copied", source=source, destination=destination, tag=spec.tag,
                  bytes=result.bytes_moved, blobs_copied=result.blobs_copied,
                  blobs_skipped=result.blobs_skipped, blobs_mounted=result.blobs_mounted,
                  manifests=result.manifests_pushed, referrers=result.referrers_copied,
                  requests=result.requests)  # fmt: skip
        return result

    async def _copy(
        self, spec: JobSpec, src: RegistryClient, dst: RegistryClient, run: _Run
    ) -> tuple[int, int]:
        """Do the copy; return (manifests pushed, referrers copied)."""
        dst_repo = spec.destination_repository
        present, tagged = await self._already_there(dst, spec)
        if tagged:
            return 0, 0
        if present:
            # Complete images only ever appear at the destination (top manifest last): just re-tag.
            await self._tag_still_names(spec, src)
            await dst.put_manifest(
                dst_repo, spec.tag, await dst.get_manifest(dst_repo, spec.digest)
            )
            return 1, 0
        top = await src.get_manifest(spec.source_repository, spec.digest)
        tree = await self._collect(src, spec.source_repository, top)
        run.blobs_total = len(tree.blobs)
        run.bytes_total = sum(b.size for b in tree.blobs.values())
        await run.report(force=True)
        blob = partial(self._blob, spec, src, dst, run)
        # Largest first: the big layer that would otherwise start last no longer ends the copy alone.
        largest_first = sorted(tree.blobs.values(), key=lambda d: d.size, reverse=True)
        await _bounded([partial(blob, d) for d in largest_first], self._concurrency)
        for manifest, reference in tree.manifests:
            await dst.put_manifest(dst_repo, reference, manifest)
        listed = await self._list_referrers(dst, dst_repo, tree.listings)
        if spec.tag:
            try:
                await self._tag_still_names(spec, src)
            except TagSuperseded:
                # The image is complete at the destination by digest; the tag is the newer one's.
                await dst.put_manifest(dst_repo, top.digest, top)
                await run.report(force=True)
                raise
        await dst.put_manifest(dst_repo, spec.tag or top.digest, top)
        await run.report(force=True)
        return len(tree.manifests) + listed + 1, tree.referrers

    async def _tag_still_names(self, spec: JobSpec, src: RegistryClient) -> None:
        """Raise TagSuperseded when the source tag now names another digest than ``spec``'s."""
        source_tag = source_tag_of(spec)
        current = await src.head_manifest(spec.source_repository, source_tag)
        if current is not None and current.digest != spec.digest:
            raise TagSuperseded(
                f"{spec.source_registry}/{spec.source_repository}:{source_tag} now names "
                f"{current.digest}, not {spec.digest}: the destination tag "
                f"{spec.destination_registry}/{spec.destination_repository}:{spec.tag} is left "
                "to the newer image (this one was pushed by digest only)",
                current=current.digest,
            )

    async def _blob(
        self, spec: JobSpec, src: RegistryClient, dst: RegistryClient, run: _Run, desc: Descriptor
    ) -> None:
        """Make one blob present at the destination: skip, mount, or stream it from the source."""
        registry, repo = spec.destination_registry, spec.destination_repository
        key = (registry, desc.digest)
        # One operation per blob and registry at a time: the next one then finds it there, or
        # mounts it from the repository it just went to, instead of moving the bytes again.
        while (flight := self._in_flight.get(key)) is not None:
            await asyncio.wait([flight])
        flight = asyncio.get_running_loop().create_future()
        self._in_flight[key] = flight
        known = self._locations.setdefault(registry, _Locations())
        try:
            if await dst.blob_exists(repo, desc.digest):
                run.skipped += 1
            else:
                # Within one registry, from the source; else from wherever we last saw it there.
                same = spec.source_registry == registry
                mount_from = spec.source_repository if same else known.get(desc.digest)
                mount_from = "" if mount_from == repo else mount_from
                chunks = run.counting(src.stream_blob(spec.source_repository, desc.digest))
                if await dst.push_blob(
                    repo, desc.digest, desc.size, chunks, mount_from=mount_from,
                    verified_source=True,
                ):  # fmt: skip
                    run.mounted += 1
                else:
                    run.copied += 1
                    run.bytes_done -= desc.size  # counted while streaming; added back below
            known.add(desc.digest, repo)
        finally:
            del self._in_flight[key]
            flight.set_result(None)
        run.bytes_done += desc.size
        await run.report()

    async def _list_referrers(
        self, dst: RegistryClient, repo: str, listings: dict[str, list[Descriptor]]
    ) -> int:
        """Where the destination has no referrers API, merge the copied ones into its fallback tags."""
        pushed = 0
        for subject, found in listings.items():
            if await dst.referrers_api(repo, subject) is not None:
                continue  # the registry indexes referrers itself from their subject field
            tag = fallback_tag(subject)
            current: list[dict[str, object]] = []
            if await dst.head_manifest(repo, tag) is not None:
                current = list((await dst.get_manifest(repo, tag)).json.get("manifests") or [])
            known = {str(d.get("digest")) for d in current}
            added = [_descriptor_json(d) for d in found if d.digest not in known]
            if not added:
                continue
            doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": current + added}
            data = orjson.dumps(doc)
            await dst.put_manifest(repo, tag, Manifest(digest_of(data), OCI_INDEX, data))
            pushed += 1
        return pushed


def source_tag_of(spec: JobSpec) -> str:
    """The source tag a copy was decided for: the stored request's, else the destination tag.

    A legacy rule's ``destination_tag_prefix``/``destination_tag_suffix`` renames the tag (``v1`` →
    ``mirror-v1``), so the destination tag names nothing at the source; the request the job was
    decided from (job store schema 4) still says which source tag it was. A request about
    another image (never written so, but cheap to refuse) or with no tag is not used.
    """
    if not spec.request or len(spec.request) > _MAX_REQUEST_CHARS:
        return spec.tag
    try:
        image = orjson.loads(spec.request).get("image") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return spec.tag
    if not isinstance(image, dict):
        return spec.tag
    tag = image.get("tag")
    same = (
        image.get("registry") == spec.source_registry
        and image.get("repository") == spec.source_repository
        and image.get("digest") in ("", None, spec.digest)
    )
    return tag if same and isinstance(tag, str) and tag else spec.tag


def _descriptor_json(desc: Descriptor) -> dict[str, object]:
    doc: dict[str, object] = {
        "mediaType": desc.media_type,
        "digest": desc.digest,
        "size": desc.size,
    }
    if desc.artifact_type:
        doc["artifactType"] = desc.artifact_type
    if desc.annotations:
        doc["annotations"] = dict(desc.annotations)
    return doc
