"""Parsing, authentication and attribution of CNCF Distribution notification envelopes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sidecar.config._registries import RegistryConfig
from sidecar.errors import WebhookRejected
from sidecar.model.decision import RegistryFacts
from sidecar.webhooks.envelope import (
    check_secret,
    decode_stored,
    encode_stored,
    parse_envelope,
    resolve_registry,
)

DIGEST = "sha256:" + "cd" * 32
REGISTRIES = (
    RegistryConfig(
        name="eu",
        facts=RegistryFacts("eu", "eu-west-1", "prod"),
        endpoint="https://registry.eu.example.com",
    ),
    RegistryConfig(
        name="us", facts=RegistryFacts("us", "us-east-1", "prod"), endpoint="http://10.0.0.5:5000/"
    ),
)


def _event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": "ev-1",
        "timestamp": "2026-01-01T00:00:00Z",
        "action": "push",
        "target": {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": DIGEST,
            "size": 1234,
            "repository": "team/app",
            "url": f"https://registry.eu.example.com/v2/team/app/manifests/{DIGEST}",
            "tag": "prod-1",
        },
        "request": {"addr": "10.1.1.1:4000", "host": "registry.eu.example.com", "method": "PUT"},
        "source": {"addr": "reg-pod-7:5000", "instanceID": "i"},
    }
    event.update(overrides)
    return event


def _body(*events: Any) -> bytes:
    return json.dumps({"events": list(events)}).encode()


def _rejected(body: bytes) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as caught:
        parse_envelope(body)
    assert caught.value.status == 400
    return caught.value


def test_a_distribution_envelope_parses_to_events() -> None:
    (event,) = parse_envelope(_body(_event()))
    assert (event.id, event.action, event.repository, event.tag, event.digest) == (
        "ev-1",
        "push",
        "team/app",
        "prod-1",
        DIGEST,
    )
    assert event.is_manifest


def test_blob_events_are_not_manifests() -> None:
    blob = _event(
        target={"mediaType": "application/octet-stream", "digest": DIGEST, "repository": "team/app"}
    )
    (event,) = parse_envelope(_body(blob))
    assert not event.is_manifest and event.tag == ""


def test_an_empty_events_list_is_a_valid_envelope() -> None:
    assert parse_envelope(_body()) == ()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "empty body"),
        (b"{not json", "not JSON"),
        (b'["events"]', "no events list"),
        (b'{"events": {}}', "events must be a list"),
        (b'{"events": [42]}', "events[0] must be an object"),
        (_body(_event(id="")), "events[0].id is missing"),
        (_body(_event(), _event(action=None)), "events[1].action is missing"),
        (_body(_event(target={"digest": DIGEST})), "events[0].target.repository is missing"),
        (_body(_event(target=[])), "events[0].target must be an object"),
        (_body(_event(request={"host": 5})), "events[0].request.host must be a string"),
    ],
)
def test_broken_envelopes_are_rejected_naming_the_problem(body: bytes, problem: str) -> None:
    assert problem in str(_rejected(body))


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (None, "missing Authorization"),
        ("", "missing Authorization"),
        ("Basic dXNlcjpwYXNz", "not a Bearer token"),
        ("Bearer ", "not a Bearer token"),
        ("Bearer nearly-right", "wrong shared secret"),
    ],
)
def test_bad_credentials_are_401_naming_the_problem(header: str | None, problem: str) -> None:
    with pytest.raises(WebhookRejected) as caught:
        check_secret(header, "the-secret")
    assert caught.value.status == 401 and problem in str(caught.value)


def test_the_right_bearer_secret_is_accepted() -> None:
    check_secret("Bearer the-secret", "the-secret")
    check_secret("bearer the-secret ", "the-secret")


def test_registry_is_found_by_request_host_url_host_or_source_addr() -> None:
    (by_host,) = parse_envelope(_body(_event()))
    assert resolve_registry(by_host, REGISTRIES).name == "eu"
    # Explicit default port on the Host header, no request section: the target URL decides.
    (by_url,) = parse_envelope(_body(_event(request={"host": "registry.eu.example.com:443"})))
    assert resolve_registry(by_url, REGISTRIES).name == "eu"
    (by_source,) = parse_envelope(
        _body(
            _event(
                request={}, target={"repository": "r", "url": ""}, source={"addr": "10.0.0.5:5000"}
            )
        )
    )
    assert resolve_registry(by_source, REGISTRIES).name == "us"


def test_an_unknown_registry_is_400_naming_the_hosts_tried() -> None:
    (event,) = parse_envelope(
        _body(
            _event(
                request={"host": "rogue:5000"},
                target={"repository": "r"},
                source={"addr": "rogue-pod:5000"},
            )
        )
    )
    with pytest.raises(WebhookRejected) as caught:
        resolve_registry(event, REGISTRIES)
    assert caught.value.status == 400
    assert "rogue:5000" in str(caught.value) and "rogue-pod:5000" in str(caught.value)


def test_stored_events_round_trip_with_their_registry() -> None:
    (event,) = parse_envelope(_body(_event()))
    registry, again = decode_stored(encode_stored("eu", event))
    assert registry == "eu" and (again.id, again.tag, again.digest) == ("ev-1", "prod-1", DIGEST)
