"""The legacy fail mode applies the sensitive customer allowlists exactly like customers.rego."""

from __future__ import annotations

import dataclasses

from sidecar.fallback._data import customer_allowlist
from sidecar.fallback.legacy import LegacyRule
from sidecar.fallback.modes import FallbackData, legacy_decision
from sidecar.model.decision import ImageFacts, ImageRef, PolicyInput, RegistryFacts

SENSITIVE = {"customers": {"allowlist": {"dev-a": ["cust-1"], "dev-c": []}}}


def _rule(index: int, destination: str) -> LegacyRule:
    return LegacyRule(
        id=f"legacy-{index}",
        source_registry="ci",
        source_repository="team/*",
        source_regex=r"^team/([^/]*)$",
        destination_registry=destination,
        destination_repository="mirror/$1",
    )


BASE = FallbackData.from_data({}, [_rule(0, "dev-a"), _rule(1, "dev-b"), _rule(2, "dev-c")])
DATA = dataclasses.replace(BASE, customer_allowlist=customer_allowlist(SENSITIVE))


def _input(labels: dict[str, str]) -> PolicyInput:
    return PolicyInput(
        now="2026-11-28T12:00:00Z",
        event="push",
        image=ImageFacts(ImageRef("ci", "team/app", "v1"), labels=labels),
        registries=tuple(RegistryFacts(n, "us", "dev") for n in ("ci", "dev-a", "dev-b", "dev-c")),
    )


def _denied(data: FallbackData, labels: dict[str, str]) -> dict[str, tuple[str, ...]]:
    return {d.registry: d.reasons for d in legacy_decision(data, _input(labels)).denied}


def test_allowlisted_customer_is_routed_others_are_denied() -> None:
    decision = legacy_decision(DATA, _input({"customer-id": "cust-1"}))
    assert [r.registry for r in decision.routes] == ["dev-a", "dev-b"]
    assert _denied(DATA, {"customer-id": "cust-1"}) == {"dev-c": ("CUSTOMER_NOT_ALLOWED",)}
    assert _denied(DATA, {"customer-id": "cust-2"}) == {
        "dev-a": ("CUSTOMER_NOT_ALLOWED",),
        "dev-c": ("CUSTOMER_NOT_ALLOWED",),
    }
    assert _denied(DATA, {}) == _denied(DATA, {"customer-id": "cust-2"})
    messages = [r.message for r in legacy_decision(DATA, _input({})).reasons]
    assert "registry accepts only images of its allowlisted customers" in messages
    assert not any("cust-1" in m for m in messages)


def test_without_sensitive_data_nothing_is_restricted() -> None:
    assert _denied(BASE, {"customer-id": "cust-2"}) == {}


def test_malformed_allowlists_are_ignored_like_the_policy() -> None:
    assert customer_allowlist({}) == {}
    assert customer_allowlist({"customers": {"allowlist": ["dev-a"]}}) == {}
    assert customer_allowlist({"customers": {"allowlist": {"dev-a": "cust-1"}}}) == {}
    assert customer_allowlist({"customers": {"allowlist": {"dev-a": ["c", 1]}}}) == {
        "dev-a": frozenset({"c"})
    }
