"""validate_request: a malformed request is InvalidArgument naming the field, before any work."""

from __future__ import annotations

import dataclasses

import pytest

from sidecar.config import Limits
from sidecar.enrich import validate_request
from sidecar.errors import ErrorCode, InvalidArgument
from sidecar.model.decision import Caller, DecideRequest, ImageRef, RegistryFacts, TenantUsage

INVENTORY = (RegistryFacts("ci", "us-east-1", "ci"), RegistryFacts("prod-us", "us-east-1", "prod"))
LIMITS = Limits(max_labels=3, max_label_key_bytes=8, max_label_value_bytes=16)
SHA256 = "sha256:" + "0123456789abcdef" * 4
SHA512 = "sha512:" + "0123456789abcdef" * 8


def _request(image: dict[str, str] | None = None, **fields: object) -> DecideRequest:
    ref = {"registry": "ci", "repository": "team/app", "tag": "prod-1", "digest": SHA256}
    ref.update(image or {})
    request = DecideRequest(image=ImageRef(**ref))
    return dataclasses.replace(request, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "request_",
    [
        _request(),
        _request({"digest": ""}),
        _request({"tag": ""}),
        _request({"digest": SHA512, "repository": "a0/b.c/d__e/f--g"}),
        _request({"tag": "_v1.2-rc.3", "repository": "x" * 255}),
        _request(
            labels={"a": "x" * 16, "b": "", "ü": "1"},
            event="failover",
            created_at="2026-11-28T12:00:00.123456789+02:00",
            now="2026-11-28T12:00:00Z",
            registry_health={"prod-us": False},
            access={"us-east-1": 0},
            tenant_usage=TenantUsage("acme", 0, 0),
            present_at=("prod-us", "ci"),
        ),
    ],
)
def test_well_formed_requests_pass(request_: DecideRequest) -> None:
    validate_request(request_, LIMITS, INVENTORY)


@pytest.mark.parametrize(
    ("request_", "field", "problem"),
    [
        (_request({"registry": ""}), "image.registry", "required"),
        (_request({"registry": "nope"}), "image.registry", "unknown registry 'nope'"),
        (_request({"repository": ""}), "image.repository", "required"),
        (_request({"repository": "Team/App"}), "image.repository", "not an OCI repository"),
        (_request({"repository": "team//app"}), "image.repository", "not an OCI repository"),
        (_request({"repository": "team/app-"}), "image.repository", "not an OCI repository"),
        (_request({"repository": "x" * 256}), "image.repository", "at most 255"),
        (_request({"tag": "", "digest": ""}), "image.tag", "a tag or a digest is required"),
        (_request({"tag": "bad tag!"}), "image.tag", "not an OCI tag"),
        (_request({"tag": ".hidden"}), "image.tag", "not an OCI tag"),
        (_request({"tag": "v" * 129}), "image.tag", "not an OCI tag"),
        (_request({"digest": "sha256:xyz"}), "image.digest", "sha256:<64"),
        (_request({"digest": SHA256.upper().replace("SHA", "sha")}), "image.digest", "lower-case"),
        (_request({"digest": "md5:" + "a" * 32}), "image.digest", "sha512:<128"),
        (_request({"digest": SHA256 + "0"}), "image.digest", "sha256:<64"),
        (_request(labels={"a": "1", "b": "2", "c": "3", "d": "4"}), "image.labels", "at most 3"),
        (_request(labels={"k" * 9: "v"}), "image.labels", "at most 8 allowed"),
        (_request(labels={"ü" * 5: "v"}), "image.labels", "10 bytes"),  # bytes, not characters
        (_request(labels={"k": "v" * 17}), "image.labels", "at most 16 allowed"),
        (_request(labels={"": "v"}), "image.labels", "must not be empty"),
        (_request(annotations={"k": "v" * 17}), "image.annotations", "at most 16 allowed"),
        (_request(created_at="2026-11-28"), "image.created_at", "RFC 3339"),
        (_request(size_bytes=-1), "image.size_bytes", "negative"),
        (_request(event="delete"), "event", "not one of push, reconcile, failover, manual"),
        (_request(now="2026-11-28 12:00:00"), "now", "RFC 3339"),
        (_request(now="2026-02-30T00:00:00Z"), "now", "RFC 3339"),
        (_request(registry_health={"prod-ap": False}), "registry_health", "prod-ap"),
        (_request(access={"us-east-1": -3}), "access", "negative"),
        # present_at may become removals: inventory names only, each once, bounded.
        (_request(present_at=("prod-ap",)), "image.present_at", "unknown registries ['prod-ap']"),
        (_request(present_at=("prod-us", "prod-us")), "image.present_at", "more than once"),
        (_request(present_at=("p" * 300,)), "image.present_at", "300 bytes"),
        (
            _request(present_at=tuple(f"r{i}" for i in range(257))),
            "image.present_at",
            "257 entries, at most 256",
        ),
        # Issue 15: the repeated/map fields had no size limit (defaults 256/64/64, 256 bytes each).
        (_request(access={f"r{i}": 1 for i in range(257)}), "access", "257 entries, at most 256"),
        (_request(access={"r" * 257: 1}), "access", "257 bytes, at most 256"),
        (_request(platforms=("linux/amd64",) * 65), "image.platforms", "65 entries, at most 64"),
        (_request(platforms=("p" * 300,)), "image.platforms", "300 bytes"),
        (_request(caller=Caller(roles=("r",) * 65)), "caller.roles", "65 entries, at most 64"),
        (_request(caller=Caller(roles=("ü" * 200,))), "caller.roles", "400 bytes"),
        (
            _request(tenant_usage=TenantUsage("acme", -1, 0)),
            "tenant_usage.storage_used_bytes",
            "negative",
        ),
        (
            _request(tenant_usage=TenantUsage("acme", 0, -1)),
            "tenant_usage.storage_limit_bytes",
            "negative",
        ),
    ],
)
def test_each_bad_field_is_named(request_: DecideRequest, field: str, problem: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_request(request_, LIMITS, INVENTORY)
    assert caught.value.field == field
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT
    assert problem in caught.value.message


def test_without_an_inventory_any_registry_name_is_accepted() -> None:
    validate_request(_request({"registry": "anything"}, registry_health={"x": True}), LIMITS)


def test_default_limits_match_the_documented_values() -> None:
    labels = {f"k{i}": "v" for i in range(256)}
    validate_request(_request(labels=labels), Limits())
    with pytest.raises(InvalidArgument, match=r"image\.labels"):
        validate_request(_request(labels={**labels, "one-more": "v"}), Limits())


def test_list_limits_are_configurable() -> None:
    limits = Limits(max_access_regions=2, max_platforms=1, max_roles=1, max_string_bytes=4)
    validate_request(
        _request(access={"a": 1, "b": 2}, platforms=("p",), caller=Caller(roles=("abcd",))),
        limits,
    )
    with pytest.raises(InvalidArgument, match="at most 2 allowed"):
        validate_request(_request(access={"a": 1, "b": 2, "c": 3}), limits)
    with pytest.raises(InvalidArgument, match="5 bytes, at most 4"):
        validate_request(_request(caller=Caller(roles=("abcde",))), limits)
