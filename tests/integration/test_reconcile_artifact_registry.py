"""The reconciler observes Artifact Registry through its REST API (it serves no ``/v2/_catalog``).

A fake of the API (tests/support/artifact_registry.py) on loopback serves the documented JSON,
paginated, and wants the bearer token: tags come with their digests and sizes from
``dockerImages.list``, no OCI request is made, scope globs and bounds apply, and a registry that
cannot be listed is reported unreadable. The registry is read from a YAML config, as a user
writes it (``type: gar``, ``project``, ``location``, ``metadata.api_endpoint``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from sidecar.config import ReconcileSettings, load_config
from sidecar.oci import RegistryClients
from sidecar.reconcile import Observation, Observer, artifact_registry_listers, is_artifact_registry
from tests.support.artifact_registry import FakeArtifactRegistry, Image, fake_artifact_registry

pytestmark = pytest.mark.integration

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")
HOST = "us-east1-docker.pkg.dev"


@pytest.fixture
async def fake() -> AsyncIterator[FakeArtifactRegistry]:
    """An Artifact Registry API with two docker repositories (and a Maven one), 2 items a page."""
    async with fake_artifact_registry() as api:
        api.repositories = {"apps": "DOCKER", "tools": "DOCKER", "jars": "MAVEN"}
        api.images = [
            Image("apps", "web/app", D1, ("v1", "latest"), 1000),
            Image("apps", "web/api", D2, ("v2",), 2000),
            Image("apps", "web/untagged", D3, (), 10),
            Image("tools", "cli", D3, ("1.0",), 3000),
        ]
        api.page_size_cap = 2  # pagination is exercised on every list
        yield api


def _config(tmp_path: Path, fake: FakeArtifactRegistry, **registry: object) -> Path:
    entry = {
        "name": "gar-us",
        "type": "gar",
        "endpoint": f"https://{HOST}",
        "project": fake.project,
        "location": fake.location,
        "environment": "prod",
        "region": "us-east-1",
        "auth": {"type": "token", "username": "oauth2accesstoken", "token": fake.token},
        "metadata": {"api_endpoint": fake.url},
        **registry,
    }
    doc = {"registries": [entry], "policy": {"state_dir": str(tmp_path / "state")}}
    path = tmp_path / "sidecar.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


async def _observe(path: Path, settings: ReconcileSettings | None = None) -> Observation:
    config = load_config(path)
    settings = settings or ReconcileSettings(sources=("gar-us",))
    clients = RegistryClients(config.registries)
    try:
        listers = artifact_registry_listers(
            config.registries, clients, concurrency=2, max_tags=settings.max_tags
        )
        observer = Observer(clients, settings, listers=listers)
        return await observer.observe(["gar-us"])
    finally:
        await clients.close()


async def test_an_artifact_registry_is_listed_through_its_api(
    tmp_path: Path, fake: FakeArtifactRegistry
) -> None:
    observation = await _observe(_config(tmp_path, fake))
    assert observation.unreadable == {}
    assert [(t.repository, t.tag, t.digest, t.size_bytes) for t in observation.tags] == [
        ("acme-prod/apps/web/api", "v2", D2, 2000),
        ("acme-prod/apps/web/app", "latest", D1, 1000),
        ("acme-prod/apps/web/app", "v1", D1, 1000),
        ("acme-prod/tools/cli", "1.0", D3, 3000),
    ]
    # No OCI request (the endpoint is never contacted); the API was paged, always with the token.
    assert observation.requests == 0
    paths = [p for p, _, _ in fake.requests]
    assert not any("jars" in p for p in paths)  # a Maven repository is not listed
    assert (
        paths.count("/v1/projects/acme-prod/locations/us-east1/repositories/apps/dockerImages") == 2
    )
    assert {q.get("pageToken") for p, q, _ in fake.requests if p.endswith("apps/dockerImages")} == {
        None, "2",
    }  # fmt: skip
    assert {auth for _, _, auth in fake.requests} == {f"Bearer {fake.token}"}


async def test_scope_globs_apply_to_artifact_registry_repositories(
    tmp_path: Path, fake: FakeArtifactRegistry
) -> None:
    settings = ReconcileSettings(sources=("gar-us",), repositories=("acme-prod/tools/*",))
    observation = await _observe(_config(tmp_path, fake), settings)
    assert [(t.repository, t.tag) for t in observation.tags] == [("acme-prod/tools/cli", "1.0")]


async def test_a_refused_token_or_too_many_tags_make_the_registry_unreadable(
    tmp_path: Path, fake: FakeArtifactRegistry
) -> None:
    wrong = {"auth": {"type": "token", "username": "oauth2accesstoken", "token": "ya29.wrong"}}
    observation = await _observe(_config(tmp_path, fake, **wrong))
    assert observation.tags == ()
    assert "HTTP 401" in observation.unreadable["gar-us"]

    bounded = ReconcileSettings(sources=("gar-us",), max_tags=2)
    observation = await _observe(_config(tmp_path, fake), bounded)
    assert observation.tags == ()
    assert "policy.reconcile.max_tags (2)" in observation.unreadable["gar-us"]

    # Basic credentials are no Google access token: never sent to the API.
    basic = {"auth": {"type": "basic", "username": "_json_key", "password": "{}"}}
    before = len(fake.requests)
    observation = await _observe(_config(tmp_path, fake, **basic))
    assert "needs a Google access token" in observation.unreadable["gar-us"]
    assert len(fake.requests) == before


def test_which_registries_are_listed_through_the_artifact_registry_api(tmp_path: Path) -> None:
    registries = [
        {"name": "a", "type": "gar", "project": "p"},
        {"name": "b", "type": "gcr", "endpoint": "https://europe-docker.pkg.dev", "project": "p"},
        {"name": "c", "type": "gcr", "endpoint": "https://gcr.io", "project": "p"},
        {"name": "d", "type": "generic", "endpoint": "https://europe-docker.pkg.dev"},
    ]
    path = tmp_path / "sidecar.yaml"
    path.write_text(yaml.safe_dump({"registries": registries}), encoding="utf-8")
    config = load_config(path)
    assert [r.name for r in config.registries if is_artifact_registry(r)] == ["a", "b"]


async def test_a_scoped_observer_still_lists_through_the_api(
    tmp_path: Path, fake: FakeArtifactRegistry
) -> None:
    # A legacy rule's schedule observes with a scoped observer: it must keep the API listers
    # (without them the registry would be listed by an OCI catalog it does not serve).
    config = load_config(_config(tmp_path, fake))
    settings = ReconcileSettings(sources=("gar-us",))
    clients = RegistryClients(config.registries)
    try:
        listers = artifact_registry_listers(config.registries, clients)
        scoped = Observer(clients, settings, listers=listers).scoped(
            ReconcileSettings(sources=("gar-us",), repositories=("acme-prod/apps/web/*",))
        )
        observation = await scoped.observe(["gar-us"])
    finally:
        await clients.close()
    assert observation.unreadable == {}
    assert {t.repository for t in observation.tags} == {
        "acme-prod/apps/web/app",
        "acme-prod/apps/web/api",
    }
