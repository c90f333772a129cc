"""Sensitive criteria work in decisions and never leak: bundle, bucket, logs, traces, records.

A real sidecar with its managed OPA loads an envelope-encrypted customer allowlist — once with a
local key file, once with a KMS key on moto — then every place an operator could look is
searched for the secret customer ids.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from opentelemetry.sdk.trace import ReadableSpan

from sidecar._proto import policy_pb2 as pb
from sidecar.bundles.publish import bundle_from_file, publisher_for
from sidecar.config import load_config
from sidecar.masking import MASKED
from sidecar.replicate.deferred import AWAITING_POLICY
from sidecar.sensitive import SEALED_PREFIX, SENSITIVE_ROOT
from sidecar.testing import CapturedLogs
from tests.support.moto import MotoServer, moto_server
from tests.support.opa import bundle_files
from tests.support.sensitive import (
    ALLOWED,
    DENIED,
    assert_no_secret,
    customer_request,
    sensitive_config,
)
from tests.support.sidecar import running_sidecar

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto server (S3 and KMS) with its fake credentials in the environment."""
    with moto_server(tmp_path_factory.mktemp("moto")) as server, pytest.MonkeyPatch.context() as mp:
        for key, value in server.env().items():
            mp.setenv(key, value)
        yield server


def _kms_key(moto: MotoServer) -> str:
    kms = boto3.client("kms", endpoint_url=moto.endpoint_url, region_name=moto.region)
    key_id = kms.create_key(Description="sensitive policy data")["KeyMetadata"]["KeyId"]
    alias = f"alias/policy-data-{key_id[:8]}"
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    return alias


def _routes(answer: pb.DecideResponse) -> list[str]:
    return [r.registry for r in answer.decision.routes]


def _denied(answer: pb.DecideResponse) -> dict[str, list[str]]:
    return {d.registry: list(d.reasons) for d in answer.decision.denied}


def _span_text(spans: tuple[ReadableSpan, ...]) -> list[Any]:
    out: list[Any] = []
    for span in spans:
        out += [span.name, dict(span.attributes or {}), span.status.description or ""]
        out += [[event.name, dict(event.attributes or {})] for event in span.events]
    return out


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _read_all(root: Path) -> list[bytes]:
    return [p.read_bytes() for p in root.rglob("*") if p.is_file()]


@pytest.mark.parametrize("kek", ["key-file", "aws-kms"])
async def test_allowlist_decides_and_no_secret_leaks_anywhere(
    kek: str, moto: MotoServer, tmp_path: Path
) -> None:
    key_id = _kms_key(moto) if kek == "aws-kms" else None
    path = sensitive_config(tmp_path / "work", moto=moto, kms_key_id=key_id)
    config = load_config(path)
    assert_no_secret(
        "the encrypted file", [(tmp_path / "work" / "customers.enc.json").read_bytes()]
    )
    with CapturedLogs() as logs:
        async with running_sidecar(config) as sidecar:
            allowed = await sidecar.stub.Decide(customer_request(ALLOWED), timeout=10)
            denied = await sidecar.stub.Decide(customer_request(DENIED), timeout=10)
            records = [
                await sidecar.stub.Explain(pb.ExplainRequest(decision_id=a.decision_id))
                for a in (allowed, denied)
            ]
            runtime = sidecar.sidecar.runtime
            assert runtime is not None and runtime.managed is not None
            opa_output = runtime.managed.output_tail(200)
            spans = sidecar.spans.spans

    # The allowlist is applied: prod-us takes only ALLOWED's images, prod-ap only another's.
    assert not allowed.degraded and not denied.degraded
    assert _routes(allowed) == ["prod-us", "prod-eu"]
    assert _denied(allowed)["prod-ap"] == ["CUSTOMER_NOT_ALLOWED"]
    assert _routes(denied) == ["prod-eu"]
    assert _denied(denied)["prod-us"] == _denied(denied)["prod-ap"] == ["CUSTOMER_NOT_ALLOWED"]
    assert "replication.customers" in denied.decision.policies

    # Decision records: the configured field is masked, and no secret is anywhere in them.
    for record in records:
        assert json.loads(record.input_json)["image"]["labels"]["customer-id"] == MASKED
        assert record.bundle_revision and record.trace_id
    assert_no_secret("Explain records", [str(r) for r in records])
    assert DENIED not in str(records[1])  # masked by path, though it is no secret of ours

    # Logs: the load is reported by document name and ciphertext digest only.
    loaded = logs.find("sensitive data loaded into OPA")
    assert loaded and loaded[0]["documents"] == ["customers"]
    assert_no_secret("the logs", logs.lines)
    assert_no_secret("the managed OPA's output", [opa_output])
    assert_no_secret("the spans", _span_text(spans))

    # The bundle: its manifest does not claim the sensitive root and it holds no secret.
    raw = _read(Path(config.policy.bundle.output))
    files = bundle_files(raw)
    assert SENSITIVE_ROOT not in json.loads(files[".manifest"])["roots"]
    assert_no_secret("the bundle", [gzip.decompress(raw), *files.values()])

    # The bucket: publish the bundle to S3 and read back everything stored there.
    bucket = f"bundles-{kek}"
    s3 = boto3.client("s3", endpoint_url=moto.endpoint_url, region_name=moto.region)
    s3.create_bucket(Bucket=bucket)
    publisher = publisher_for(f"s3://{bucket}/replication.tar.gz", endpoint_url=moto.endpoint_url)
    publisher.publish(bundle_from_file(Path(config.policy.bundle.output)))
    stored = [
        s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for o in s3.list_objects_v2(Bucket=bucket)["Contents"]
    ]
    assert stored
    assert_no_secret("the S3 bucket", [gzip.decompress(b) for b in stored])


