"""Each registry's documented webhook payload becomes the normalised events the processor acts on."""

from __future__ import annotations

import json

import pytest

from sidecar.errors import WebhookRejected
from sidecar.webhooks import RegistryEvent, encode_stored
from sidecar.webhooks._github import parse_github
from sidecar.webhooks._harbor import parse_harbor
from sidecar.webhooks._hub import parse_hub, parse_quay
from sidecar.webhooks.envelope import decode_stored
from tests.support.webhook_formats import github_package, harbor_event, hub_push, quay_push

DIGEST = "sha256:" + "c" * 64


def _body(doc: object) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("kind", "action"),
    [("PUSH_ARTIFACT", "push"), ("DELETE_ARTIFACT", "delete"), ("SCANNING_COMPLETED", "scan"),
     ("PULL_ARTIFACT", "pull")],
)  # fmt: skip
def test_harbor_types_map_to_actions(kind: str, action: str) -> None:
    doc = harbor_event(kind, "harbor.example", "library/app", digest=DIGEST, tag="v1",
                       occur_at=1680501893, scan=kind == "SCANNING_COMPLETED")  # fmt: skip
    (event,) = parse_harbor(_body(doc))
    assert (event.action, event.repository, event.tag, event.digest) == (
        action,
        "library/app",
        "v1",
        DIGEST,
    )
    assert (event.source, event.request_host, event.occurred_at) == (
        "harbor",
        "harbor.example",
        "2023-04-03T06:04:53Z",
    )
    # The same delivery again is the same event (deduplicated by id); another time is not.
    assert parse_harbor(_body(doc))[0].id == event.id
    doc["occur_at"] += 1
    assert parse_harbor(_body(doc))[0].id != event.id


def test_harbor_untagged_artifact_has_no_tag_and_other_types_are_ignored() -> None:
    (event,) = parse_harbor(_body(harbor_event("PUSH_ARTIFACT", "h", "p/a", digest=DIGEST)))
    assert (event.tag, event.digest) == ("", DIGEST)
    assert parse_harbor(_body(harbor_event("QUOTA_EXCEED", "h", "p/a", digest=DIGEST))) == ()


def test_hub_push_names_tag_and_hub_but_no_digest() -> None:
    (event,) = parse_hub(_body(hub_push("acme/app", "latest", pushed_at=1417566161)))
    assert (event.action, event.repository, event.tag, event.digest) == (
        "push",
        "acme/app",
        "latest",
        "",
    )
    assert (event.request_host, event.occurred_at) == ("docker.io", "2014-12-03T00:22:41Z")


def test_quay_push_is_one_event_per_updated_tag() -> None:
    events = parse_quay(_body(quay_push("quay.io", "acme/app", ["latest", "v2"])), now=1000.0)
    assert [(e.repository, e.tag, e.request_host) for e in events] == [
        ("acme/app", "latest", "quay.io"), ("acme/app", "v2", "quay.io")
    ]  # fmt: skip
    again = parse_quay(_body(quay_push("quay.io", "acme/app", ["latest", "v2"])), now=1010.0)
    assert [e.id for e in again] == [e.id for e in events]


def test_github_package_published_names_tag_digest_and_host() -> None:
    doc = github_package("ghcr.io", "Acme/App", "v1", DIGEST)
    (event,) = parse_github(_body(doc), event="package", delivery="72d3162e")
    assert (event.id, event.repository, event.tag, event.digest, event.request_host) == (
        "github:72d3162e",
        "acme/app",
        "v1",
        DIGEST,
        "ghcr.io",
    )
    doc["action"] = "deleted"
    assert parse_github(_body(doc), event="package", delivery="x") == ()
    assert parse_github(_body(doc), event="ping", delivery="x") == ()


def test_registry_package_key_is_read_too() -> None:
    doc = github_package("ghcr.io", "acme/app", "v1", DIGEST)
    doc["registry_package"] = doc.pop("package")
    (event,) = parse_github(_body(doc), event="registry_package", delivery="d")
    assert event.tag == "v1"


def test_normalised_events_survive_the_inbox_round_trip() -> None:
    event = RegistryEvent("ecr:1", "delete", "team/app", digest=DIGEST, tag="v1",
                          source="ecr", occurred_at="2026-01-01T00:00:00Z")  # fmt: skip
    assert decode_stored(encode_stored("ecr-prod", event)) == ("ecr-prod", event)


def test_a_forged_stored_event_without_an_action_is_unreadable() -> None:
    stored = json.dumps({"registry": "r", "normalised": {"id": "x", "repository": "a"}}).encode()
    with pytest.raises(WebhookRejected, match="id, action or repository"):
        decode_stored(stored)
