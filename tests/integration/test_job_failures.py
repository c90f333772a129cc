"""Broken content from a real registry fails the job with its code, and nothing is left tagged.

The worker pool, the SQLite job store and the image copier are all real; the source registry
sits behind tests/support/oci_proxy.py, which corrupts manifests or cuts blob streams.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sidecar.model.jobs import JobSpec, JobState
from sidecar.oci import RegistryClients
from sidecar.replicate.copy import ImageCopier
from sidecar.replicate.retry import RetryPolicy
from sidecar.replicate.workers import WorkerPool
from sidecar.store import SqlJobStore
from tests.support.images import push_image, push_index, registry_config
from tests.support.oci_proxy import OciProxy, oci_proxy
from tests.support.registry import registry_server

pytestmark = pytest.mark.integration


@dataclass
class Rig:
    """A job store, a pool copying src (behind the fault proxy) → dst, and the clients."""

    store: SqlJobStore
    pool: WorkerPool
    clients: RegistryClients
    proxy: OciProxy


@pytest.fixture
async def rig(tmp_path: Path, store: SqlJobStore) -> AsyncIterator[Rig]:
    """Two real registries and a started pool allowing two attempts per job."""
    with registry_server(tmp_path / "src") as src, registry_server(tmp_path / "dst") as dst:
        async with oci_proxy(src.url) as proxy:
            clients = RegistryClients(
                [registry_config("src", proxy.url), registry_config("dst", dst.url)]
            )
            retry = RetryPolicy(max_attempts=2, base_s=0.01, max_s=0.05, rng=random.Random(3))  # noqa: S311
            pool = WorkerPool(
                store,
                ImageCopier(clients),
                worker_id="w1",
                retry=retry,
                poll_interval_s=0.05,
            )
            await pool.start()
            try:
                yield Rig(store, pool, clients, proxy)
            finally:
                await pool.stop()
                await clients.close()


def _spec(digest: str) -> JobSpec:
    return JobSpec("src", "team/app", digest, "dst", "mirror/app", tag="v1")


async def test_manifest_with_the_wrong_digest_fails_the_job_as_digest_mismatch(rig: Rig) -> None:
    image = await push_image(rig.clients.get("src"), "team/app", tag="v1")
    rig.proxy.faults.corrupt_manifests = True
    [job] = await rig.store.enqueue([_spec(image.digest)])
    rig.pool.wake()
    await rig.pool.wait_idle(30)
    final = await rig.store.get(job.job_id)
    assert (final.state, final.error_code, final.attempts) == (
        JobState.FAILED,
        "digest_mismatch",
        1,
    )
    assert image.digest in final.error
    assert await rig.clients.get("dst").head_manifest("mirror/app", "v1") is None


async def test_truncated_blob_is_retried_then_fails_with_nothing_tagged(rig: Rig) -> None:
    index = await push_index(rig.clients.get("src"), "team/app", tag="v1")
    rig.proxy.faults.truncate_blobs = True
    [job] = await rig.store.enqueue([_spec(index.digest)])
    rig.pool.wake()
    await rig.pool.wait_idle(30)
    final = await rig.store.get(job.job_id)
    assert (final.state, final.error_code, final.attempts) == (
        JobState.FAILED,
        "registry_error",
        2,
    )
    assert "src" in final.error
    dst = rig.clients.get("dst")
    assert await dst.head_manifest("mirror/app", "v1") is None
    assert await dst.head_manifest("mirror/app", index.digest) is None

    # Once the source serves whole blobs again, replicating the same image succeeds.
    rig.proxy.faults.truncate_blobs = False
    [again] = await rig.store.enqueue([_spec(index.digest)])
    assert again.job_id == job.job_id
    rig.pool.wake()
    await rig.pool.wait_idle(30)
    assert (await rig.store.get(job.job_id)).state == JobState.SUCCEEDED
    tagged = await dst.head_manifest("mirror/app", "v1")
    assert tagged is not None and tagged.digest == index.digest