async def test_sidecar_state_on_disk_holds_no_secret(tmp_path: Path) -> None:
    config = load_config(sensitive_config(tmp_path / "work"))
    async with running_sidecar(config) as sidecar:
        request = customer_request(ALLOWED)
        request.image.digest = "sha256:" + "d" * 64
        # Replicate persists jobs (the job store is the only other thing written to disk).
        answer = await sidecar.stub.Replicate(pb.ReplicateRequest(request=request), timeout=10)
        assert answer.job_ids
        state = Path(config.policy.state_dir)
        blobs = _read_all(state)
    assert any(b.startswith(b"SQLite format 3") for b in blobs)
    assert_no_secret("the state directory", blobs)


async def test_a_deferred_request_stating_a_secret_is_sealed_and_still_decided(
    tmp_path: Path,
) -> None:
    # OPA frozen (SIGSTOP: connections accepted, never answered), so the fail mode answers and
    # the request is deferred until OPA decides it: stored sealed, decided with its customer id.
    loaded = load_config(sensitive_config(tmp_path / "work", policy={"fail_mode": "closed"}))
    policy = loaded.policy
    config = dataclasses.replace(
        loaded,
        policy=dataclasses.replace(
            policy,
            opa=dataclasses.replace(policy.opa, deadline_ms=1000, breaker_cooldown_s=0.5),
            replication=dataclasses.replace(policy.replication, policy_retry_interval_s=0.2),
        ),
    )
    request = customer_request(ALLOWED)
    request.image.digest = "sha256:" + "e" * 64
    async with running_sidecar(config) as sidecar:
        assert sidecar.sidecar.runtime is not None and sidecar.sidecar.parts is not None
        managed = sidecar.sidecar.runtime.managed
        assert managed is not None and managed.pid is not None
        store = sidecar.sidecar.parts.store
        os.kill(managed.pid, signal.SIGSTOP)
        try:
            answer = await sidecar.stub.Replicate(pb.ReplicateRequest(request=request), timeout=30)
            assert answer.decision.degraded and not answer.job_ids
            (work,) = await store.pending_deferrals({AWAITING_POLICY})
            assert work.request.startswith(SEALED_PREFIX)
            assert_no_secret("the deferral, at rest", _read_all(Path(config.policy.state_dir)))
        finally:
            os.kill(managed.pid, signal.SIGCONT)
        # The backlog opens it and OPA decides it with the customer id: prod-us takes ALLOWED's.
        deadline = time.monotonic() + 60
        while not (jobs := (await sidecar.stub.ListJobs(pb.ListJobsRequest(), timeout=10)).jobs):
            assert time.monotonic() < deadline, "the sealed deferral was never decided"
            await asyncio.sleep(0.2)
        assert "prod-us" in {j.destination.split("/", 1)[0] for j in jobs}
        assert await store.pending_deferrals({AWAITING_POLICY}) == []
