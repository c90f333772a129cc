"""Replication on real registries: push to ``ci``, its webhook triggers decisions, copies land.

Five CNCF Distribution registries (tests/support/fleet.py; ``prod-eu`` needs basic auth, ``ci``
notifies the sidecar). Every assertion is made by digest against the registries themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from sidecar._proto import policy_pb2 as pb
from sidecar.config import load_config
from sidecar.oci import RegistryClient, RegistryClients, fallback_tag
from tests.support.fleet import FLEET, Fleet, registry_fleet
from tests.support.images import (
    push_cosign_signature,
    push_image,
    push_index,
    push_manifest,
    push_sbom,
    scanned_labels,
)
from tests.support.sidecar import RunningSidecar, isolated_config, running_sidecar

# clock: decisions here use the sidecar's wall clock (scan ages, token expiry)
pytestmark = [pytest.mark.timeout(300), pytest.mark.clock]


@dataclass(frozen=True)
class Pushed:
    """An image pushed to ``ci`` and the registries its decision must route it to."""

    repository: str
    tag: str
    digest: str
    expected: frozenset[str]
    children: tuple[str, ...] = ()


async def _tag_last(client: RegistryClient, repo: str, digest: str, tag: str) -> None:
    """Tag an already pushed manifest: the tag push is the event that triggers replication."""
    await push_manifest(client, repo, (await client.get_manifest(repo, digest)).json, tag)


async def push_images(ci: RegistryClient) -> list[Pushed]:
    """Push the test set to ``ci``: referrers first, each tag last (so the webhook sees it all)."""
    app = await push_image(
        ci,
        "web/app",
        seed=1,
        labels=scanned_labels(**{"security.scan.high": "1", "criticality": "high"}),
    )
    await push_cosign_signature(ci, "web/app", app.digest)
    await push_sbom(ci, "web/app", app.digest)
    billing = await push_image(
        ci,
        "eu/billing",
        seed=2,
        labels=scanned_labels(**{"security.scan.high": "1", "compliance-required": "true"}),
    )
    multi = await push_index(ci, "web/multi", seed=30, platforms=("linux/amd64", "linux/arm64"))
    tool = await push_image(ci, "misc/tool", seed=4, docker=True)
    unscanned = await push_image(ci, "web/unscanned", seed=5)
    images = [
        Pushed("web/app", "prod-1.0", app.digest, frozenset({"prod-eu", "prod-us"})),
        Pushed("eu/billing", "prod-7", billing.digest, frozenset({"prod-eu"})),
        Pushed(
            "web/multi",
            "dev-3",
            multi.digest,
            frozenset({"dev-us"}),
            tuple(c.digest for c in multi.children.values()),
        ),
        Pushed("misc/tool", "latest", tool.digest, frozenset({"sandbox"})),
        # A prod tag without a scan: every prod registry denies it (SCAN_MISSING), so nowhere.
        Pushed("web/unscanned", "prod-9", unscanned.digest, frozenset()),
    ]
    for image in images:
        await _tag_last(ci, image.repository, image.digest, image.tag)
    return images


async def settle(running: RunningSidecar, *, jobs: int, timeout_s: float = 120) -> list[pb.Job]:
    """Wait until ``jobs`` jobs exist, no event is pending and every job is terminal."""
    assert running.sidecar.parts is not None
    store = running.sidecar.parts.store
    deadline = time.monotonic() + timeout_s
    while True:
        listed = list((await running.stub.ListJobs(pb.ListJobsRequest(limit=500))).jobs)
        pending = await store.pending_events()
        busy = [j for j in listed if j.state in ("queued", "running", "parked")]
        if len(listed) >= jobs and not pending and not busy:
            return listed
        assert time.monotonic() < deadline, (
            f"not settled: {len(listed)}/{jobs} jobs, {len(pending)} events pending, "
            f"busy: {[(j.destination, j.state, j.error) for j in busy]}"
        )
        await asyncio.sleep(0.2)


async def where(clients: RegistryClients, repository: str, digest: str) -> frozenset[str]:
    """The registries (other than ``ci``) holding ``repository@digest``."""
    found = set()
    for name in FLEET:
        if name != "ci" and await clients.get(name).head_manifest(repository, digest) is not None:
            found.add(name)
    return frozenset(found)


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    """The registries; the sidecar config they come with has a short lease for crash recovery."""
    with registry_fleet(tmp_path, replication={"lease_s": 2, "workers": 4}) as running:
        yield running


@pytest.fixture
async def clients(fleet: Fleet) -> AsyncIterator[RegistryClients]:
    """Our OCI client for every registry of the fleet (with prod-eu's credentials)."""
    config = load_config(fleet.config_path)
    pool = RegistryClients(config.registries)
    try:
        yield pool
    finally:
        await pool.close()


async def test_pushed_images_land_exactly_where_their_decisions_route_them(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    config = isolated_config(load_config(fleet.config_path), tmp_path / "run1")
    async with running_sidecar(config) as running:
        images = await push_images(clients.get("ci"))
        expected_jobs = sum(len(i.expected) for i in images)
        jobs = await settle(running, jobs=expected_jobs)
        assert sorted((j.state, j.destination) for j in jobs) == sorted(
            ("succeeded", f"{dest}/{i.repository}:{i.tag}") for i in images for dest in i.expected
        )
        for image in images:
            # The decision for the same facts names the same registries the copies went to.
            answer = await running.stub.Decide(
                pb.DecideRequest(
                    image=pb.Image(
                        registry="ci", repository=image.repository, tag=image.tag,
                        digest=image.digest,
                    )
                ),
                timeout=30,
            )  # fmt: skip
            routed = frozenset(r.registry for r in answer.decision.routes)
            assert routed == image.expected, (image.repository, answer.decision)
            assert await where(clients, image.repository, image.digest) == image.expected
            for name in image.expected:
                tagged = await clients.get(name).head_manifest(image.repository, image.tag)
                assert tagged is not None and tagged.digest == image.digest
                for child in image.children:
                    assert await clients.get(name).head_manifest(image.repository, child)
        # Referrers follow the image: the cosign signature tag and the SBOM listing.
        app = images[0]
        for name in app.expected:
            dst = clients.get(name)
            assert await dst.head_manifest("web/app", fallback_tag(app.digest) + ".sig")
            kinds = {d.artifact_type for d in await dst.referrers("web/app", app.digest)}
            assert "application/spdx+json" in kinds
        # Repeating the replication is idempotent: the same jobs come back, none is added.
        again = await running.stub.Replicate(
            pb.ReplicateRequest(
                request=pb.DecideRequest(
                    image=pb.Image(registry="ci", repository=app.repository, tag=app.tag)
                )
            ),
            timeout=30,
        )
        first = {j.destination: j.job_id for j in jobs}
        assert {j.destination: j.job_id for j in again.jobs} == {
            d: i for d, i in first.items() if d.endswith("/web/app:prod-1.0")
        }
        listed = (await running.stub.ListJobs(pb.ListJobsRequest(limit=500))).jobs
        assert len(listed) == expected_jobs
        assert sum(j.bytes_moved for j in jobs) > 0

    # A second run with a fresh job store (a new sidecar) finds everything in place.
    config = isolated_config(load_config(fleet.config_path), tmp_path / "run2")
    async with running_sidecar(config) as running:
        for image in images:
            await running.stub.Replicate(
                pb.ReplicateRequest(
                    request=pb.DecideRequest(
                        image=pb.Image(registry="ci", repository=image.repository, tag=image.tag)
                    )
                ),
                timeout=30,
            )
        rerun = await settle(running, jobs=expected_jobs)
    assert [j.state for j in rerun] == ["succeeded"] * expected_jobs
    assert sum(j.bytes_moved + j.blobs_copied for j in rerun) == 0


async def test_bad_replicate_requests_name_the_problem(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    config = isolated_config(load_config(fleet.config_path), tmp_path / "bad")
    async with running_sidecar(config) as running:
        cases: Mapping[str, tuple[pb.Image, str]] = {
            "unknown registry": (
                pb.Image(registry="nowhere", repository="a/b", tag="prod-1"),
                "nowhere",
            ),
            "missing tag and digest": (pb.Image(registry="ci", repository="a/b"), "image.tag"),
            "tag not in the source": (
                pb.Image(registry="ci", repository="web/none", tag="prod-1"),
                "web/none",
            ),
        }
        for label, (image, named) in cases.items():
            with pytest.raises(Exception) as err:  # noqa: PT011 - the gRPC error is checked below
                await running.stub.Replicate(
                    pb.ReplicateRequest(request=pb.DecideRequest(image=image)), timeout=30
                )
            details = getattr(err.value, "details", lambda: str(err.value))()
            assert named in details, (label, details)
        listed = (await running.stub.ListJobs(pb.ListJobsRequest(), timeout=30)).jobs
        assert list(listed) == []
