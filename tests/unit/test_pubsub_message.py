"""The Pub/Sub push envelope and the ``gcr`` topic's message, as Artifact Registry sends them."""

from __future__ import annotations

import pytest

from sidecar.config import RegistryConfig
from sidecar.errors import WebhookRejected
from sidecar.model.decision import RegistryFacts
from sidecar.webhooks import PubSubMessage, RegistryEvent, gcr_event, parse_push
from sidecar.webhooks.envelope import decode_stored, encode_stored
from tests.support.pubsub import gcr_data, push_envelope

DIGEST = "sha256:" + "5e" * 32
AR = "us-east1-docker.pkg.dev"
REGISTRIES = (
    RegistryConfig(name="ar", facts=RegistryFacts("ar", "us-east1", "ci"), endpoint=f"https://{AR}"),
    RegistryConfig(name="gcr", facts=RegistryFacts("gcr", "us", "ci"), endpoint="https://gcr.io:443"),
)  # fmt: skip


def _event(data: dict[str, str], message_id: str = "1234") -> tuple[str, RegistryEvent]:
    registry, event = gcr_event(parse_push(push_envelope(data, message_id=message_id)), REGISTRIES)
    return registry.name, event


def test_a_tagged_insert_is_a_push_of_that_tag_and_digest() -> None:
    name, event = _event(gcr_data("INSERT", f"{AR}/proj/repo/app", digest=DIGEST, tag="v1.2"))
    assert name == "ar"
    assert (event.id, event.action, event.repository, event.tag, event.digest) == (
        "pubsub:1234",
        "push",
        "proj/repo/app",
        "v1.2",
        DIGEST,
    )
    assert event.is_manifest


def test_the_stored_form_round_trips_through_the_inbox() -> None:
    message = parse_push(push_envelope(gcr_data("INSERT", f"{AR}/p/r/app", digest=DIGEST, tag="t")))
    registry, event = gcr_event(message, REGISTRIES)
    name, again = decode_stored(encode_stored(registry.name, event))
    assert name == "ar"
    assert (again.id, again.action, again.repository, again.tag, again.digest) == (
        event.id,
        "push",
        "p/r/app",
        "t",
        DIGEST,
    )
    assert again.is_manifest
    assert again.to_json()["pubsub"]["messageId"] == message.message_id


def test_delete_of_a_tag_and_gcr_hosts_with_default_port() -> None:
    name, event = _event({"action": "DELETE", "tag": "gcr.io/proj/app:old"})
    assert name == "gcr"
    assert (event.action, event.repository, event.tag, event.digest) == (
        "delete",
        "proj/app",
        "old",
        "",
    )


def test_an_untagged_insert_carries_only_the_digest() -> None:
    _, event = _event({"action": "INSERT", "digest": f"{AR}/p/r/app@{DIGEST}"})
    assert (event.tag, event.digest) == ("", DIGEST)


def test_the_snake_case_message_id_spelling_is_accepted() -> None:
    body = b'{"message": {"data": "e30=", "message_id": "77"}}'
    assert parse_push(body) == PubSubMessage("77", b"{}", "", {}, "")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"action": "INSERT", "digest": f"{AR}/p/app@sha256:short"}, "invalid digest"),
        ({"action": "INSERT", "tag": f"{AR}/p/app:bad tag"}, "invalid tag"),
        ({"action": "INSERT", "tag": "noslash:tag"}, "HOST/REPOSITORY"),
        ({"action": "INSERT", "tag": f"{AR}/UPPER/app:t"}, "HOST/REPOSITORY"),
        ({"action": "INSERT", "digest": 5}, "must be a string"),
        ({"action": "insert", "tag": f"{AR}/p/app:t"}, "data.action"),
        ({"action": "INSERT", "tag": "elsewhere.example/p/app:t"}, "unknown registry"),
    ],
)
def test_bad_gcr_data_is_a_400_naming_the_field(data: dict[str, object], problem: str) -> None:
    with pytest.raises(WebhookRejected) as caught:
        gcr_event(parse_push(push_envelope(data)), REGISTRIES)
    assert caught.value.status == 400 and problem in caught.value.message, caught.value.message
