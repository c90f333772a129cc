"""A legacy rule's tag prefix does not defeat the stale-tag check (issue 13 item 7).

A Freightliner sync config with ``destination_prefix: mirror-`` copies the source tag ``v1`` to
``mirror-v1``: the destination tag names nothing at the source. The job keeps the request it was
decided from (the real policy on a managed OPA decides each push), whose image tag is the
source's, and the copier checks that one before the final manifest PUT. Real registries; the
older copy is held on a partitioned link while the newer one finishes first.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from sidecar.app.policy import decision_service, policy_runtime
from sidecar.app.replication import replication_parts
from sidecar.config import Config, load_config
from sidecar.model.decision import Caller, DecideRequest, ImageRef
from sidecar.model.jobs import Job, JobSpec, JobState
from sidecar.replicate.copy import ImageCopier, source_tag_of
from sidecar.replicate.deferred import request_to_json
from sidecar.replicate.retry import RetryPolicy
from sidecar.replicate.service import job_specs
from sidecar.telemetry import Telemetry
from tests.support.images import push_image
from tests.support.sidecar import isolated_config
from tests.support.stale_copies import job_until, slow_link, until, worker_pool

pytestmark = pytest.mark.integration

FAST = RetryPolicy(base_s=0.02, max_s=0.1, rng=random.Random(5))  # noqa: S311 (jitter)
REPO, TAG, PREFIXED = "team/app", "v1", "mirror-v1"
DEST_REPO = "mirror/app"


def _spec(digest: str, *, tag: str = TAG) -> JobSpec:
    """A job as the replication service queues it for a legacy rule with a tag prefix."""
    request = DecideRequest(
        image=ImageRef("src", REPO, tag, digest),
        event="push",
        caller=Caller(subject="registry-webhook"),
    )
    return JobSpec(
        "src", REPO, digest, "dst", DEST_REPO, tag=f"mirror-{tag}",
        request=request_to_json(request),
    )  # fmt: skip


def _sync_config(tmp_path: Path, src: str, dst: str) -> Config:
    """Registries src and dst, and a Freightliner sync config copying team/app with a tag prefix."""
    host = {name: url.split("://", 1)[1] for name, url in (("src", src), ("dst", dst))}
    sync = {
        "source": {"registry": host["src"]},
        "destination": {"registry": host["dst"]},
        "images": [{"repository": REPO, "all_tags": True, "destination_prefix": "mirror-"}],
    }
    (tmp_path / "sync.yaml").write_text(yaml.safe_dump(sync), encoding="utf-8")
    doc = {
        "registries": [
            {"name": name, "endpoint": url, "region": "us-east-1",
             "metadata": {"environment": "dev"}}
            for name, url in (("src", src), ("dst", dst))
        ],
        "policy": {"legacy": {"sync_configs": [str(tmp_path / "sync.yaml")]}},
    }  # fmt: skip
    (tmp_path / "sidecar.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    return isolated_config(load_config(tmp_path / "sidecar.yaml"), tmp_path / "state")


async def test_a_prefixed_destination_tag_is_not_moved_back_by_an_older_copy(
    tmp_path: Path,
) -> None:
    async with slow_link(tmp_path) as world:
        direct, slow, link, urls = (
            world.direct,
            world.slow,
            world.link,
            (world.src_url, world.dst_url),
        )
        src, dst = direct.get("src"), direct.get("dst")
        config = _sync_config(tmp_path, *urls)
        telemetry = Telemetry("legacy-prefix-test")
        async with (
            policy_runtime(config) as runtime,
            replication_parts(config, telemetry) as parts,
        ):
            decisions = decision_service(config, telemetry, runtime, parts)

            async def replicate(digest: str) -> Job:
                """Decide the push on the real policy and queue its jobs, as a push does."""
                request = DecideRequest(
                    image=ImageRef("src", REPO, TAG, digest), event="push", caller=Caller("ci")
                )
                result = await decisions.decide(request)
                specs = job_specs(result, request.image, request=request)
                assert [(s.destination_registry, s.tag) for s in specs] == [("dst", PREFIXED)]
                [job] = await parts.store.enqueue(specs)
                return job

            store = parts.store
            v1 = await push_image(src, REPO, tag=TAG, seed=11, layer_sizes=(200_000,))
            link.faults.partition = True  # the first push's copy stalls at its first upload
            old = await replicate(v1.digest)
            async with worker_pool(store, slow, "slow", FAST):
                await until(
                    lambda: any(
                        r.startswith("POST ") and "/blobs/uploads/" in r for r in link.requests
                    )
                )
                v2 = await push_image(src, REPO, tag=TAG, seed=12, layer_sizes=(200_000,))
                new = await replicate(v2.digest)
                async with worker_pool(store, direct, "fast", FAST):
                    await job_until(store, new, {JobState.SUCCEEDED})
                link.faults.partition = False  # the older copy resumes and reaches its tag write
                finished = await job_until(
                    store, old, {JobState.SUCCEEDED, JobState.SKIPPED, JobState.FAILED}
                )
        telemetry.shutdown()

        # Read back by digest: the prefixed tag is at the source tag's current digest.
        current = await src.head_manifest(REPO, TAG)
        tagged = await dst.head_manifest(REPO, PREFIXED)
        assert current is not None and current.digest == v2.digest
        assert tagged is not None and tagged.digest == v2.digest
        assert await dst.head_manifest(REPO, v1.digest) is not None  # by digest only
        assert finished.state is JobState.SKIPPED and finished.error_code == "superseded"
        assert f"src/{REPO}:{TAG} now names {v2.digest}" in finished.error


async def test_a_prefixed_copy_whose_source_tag_still_names_it_is_tagged(tmp_path: Path) -> None:
    async with slow_link(tmp_path) as world:
        direct = world.direct
        src, dst = direct.get("src"), direct.get("dst")
        v1 = await push_image(src, REPO, tag=TAG, seed=13)
        await ImageCopier(direct).copy(_spec(v1.digest))
        tagged = await dst.head_manifest(DEST_REPO, PREFIXED)
        assert tagged is not None and tagged.digest == v1.digest


def test_the_source_tag_comes_from_the_request_of_the_same_image_only() -> None:
    digest = "sha256:" + "a" * 64
    assert source_tag_of(_spec(digest)) == TAG
    # No request (queued before schema 4): the destination tag is all there is.
    assert source_tag_of(JobSpec("src", REPO, digest, "dst", DEST_REPO, tag=PREFIXED)) == PREFIXED
    # A request about another image, or one that is not JSON, is not used.
    other = request_to_json(DecideRequest(image=ImageRef("src", "other/app", TAG, digest)))
    spec = JobSpec("src", REPO, digest, "dst", DEST_REPO, tag=PREFIXED, request=other)
    assert source_tag_of(spec) == PREFIXED
    spec = JobSpec("src", REPO, digest, "dst", DEST_REPO, tag=PREFIXED, request="{not json")
    assert source_tag_of(spec) == PREFIXED
