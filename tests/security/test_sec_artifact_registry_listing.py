"""Attacks on the reconciler's Artifact Registry listing through a hostile API answer.

The sidecar lists an Artifact Registry location through its REST API with the registry's Google
access token (tests/support/artifact_registry.py fakes the API on loopback). A compromised or
spoofed answer must not: make images of another host, project or repository look like this
registry's; exhaust memory with a huge page; or carry the token to another origin through a
``nextPageToken``. Each attack runs a ``Reconcile`` (dry run) on the real process, asserts the
refusal, and that the sidecar keeps serving.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sidecar._proto import policy_pb2 as pb
from tests.support.artifact_registry import FakeArtifactRegistry, Image, fake_artifact_registry
from tests.support.security import (
    assert_serving,
    attacked_sidecar,
    inventory,
    registry_entry,
    sidecar_config,
)

pytestmark = pytest.mark.integration

DIGEST, OTHER = "sha256:" + "a" * 64, "sha256:" + "b" * 64
HOST = "us-east1-docker.pkg.dev"


@pytest.fixture
async def fake() -> AsyncIterator[FakeArtifactRegistry]:
    """The API the sidecar is configured with: one docker repository, one image."""
    async with fake_artifact_registry() as api:
        api.repositories = {"apps": "DOCKER"}
        api.images = [Image("apps", "web/app", DIGEST, ("dev-1",))]
        yield api


def _doc(fake: FakeArtifactRegistry) -> dict[str, Any]:
    entry = registry_entry(
        "gar-us",
        f"https://{HOST}",
        type="gar",
        project=fake.project,
        location=fake.location,
        auth={"type": "token", "username": "oauth2accesstoken", "token": fake.token},
    )
    entry["metadata"]["api_endpoint"] = fake.url
    return sidecar_config(
        inventory(entry), reconcile={"sources": ["gar-us"], "registries": ["gar-us"]}
    )


async def _summary(running: Any) -> pb.ReconcileSummary:
    events = [e async for e in running.stub.Reconcile(pb.ReconcileRequest(), timeout=60)]
    [summary] = [e.summary for e in events if e.WhichOneof("event") == "summary"]
    return summary


async def test_images_naming_another_host_project_or_repository_are_ignored(
    tmp_path: Path, fake: FakeArtifactRegistry
) -> None:
    spoofed = [
        f"evil.example/{fake.project}/apps/web/app@{OTHER}",  # another host
        f"{HOST}/other-project/apps/web/app@{OTHER}",  # another project
        f"{HOST}/{fake.project}/secret-repo/web/app@{OTHER}",  # another repository
        f"{HOST}/{fake.project}/apps/../../other-project/x@{OTHER}",  # a path climbing out
        f"{HOST}/{fake.project}/apps/web/app@sha256:short",  # not a digest
    ]
    fake.extra_images = [{"uri": uri, "tags": ["dev-1"]} for uri in spoofed]
    # And a tag claimed by two digests of one repository: neither is believed.
    fake.images.append(Image("apps", "web/two", DIGEST, ("dev-2",)))
    fake.extra_images.append(
        {"uri": f"{HOST}/{fake.project}/apps/web/two@{OTHER}", "tags": ["dev-2"]}
    )
    async with attacked_sidecar(_doc(fake), tmp_path) as running:
        summary = await _summary(running)
        assert dict(summary.unreadable) == {}
        assert summary.images == 1  # gar-us/acme-prod/apps/web/app:dev-1 alone
        await assert_serving(running)


async def test_an_oversized_page_is_cut_off_with_a_clear_error(
    tmp_path: Path, fake: FakeArtifactRegistry
) -> None:
    fake.oversized = True
    async with attacked_sidecar(_doc(fake), tmp_path) as running:
        summary = await _summary(running)
        assert summary.images == 0
        why = summary.unreadable["gar-us"]
        assert "cut off" in why and str(4 << 20) in why
        await assert_serving(running)


async def test_a_next_page_token_cannot_carry_the_token_to_another_origin(
    tmp_path: Path, fake: FakeArtifactRegistry
) -> None:
    async with fake_artifact_registry(token=fake.token) as thief:
        lure = f"{thief.url}/v1/projects/acme-prod/locations/us-east1/repositories?steal=1"
        fake.next_token = lure  # every page "continues" at the thief's URL
        async with attacked_sidecar(_doc(fake), tmp_path) as running:
            summary = await _summary(running)
            # The token was only ever a query value to the API's own origin; then it repeated.
            assert "repeats" in summary.unreadable["gar-us"]
            await assert_serving(running)
        assert thief.requests == []
        assert any(query.get("pageToken") == lure for _, query, _ in fake.requests)
        assert {path for path, _, _ in fake.requests} <= {
            "/v1/projects/acme-prod/locations/us-east1/repositories",
            "/v1/projects/acme-prod/locations/us-east1/repositories/apps/dockerImages",
        }
