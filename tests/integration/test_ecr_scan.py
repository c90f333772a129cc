"""ECR scan findings become scan facts (source "ecr"), against a real moto server."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Iterator

import boto3
import pytest
from mypy_boto3_ecr import ECRClient

from sidecar.config._registries import RegistryConfig
from sidecar.enrich.ecr_scan import EcrScanSource
from sidecar.enrich.pipeline import apply_sources
from sidecar.model.decision import (
    DecideRequest,
    ImageFacts,
    ImageRef,
    PolicyInput,
    RegistryFacts,
    ScanFacts,
)
from tests.support.moto import MotoServer, moto_server

pytestmark = pytest.mark.integration

REGION = "eu-west-1"
ECR = RegistryConfig(
    name="ecr-eu", facts=RegistryFacts("ecr-eu", REGION, "prod"), type="ecr", region=REGION
)
HARBOR = RegistryConfig(name="harbor", facts=RegistryFacts("harbor", REGION, "prod"))


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto server for the module (starting it costs about a second)."""
    with moto_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def ecr(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> ECRClient:
    """A boto3 ECR client on moto; the AWS environment points every SDK client at fake keys."""
    for key, value in moto.env().items():
        monkeypatch.setenv(key, value)
    return boto3.client("ecr", region_name=REGION, endpoint_url=moto.endpoint_url)


def _push(ecr: ECRClient, repository: str, tag: str) -> str:
    ecr.create_repository(repositoryName=repository)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"digest": "sha256:" + "1" * 64, "size": 10, "mediaType": "x"},
        "layers": [],
        "tag": tag,
    }
    out = ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag)
    return str(out["image"]["imageId"]["imageDigest"])


def _set_findings(moto: MotoServer, results: dict[str, object]) -> None:
    """Queue custom DescribeImageScanFindings answers through moto's own API."""
    request = urllib.request.Request(  # noqa: S310 - loopback moto
        f"{moto.endpoint_url}/moto-api/static/ecr/scan-finding-results",
        data=json.dumps(results).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request).close()  # noqa: S310 - loopback moto


def _draft(ref: ImageRef, scan: ScanFacts | None = None) -> PolicyInput:
    return PolicyInput(
        now="2026-01-01T00:00:00Z",
        event="push",
        image=ImageFacts(ref=ref, scan=scan),
        registries=(ECR.facts, HARBOR.facts),
    )


async def _enrich(moto: MotoServer, draft: PolicyInput) -> tuple[PolicyInput, list[str]]:
    source = EcrScanSource([ECR, HARBOR], endpoint_url=moto.endpoint_url)
    result, report = await apply_sources([source], DecideRequest(draft.image.ref), draft)
    assert report.failures == ()
    return result, [w.message for w in report.warnings]


async def test_completed_scan_becomes_ecr_scan_facts(moto: MotoServer, ecr: ECRClient) -> None:
    digest = _push(ecr, "team/scanned", "prod-1")
    ecr.start_image_scan(repositoryName="team/scanned", imageId={"imageDigest": digest})
    result, warnings = await _enrich(
        moto, _draft(ImageRef("ecr-eu", "team/scanned", "prod-1", digest))
    )
    scan = result.image.scan
    # moto's default finding: one HIGH vulnerability, scan COMPLETE just now.
    assert scan is not None and (scan.status, scan.critical, scan.high, scan.source) == (
        "passed",
        0,
        1,
        "ecr",
    )
    assert scan.completed_at.endswith("Z") and scan.completed_at[:4] >= "2025"
    assert warnings == []


async def test_critical_findings_fail_the_scan(moto: MotoServer, ecr: ECRClient) -> None:
    digest = _push(ecr, "team/vulnerable", "prod-2")
    ecr.start_image_scan(repositoryName="team/vulnerable", imageId={"imageTag": "prod-2"})
    custom = {
        "results": [
            {
                "registryId": "123456789012",
                "repositoryName": "team/vulnerable",
                "imageId": {"imageDigest": digest},
                "imageScanStatus": {"status": "COMPLETE", "description": "done"},
                "imageScanFindings": {
                    "imageScanCompletedAt": 1767225600,  # 2026-01-01T00:00:00Z
                    "findingSeverityCounts": {"CRITICAL": 2, "HIGH": 5, "LOW": 9},
                },
            }
        ],
        "region": REGION,
    }
    _set_findings(moto, custom)
    result, _ = await _enrich(moto, _draft(ImageRef("ecr-eu", "team/vulnerable", "prod-2", digest)))
    assert result.image.scan == ScanFacts("failed", "2026-01-01T00:00:00Z", 2, 5, "ecr")
    # An observed scan: request scan labels cannot override it (docs/facts.md).
    ref = ImageRef("ecr-eu", "team/vulnerable", "prod-2", digest)
    source = EcrScanSource([ECR, HARBOR], endpoint_url=moto.endpoint_url)
    _, report = await apply_sources([source], DecideRequest(ref), _draft(ref))
    assert report.observed == {"image.scan": "ecr.scan"}


async def test_unscanned_image_leaves_scan_null_with_a_warning(
    moto: MotoServer, ecr: ECRClient
) -> None:
    digest = _push(ecr, "team/unscanned", "prod-3")
    result, warnings = await _enrich(
        moto, _draft(ImageRef("ecr-eu", "team/unscanned", "prod-3", digest))
    )
    assert result.image.scan is None
    assert len(warnings) == 1 and "ScanNotFoundException" in warnings[0]


async def test_non_ecr_registries_and_known_scans_are_left_alone(
    moto: MotoServer, ecr: ECRClient
) -> None:
    other, _ = await _enrich(moto, _draft(ImageRef("harbor", "team/scanned", "prod-1")))
    assert other.image.scan is None
    known = ScanFacts("passed", "2026-01-01T00:00:00Z", 0, 0, "label")
    kept, _ = await _enrich(moto, _draft(ImageRef("ecr-eu", "team/none", "x"), scan=known))
    assert kept.image.scan == known


async def test_unreachable_ecr_is_a_reported_failure_within_the_timeout() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    source = EcrScanSource([ECR], endpoint_url=dead, timeout_s=0.5)
    draft = _draft(ImageRef("ecr-eu", "team/app", "prod-1"))
    started = time.monotonic()
    result, report = await apply_sources(
        [source], DecideRequest(draft.image.ref), draft, timeout_s=3
    )
    assert time.monotonic() - started < 3
    assert result.image.scan is None
    assert [f.source for f in report.failures] == ["ecr.scan"]
