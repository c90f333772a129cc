"""Fuzzed SQS message bodies for the ECR poller: an event, an ignore, or a refusal — never a crash.

``parse_ecr_message`` gets arbitrary bytes and EventBridge-shaped events with fuzzed fields. It
must return a RegistryEvent (which the inbox processor can read back from its stored form) or an
EcrIgnored, or raise WebhookRejected with a status and a message; anything else would kill a
poll round and leave the message to come back forever.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.config import RegistryConfig
from sidecar.errors import WebhookRejected
from sidecar.model.decision import RegistryFacts
from sidecar.webhooks import EcrIgnored, RegistryEvent, parse_ecr_message
from sidecar.webhooks.envelope import decode_stored, encode_stored
from tests.support.fuzz import examples, json_values, nasty_text

DIGEST = "sha256:" + "e" * 64
REGISTRY = RegistryConfig(
    name="ecr",
    facts=RegistryFacts("ecr", "us-east-1", "prod"),
    type="ecr",
    region="us-east-1",
    account_id="123456789012",
)

_field = st.one_of(nasty_text, json_values)
_details = st.fixed_dictionaries(
    {},
    optional={
        "result": st.one_of(st.sampled_from(["SUCCESS", "FAILURE"]), _field),
        "action-type": st.one_of(st.sampled_from(["PUSH", "DELETE", "REPLICATE"]), _field),
        "repository-name": st.one_of(st.just("team/app"), _field),
        "image-digest": st.one_of(st.just(DIGEST), _field),
        "image-tag": st.one_of(st.just("dev-1"), _field),
        "image-tags": st.one_of(st.lists(st.one_of(st.just("v1"), nasty_text), max_size=3), _field),
        "manifest-media-type": st.one_of(
            st.just("application/vnd.docker.distribution.manifest.v2+json"), _field
        ),
        "scan-status": st.one_of(st.sampled_from(["COMPLETE", "FAILED"]), _field),
        "finding-severity-counts": st.one_of(
            st.dictionaries(
                st.one_of(st.sampled_from(["CRITICAL", "HIGH", "LOW"]), nasty_text),
                st.one_of(st.integers(-5, 2**40), _field),
                max_size=3,
            ),
            _field,
        ),
    },
)
_events = st.fixed_dictionaries(
    {},
    optional={
        "version": st.one_of(st.just("0"), _field),
        "id": st.one_of(st.uuids().map(str), _field),
        "detail-type": st.one_of(
            st.sampled_from(["ECR Image Action", "ECR Image Scan", "ECR Replication Action"]),
            _field,
        ),
        "source": st.one_of(st.just("aws.ecr"), _field),
        "account": st.one_of(st.just("123456789012"), _field),
        "time": st.one_of(st.just("2026-01-01T00:00:00Z"), _field),
        "region": st.one_of(st.just("us-east-1"), _field),
        "resources": st.one_of(st.just([]), _field),
        "detail": st.one_of(_details, _field),
    },
)
_bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    _events.map(lambda e: json.dumps(e).encode()),
    st.just(b"[" * 5000 + b"]" * 5000),
)


def _readable(event: RegistryEvent) -> None:
    """The processor reads the stored form back: same id, action and image."""
    registry, stored = decode_stored(encode_stored(REGISTRY.name, event))
    assert registry == REGISTRY.name
    assert (stored.id, stored.action, stored.repository, stored.tag, stored.digest) == (
        event.id,
        event.action,
        event.repository,
        event.tag,
        event.digest,
    )
    assert stored.id.startswith("aws.ecr:")
    assert stored.action in ("push", "delete", "scan")


@settings(max_examples=examples(400))
@given(body=_bodies)
def test_a_message_is_an_event_an_ignore_or_a_clear_refusal(body: bytes) -> None:
    try:
        parsed: Any = parse_ecr_message(body, REGISTRY, origin="sqs:fuzz", max_bytes=4096)
    except WebhookRejected as exc:
        assert exc.status in (400, 403, 413) and exc.message, exc
        return
    if isinstance(parsed, RegistryEvent):
        _readable(parsed)
    else:
        assert isinstance(parsed, EcrIgnored) and parsed.reason
