"""Scan facts from Amazon ECR's image scan findings, for images whose source registry is ECR.

ECR reports a scan status and finding counts per severity, not a verdict. We map a ``COMPLETE``
(basic scanning) or ``ACTIVE`` (enhanced scanning) scan to ``status: failed`` when it found any
CRITICAL vulnerability and ``passed`` otherwise, with the CRITICAL/HIGH counts alongside, so the
policy can apply its own thresholds. Any other scan state, or no scan at all, leaves ``scan``
null (with a warning): an unfinished scan is no scan, which the policy gates as SCAN_MISSING.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sidecar.config import RegistryConfig
from sidecar.enrich.pipeline import Contribution
from sidecar.enrich.rfc3339 import format_rfc3339
from sidecar.model.decision import DecideRequest, PolicyInput, ScanFacts

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

__all__ = ["EcrScanSource", "scan_from_findings"]

_DONE = ("COMPLETE", "ACTIVE")
# "Nothing to report" answers: the image or its scan is unknown to ECR — a fact, not a failure.
_ABSENT = ("ScanNotFoundException", "ImageNotFoundException", "RepositoryNotFoundException")


def scan_from_findings(response: Mapping[str, Any]) -> tuple[ScanFacts | None, str | None]:
    """Return (scan facts, warning) from a DescribeImageScanFindings response."""
    status = str(response.get("imageScanStatus", {}).get("status", ""))
    if status not in _DONE:
        return None, f"ECR scan status is {status or 'unknown'}; scan ignored"
    findings = response.get("imageScanFindings", {})
    completed = findings.get("imageScanCompletedAt")
    if not isinstance(completed, datetime):
        return None, "ECR scan has no imageScanCompletedAt; scan ignored"
    counts = findings.get("findingSeverityCounts", {})
    critical, high = int(counts.get("CRITICAL", 0)), int(counts.get("HIGH", 0))
    verdict: Literal["passed", "failed"] = "failed" if critical > 0 else "passed"
    return ScanFacts(verdict, format_rfc3339(completed), critical, high, "ecr"), None


class EcrScanSource:
    """A FactSource filling ``image.scan`` from ECR scan findings (registries of ``type: ecr``)."""

    name = "ecr.scan"

    def __init__(
        self,
        registries: Sequence[RegistryConfig],
        *,
        endpoint_url: str | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        """Serve the ECR registries among ``registries``; ``endpoint_url`` overrides AWS (tests)."""
        self._registries = {r.name: r for r in registries if r.type.lower() == "ecr"}
        self._endpoint_url = endpoint_url
        self._timeout_s = timeout_s
        self._clients: dict[str, ECRClient] = {}
        # boto3 sessions are not thread-safe; clients are created once per registry under a lock.
        self._lock = threading.Lock()

    async def contribute(self, request: DecideRequest, draft: PolicyInput) -> Contribution:
        """Return the draft with ECR scan facts, unless a scan is known or the source is not ECR."""
        ref = draft.image.ref
        registry = self._registries.get(ref.registry)
        if registry is None or draft.image.scan is not None or not (ref.digest or ref.tag):
            return Contribution(draft)
        response = await asyncio.to_thread(
            self._describe, registry, ref.repository, ref.digest, ref.tag
        )
        if isinstance(response, str):
            return Contribution(draft, (response,))
        scan, warning = scan_from_findings(response)
        if scan is None:
            return Contribution(draft, (warning,) if warning else ())
        image = dataclasses.replace(draft.image, scan=scan)
        return Contribution(dataclasses.replace(draft, image=image), observed=("image.scan",))

    def _client(self, registry: RegistryConfig) -> ECRClient:
        with self._lock:
            client = self._clients.get(registry.name)
            if client is None:
                # Loaded on the first ECR image, not at import: boto3 takes a second and tens of
                # MiB, and a sidecar without ECR registries never needs it.
                import boto3  # noqa: PLC0415
                from botocore.config import Config  # noqa: PLC0415

                session = boto3.session.Session(
                    profile_name=registry.auth.profile or None,
                    region_name=registry.region or None,
                )
                # Same override as the registry client's ECR auth (metadata.ecr_endpoint_url).
                endpoint = (
                    self._endpoint_url
                    or str(registry.metadata.get("ecr_endpoint_url") or "")
                    or None
                )
                config = Config(
                    connect_timeout=self._timeout_s,
                    read_timeout=self._timeout_s,
                    # The pipeline bounds the whole source; botocore's own retries would overrun.
                    retries={"max_attempts": 1, "mode": "standard"},
                )
                client = session.client("ecr", endpoint_url=endpoint, config=config)
                self._clients[registry.name] = client
            return client

    def _describe(
        self, registry: RegistryConfig, repository: str, digest: str, tag: str
    ) -> Mapping[str, Any] | str:
        """Return the findings response, or a warning when ECR has no scan for the image."""
        image_id = {"imageDigest": digest} if digest else {"imageTag": tag}
        kwargs: dict[str, Any] = {"repositoryName": repository, "imageId": image_id}
        if registry.account_id:
            kwargs["registryId"] = registry.account_id
        client = self._client(registry)
        from botocore.exceptions import ClientError  # noqa: PLC0415 - loaded by _client

        try:
            return dict(client.describe_image_scan_findings(**kwargs))
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _ABSENT:
                return f"ECR has no scan for {repository}@{digest or tag} ({code})"
            raise
