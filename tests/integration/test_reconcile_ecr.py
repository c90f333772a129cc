"""The reconciler observes ECR registries through the ECR API (DescribeRepositories and
DescribeImages, paginated) against a real moto server: tags come with their digests and sizes,
no OCI request is made, scope globs and bounds apply, and an ECR that cannot be listed is
reported unreadable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from mypy_boto3_ecr import ECRClient

from sidecar.config import ReconcileSettings, RegistryConfig, RegistryFacts
from sidecar.oci import RegistryClients
from sidecar.reconcile import ObservedTag, Observer, ecr_listers
from tests.support.moto import MotoServer, moto_server
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

REGION = "eu-west-1"
ECR = RegistryConfig(
    name="ecr-eu",
    facts=RegistryFacts("ecr-eu", REGION, "prod"),
    type="ecr",
    region=REGION,
    account_id="123456789012",  # moto's default account
)


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto server for the module."""
    with moto_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def ecr(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> ECRClient:
    """A boto3 ECR client on moto; the AWS environment points every SDK client at fake keys."""
    for key, value in moto.env().items():
        monkeypatch.setenv(key, value)
    return boto3.client("ecr", region_name=REGION, endpoint_url=moto.endpoint_url)


def _put(ecr: ECRClient, repository: str, layer: str, size: int, *tags: str) -> str:
    """Put one image under ``tags`` (moto's digest depends on the layers)."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"digest": "sha256:" + "c" * 64, "size": size, "mediaType": "x"},
        "layers": [{"digest": "sha256:" + layer * 64, "size": 5, "mediaType": "y"}],
    }
    digest = ""
    for tag in tags:
        out = ecr.put_image(
            repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag
        )
        digest = str(out["image"]["imageId"]["imageDigest"])
    return digest


async def _observe(
    settings: ReconcileSettings, endpoint: str
) -> tuple[tuple[ObservedTag, ...], dict[str, str], int]:
    clients = RegistryClients([ECR])
    try:
        observer = Observer(clients, settings, listers=ecr_listers([ECR], endpoint_url=endpoint))
        observation = await observer.observe(["ecr-eu"])
    finally:
        await clients.close()
    return observation.tags, dict(observation.unreadable), observation.requests


async def test_an_ecr_registry_is_listed_through_the_ecr_api(
    moto: MotoServer, ecr: ECRClient
) -> None:
    for repository in ("team/app", "team/tool", "other/x"):
        ecr.create_repository(repositoryName=repository)
    app = _put(ecr, "team/app", "1", 1000, "v1", "latest")
    tool = _put(ecr, "team/tool", "2", 2000, "2.0")
    _put(ecr, "other/x", "3", 3000, "v1")
    settings = ReconcileSettings(sources=("ecr-eu",), repositories=("team/*",))
    tags, unreadable, requests = await _observe(settings, moto.endpoint_url)
    assert unreadable == {}
    assert [(t.registry, t.repository, t.tag, t.digest) for t in tags] == [
        ("ecr-eu", "team/app", "latest", app),
        ("ecr-eu", "team/app", "v1", app),
        ("ecr-eu", "team/tool", "2.0", tool),
    ]  # other/x is out of scope
    assert [t.size_bytes for t in tags] == [1000, 1000, 2000]
    assert requests == 0  # no OCI catalog, tags list or HEAD


async def test_bounds_apply_and_an_unlistable_ecr_is_unreadable(
    moto: MotoServer, ecr: ECRClient
) -> None:
    ecr.create_repository(repositoryName="team/many")
    _put(ecr, "team/many", "4", 10, "a", "b", "c")
    bounded = ReconcileSettings(sources=("ecr-eu",), repositories=("team/many",), max_tags=2)
    tags, unreadable, _ = await _observe(bounded, moto.endpoint_url)
    assert tags == () and "more than policy.reconcile.max_tags (2)" in unreadable["ecr-eu"]
    nowhere = f"http://127.0.0.1:{free_port()}"
    tags, unreadable, _ = await _observe(ReconcileSettings(sources=("ecr-eu",)), nowhere)
    assert tags == () and "ECR DescribeRepositories" in unreadable["ecr-eu"]
