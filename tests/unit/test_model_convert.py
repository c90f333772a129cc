"""Proto ↔ model conversion, decision JSON round trips, image references and decision records."""

from __future__ import annotations

import pytest

from sidecar._proto import policy_pb2 as pb
from sidecar.api.convert import decide_request_from_proto, decide_response_to_proto
from sidecar.model.decision import Decision, DecisionResult, ImageRef
from sidecar.records import DecisionRecords

DECISION_JSON = {
    "allow": True,
    "priority": 60,
    "routes": [{"registry": "prod-eu", "repository": "team/app", "tag": "prod-1", "rank": 1}],
    "denied": [{"registry": "dev-us", "reasons": ["ENV_MISMATCH"]}],
    "deferred": [{"registry": "prod-us", "reason": "REGISTRY_UNAVAILABLE"}],
    "actions": [{"type": "cleanup", "tenant": "acme", "keep_last": 5, "older_than_days": 14}],
    "remove": [{"registry": "dev-us", "reasons": ["NOT_GDPR"]}],
    "reasons": [{"code": "ENV_MISMATCH", "message": "environment differs"}],
    "policies": ["replication.decision", "replication.environment"],
}


def test_decision_json_round_trip_is_lossless() -> None:
    assert Decision.from_json(DECISION_JSON).to_json() == DECISION_JSON


def test_malformed_decision_is_rejected() -> None:
    with pytest.raises(KeyError):
        Decision.from_json({"routes": []})


def test_request_from_proto_maps_every_field() -> None:
    msg = pb.DecideRequest(
        image=pb.Image(
            registry="ci",
            repository="team/app",
            tag="prod-1",
            labels={"a": "b"},
            size_bytes=7,
            platforms=["linux/amd64"],
            present_at=["prod-us", "dev-us"],
        ),
        caller=pb.Caller(subject="bot", tenant="", roles=["replicator"]),
        registry_health={"prod-us": False},
        access={"eu-west-1": 3},
        tenant_usage=pb.TenantUsage(id="acme", storage_used_bytes=2, storage_limit_bytes=1),
    )
    req = decide_request_from_proto(msg)
    assert req.image == ImageRef("ci", "team/app", "prod-1", "")
    assert req.event == "push"  # the documented default
    assert req.caller.tenant is None  # empty string on the wire means "no tenant"
    assert req.registry_health == {"prod-us": False}
    assert req.access == {"eu-west-1": 3}
    assert req.tenant_usage is not None and req.tenant_usage.storage_limit_bytes == 1
    assert req.platforms == ("linux/amd64",)
    assert req.present_at == ("prod-us", "dev-us")


def test_response_carries_ids_and_decision() -> None:
    result = DecisionResult(Decision.from_json(DECISION_JSON), "d1", "rev-1", "ab" * 16)
    answer = decide_response_to_proto(result, "req-9")
    assert (answer.decision_id, answer.bundle_revision, answer.request_id) == (
        "d1",
        "rev-1",
        "req-9",
    )
    assert [r.registry for r in answer.decision.routes] == ["prod-eu"]
    assert list(answer.decision.denied[0].reasons) == ["ENV_MISMATCH"]
    assert [(d.registry, list(d.reasons)) for d in answer.decision.remove] == [
        ("dev-us", ["NOT_GDPR"])
    ]


def test_a_decision_without_remove_reads_as_removing_nothing() -> None:
    """An older bundle's decision (no ``remove`` field) removes nothing."""
    older = {k: v for k, v in DECISION_JSON.items() if k != "remove"}
    assert Decision.from_json(older).remove == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ci/team/app:prod-1", ImageRef("ci", "team/app", "prod-1")),
        ("ci/app@sha256:" + "a" * 64, ImageRef("ci", "app", "", "sha256:" + "a" * 64)),
        ("ci/a/b/c:v1@sha256:" + "b" * 64, ImageRef("ci", "a/b/c", "v1", "sha256:" + "b" * 64)),
    ],
)
def test_image_ref_parse(text: str, expected: ImageRef) -> None:
    assert ImageRef.parse(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize("text", ["app", "/app:1", "ci/"])
def test_image_ref_parse_rejects_incomplete(text: str) -> None:
    with pytest.raises(ValueError, match="REGISTRY/REPOSITORY"):
        ImageRef.parse(text)


def test_records_evict_oldest_and_expire() -> None:
    now = [0.0]
    records = DecisionRecords(max_entries=2, ttl_s=10, clock=lambda: now[0])
    for i in range(3):
        records.put(DecisionResult(Decision(allow=True), f"d{i}", "r"))
    assert records.get("d0") is None and records.get("d2") is not None
    now[0] = 11
    assert records.get("d1") is None and len(records) == 1
