"""A copy never moves a destination tag backwards (issue 13 item 7), between real registries.

The older image's copy is held on a slow link (writes partitioned by the fault proxy in front of
the destination) while the source tag moves to a newer image whose own copy finishes first. When
the old copy resumes, the destination tag must stay at the newer digest.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sidecar.errors import TagSuperseded
from sidecar.model.jobs import JobSpec, JobState
from sidecar.replicate.copy import ImageCopier
from sidecar.replicate.retry import RetryPolicy
from sidecar.store import SqlJobStore
from tests.support.images import push_image
from tests.support.stale_copies import job_until, slow_link, until, uploading, worker_pool

pytestmark = pytest.mark.integration

FAST = RetryPolicy(base_s=0.02, max_s=0.1, rng=random.Random(3))  # noqa: S311 (jitter)
REPO, TAG = "team/app", "v1"


def _spec(digest: str) -> JobSpec:
    return JobSpec("src", REPO, digest, "dst", "mirror/app", tag=TAG)


async def test_an_older_copy_finishing_last_leaves_the_tag_at_the_newer_digest(
    tmp_path: Path, store: SqlJobStore
) -> None:
    async with slow_link(tmp_path) as world:
        direct, slow, link = world.direct, world.slow, world.link
        src, dst = direct.get("src"), direct.get("dst")
        v1 = await push_image(src, REPO, tag=TAG, seed=1, layer_sizes=(200_000,))
        link.faults.partition = True  # v1's copy stalls at its first upload
        [old] = await store.enqueue([_spec(v1.digest)])
        async with worker_pool(store, slow, "slow", FAST):
            await until(lambda: uploading(link))
            v2 = await push_image(src, REPO, tag=TAG, seed=2, layer_sizes=(200_000,))
            [new] = await store.enqueue([_spec(v2.digest)])
            async with worker_pool(store, direct, "fast", FAST):
                await job_until(store, new, {JobState.SUCCEEDED})
            tagged = await dst.head_manifest("mirror/app", TAG)
            assert tagged is not None and tagged.digest == v2.digest
            link.faults.partition = False  # the old copy resumes and reaches its tag write
            finished = await job_until(
                store, old, {JobState.SUCCEEDED, JobState.SKIPPED, JobState.FAILED}
            )

        # The destination tag was not moved back; the old image is there by digest only.
        tagged = await dst.head_manifest("mirror/app", TAG)
        assert tagged is not None and tagged.digest == v2.digest
        assert await dst.head_manifest("mirror/app", v1.digest) is not None
        assert finished.state is JobState.SKIPPED
        assert finished.error_code == "superseded"
        assert v2.digest in finished.error and f"src/{REPO}:{TAG}" in finished.error
        assert (await store.get(new.job_id)).state is JobState.SUCCEEDED


async def test_a_retag_of_an_image_already_there_checks_the_source_tag_too(tmp_path: Path) -> None:
    async with slow_link(tmp_path) as world:
        direct = world.direct
        src, dst = direct.get("src"), direct.get("dst")
        copier = ImageCopier(direct)
        v1 = await push_image(src, REPO, tag=TAG, seed=1)
        await copier.copy(_spec(v1.digest))
        v2 = await push_image(src, REPO, tag=TAG, seed=2)
        await copier.copy(_spec(v2.digest))
        # v1 is at the destination by digest; re-tagging it now would move the tag backwards.
        with pytest.raises(TagSuperseded) as superseded:
            await copier.copy(_spec(v1.digest))
        assert superseded.value.current == v2.digest
        tagged = await dst.head_manifest("mirror/app", TAG)
        assert tagged is not None and tagged.digest == v2.digest


async def test_the_tag_is_written_when_the_source_still_names_the_digest_or_has_no_such_tag(
    tmp_path: Path,
) -> None:
    async with slow_link(tmp_path) as world:
        direct = world.direct
        src, dst = direct.get("src"), direct.get("dst")
        copier = ImageCopier(direct)
        v1 = await push_image(src, REPO, tag=TAG, seed=1)
        await copier.copy(_spec(v1.digest))
        untagged = await push_image(src, REPO, seed=3)  # by digest only: the source has no "v2"
        renamed = JobSpec("src", REPO, untagged.digest, "dst", "mirror/app", tag="v2")
        await copier.copy(renamed)
        for tag, digest in ((TAG, v1.digest), ("v2", untagged.digest)):
            tagged = await dst.head_manifest("mirror/app", tag)
            assert tagged is not None and tagged.digest == digest
