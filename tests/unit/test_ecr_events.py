"""ECR EventBridge events (as SQS message bodies) parsed into inbox events: what is kept, what not.

The documents are the samples of the Amazon ECR user guide ("Amazon ECR events and
EventBridge"), except the digests: the guide's sample digest has 60 hex digits, which no registry
would accept, so a real 64-digit one stands in.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from sidecar.config import RegistryConfig
from sidecar.errors import WebhookRejected
from sidecar.model.decision import RegistryFacts
from sidecar.webhooks import EcrIgnored, RegistryEvent, parse_ecr_message
from sidecar.webhooks.envelope import decode_stored, encode_stored

DIGEST = "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd12345678"
REGISTRY = RegistryConfig(
    name="ecr-west",
    facts=RegistryFacts("ecr-west", "us-west-2", "prod"),
    type="ecr",
    endpoint="https://123456789012.dkr.ecr.us-west-2.amazonaws.com",
    region="us-west-2",
    account_id="123456789012",
)

PUSH = {
    "version": "0",
    "id": "13cde686-328b-6117-af20-0e5566167482",
    "detail-type": "ECR Image Action",
    "source": "aws.ecr",
    "account": "123456789012",
    "time": "2019-11-16T01:54:34Z",
    "region": "us-west-2",
    "resources": [],
    "detail": {
        "result": "SUCCESS",
        "repository-name": "my-repository-name",
        "image-digest": DIGEST,
        "action-type": "PUSH",
        "image-tag": "latest",
    },
}
DELETE = {
    **PUSH,
    "id": "dd3b46cb-2c74-f49e-393b-28286b67279d",
    "time": "2019-11-16T02:01:05Z",
    "detail": {**PUSH["detail"], "action-type": "DELETE"},  # type: ignore[dict-item]
}
SCAN = {
    "version": "0",
    "id": "85fc3613-e913-7fc4-a80c-a3753e4aa9ae",
    "detail-type": "ECR Image Scan",
    "source": "aws.ecr",
    "account": "123456789012",
    "time": "2019-10-29T02:36:48Z",
    "region": "us-west-2",
    "resources": ["arn:aws:ecr:us-west-2:123456789012:repository/my-repository-name"],
    "detail": {
        "scan-status": "COMPLETE",
        "repository-name": "my-repository-name",
        "finding-severity-counts": {"CRITICAL": 10, "MEDIUM": 9},
        "image-digest": DIGEST,
        "image-tags": ["latest", "v1"],
    },
}


def _parse(doc: Any, *, max_bytes: int = 65536) -> RegistryEvent | EcrIgnored:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return parse_ecr_message(body, REGISTRY, origin="sqs:west", max_bytes=max_bytes)


def test_a_push_becomes_a_push_of_the_tagged_manifest_keyed_by_the_eventbridge_id() -> None:
    event = _parse(PUSH)
    assert isinstance(event, RegistryEvent)
    assert (event.id, event.action) == ("aws.ecr:13cde686-328b-6117-af20-0e5566167482", "push")
    assert (event.repository, event.tag, event.digest) == ("my-repository-name", "latest", DIGEST)
    assert event.is_manifest
    # Stored and read back the way the processor reads every inbox event.
    registry, stored = decode_stored(encode_stored(REGISTRY.name, event))
    assert registry == "ecr-west"
    assert (stored.id, stored.action, stored.tag, stored.digest) == (
        event.id,
        "push",
        "latest",
        DIGEST,
    )
    raw = stored.to_json()
    assert raw["timestamp"] == "2019-11-16T01:54:34Z"
    assert raw["origin"] == "sqs:west"
    assert raw["ecr"] == PUSH


def test_a_deletion_and_a_completed_scan_are_kept_with_their_own_actions() -> None:
    deleted = _parse(DELETE)
    assert isinstance(deleted, RegistryEvent)
    assert (deleted.action, deleted.tag) == ("delete", "latest")
    scan = _parse(SCAN)
    assert isinstance(scan, RegistryEvent)
    assert (scan.action, scan.tag, scan.digest) == ("scan", "latest", DIGEST)
    raw = scan.to_json()
    assert raw["target"]["tags"] == ["latest", "v1"]
    assert raw["scan"] == {
        "status": "COMPLETE",
        "finding_severity_counts": {"CRITICAL": 10, "MEDIUM": 9},
    }


def test_a_push_by_digest_has_no_tag() -> None:
    doc = json.loads(json.dumps(PUSH))
    del doc["detail"]["image-tag"]
    event = _parse(doc)
    assert isinstance(event, RegistryEvent)
    assert event.tag == ""


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"detail": {**PUSH["detail"], "result": "FAILURE"}}, "FAILURE"),  # type: ignore[dict-item]
        ({"detail-type": "ECR Pull Through Cache Action"}, "Pull Through"),
        (
            {
                "detail": {**SCAN["detail"], "scan-status": "FAILED"},
                "detail-type": "ECR Image Scan",
            },
            "FAILED",
        ),  # type: ignore[dict-item]
    ],
)
def test_ecr_events_without_an_effect_are_ignored_by_id(
    change: dict[str, Any], reason: str
) -> None:
    ignored = _parse({**PUSH, **change})
    assert isinstance(ignored, EcrIgnored)
    assert ignored.event_id == "aws.ecr:13cde686-328b-6117-af20-0e5566167482"
    assert reason in ignored.reason


@pytest.mark.parametrize(
    ("body", "status", "problem"),
    [
        (b"not json", 400, "not JSON"),
        (b"[]", 400, "not an EventBridge event"),
        (json.dumps({**PUSH, "source": "aws.s3"}).encode(), 400, "not 'aws.ecr'"),
        (json.dumps({**PUSH, "account": "999999999999"}).encode(), 403, "account"),
        (json.dumps({**PUSH, "region": "eu-west-1"}).encode(), 403, "region"),
        (json.dumps({**PUSH, "time": "soon"}).encode(), 400, "RFC 3339"),
        (json.dumps({**PUSH, "detail": None}).encode(), 400, "detail"),
        (json.dumps({**PUSH, "id": "../x"}).encode(), 400, "id"),
    ],
)
def test_messages_that_are_no_usable_ecr_event_are_refused(
    body: bytes, status: int, problem: str
) -> None:
    with pytest.raises(WebhookRejected) as caught:
        _parse(body)
    assert caught.value.status == status
    assert problem in caught.value.message


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("repository-name", None, "repository-name is missing"),
        ("repository-name", "Upper/Case", "repository-name"),
        ("repository-name", "a/" * 200 + "b", "longer than 256"),
        ("image-digest", "sha256:abc", "image-digest"),
        ("image-digest", None, "image-digest is missing"),
        ("image-tag", "no spaces", "image-tag"),
        ("image-tag", 5, "must be a string"),
        ("action-type", None, "action-type is missing"),
        ("manifest-media-type", "not a media type", "manifest-media-type"),
    ],
)
def test_malformed_push_details_are_refused_naming_the_field(
    key: str, value: Any, problem: str
) -> None:
    detail = dict(PUSH["detail"])  # type: ignore[call-overload]
    if value is None:
        del detail[key]
    else:
        detail[key] = value
    with pytest.raises(WebhookRejected) as caught:
        _parse({**PUSH, "detail": detail})
    assert problem in caught.value.message


def test_scan_counts_must_be_known_severities_with_counts() -> None:
    for counts in ({"CRITICAL": -1}, {"CRITICAL": "10"}, {"SEVERE": 1}, ["CRITICAL"]):
        with pytest.raises(WebhookRejected):
            _parse({**SCAN, "detail": {**SCAN["detail"], "finding-severity-counts": counts}})  # type: ignore[dict-item]


def test_an_oversized_message_is_refused_before_it_is_parsed() -> None:
    body = json.dumps({**PUSH, "padding": "x" * 5000}).encode()
    with pytest.raises(WebhookRejected) as caught:
        _parse(body, max_bytes=4096)
    assert caught.value.status == 413


def test_a_registry_without_account_or_region_takes_any() -> None:
    anywhere = RegistryConfig(name="ecr", facts=RegistryFacts("ecr", "", "prod"))
    body = json.dumps({**PUSH, "account": "999999999999", "region": "ap-south-1"}).encode()
    event = parse_ecr_message(body, anywhere, origin="sqs:x", max_bytes=65536)
    assert isinstance(event, RegistryEvent)
