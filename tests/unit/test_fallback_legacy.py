"""The legacy fail mode beyond the shared case table: rule denials, DR, deferral, cost, priority."""

from __future__ import annotations

from sidecar.fallback.legacy import LegacyRule
from sidecar.fallback.modes import FallbackData, legacy_decision
from sidecar.model.decision import ImageFacts, ImageRef, PolicyInput, RegistryFacts


def _rule(index: int, destination: str) -> LegacyRule:
    return LegacyRule(
        id=f"legacy-{index}",
        source_registry="ci",
        source_repository="team/*",
        source_regex=r"^team/([^/]*)$",
        destination_registry=destination,
        destination_repository="mirror/$1",
    )


DATA = FallbackData.from_data(
    {
        "settings": {"cost": {"threshold": 1.0}},
        "rules": [
            {
                "id": "no-secrets",
                "match": {"labels": {"secrets": "true"}},
                "deny": [{"registry": "dev-a", "code": "SECRETS"}],
                "chain": ["hot"],
            },
            {"id": "hot", "match": {"tag": "never"}, "set": {"priority": 95}},
        ],
    },
    [_rule(0, "dev-a"), _rule(1, "dev-b"), _rule(2, "dr"), _rule(3, "down")],
)


def _input(labels: dict[str, str], size: int = 0) -> PolicyInput:
    return PolicyInput(
        now="2026-11-28T12:00:00Z",
        event="push",
        image=ImageFacts(ImageRef("ci", "team/app", "v1"), labels=labels, size_bytes=size),
        registries=(
            RegistryFacts("ci", "us", "ci"),
            RegistryFacts("dev-a", "us", "dev", egress_cost_per_gb=1.0),
            RegistryFacts("dev-b", "eu", "dev", egress_cost_per_gb=2.0),
            RegistryFacts("primary", "us", "dev", healthy=False),
            RegistryFacts("dr", "us", "dev", role="secondary", backs="primary"),
            RegistryFacts("down", "us", "dev", healthy=False),
        ),
        access={"eu": 5},
    )


def test_rule_denials_failover_and_deferral_apply_to_legacy_routes() -> None:
    decision = legacy_decision(DATA, _input({"secrets": "true"}))
    assert decision.allow
    assert [(r.registry, r.repository, r.rank) for r in decision.routes] == [
        ("dev-b", "mirror/app", 1),  # most pulls in its region first
        ("dr", "mirror/app", 2),  # its primary is down: failover
    ]
    assert {d.registry: d.reasons for d in decision.denied} == {
        "dev-a": ("SECRETS",),
        "primary": ("POLICY_UNAVAILABLE",),
    }
    assert [(d.registry, d.reason) for d in decision.deferred] == [("down", "REGISTRY_UNAVAILABLE")]
    assert decision.priority == 95  # the chained rule's set.priority wins
    codes = {r.code for r in decision.reasons}
    assert {"FAILOVER_SECONDARY", "LEGACY_RULE", "REGISTRY_UNAVAILABLE", "SECRETS"} <= codes


def test_cost_consolidation_keeps_the_top_ranked_route() -> None:
    decision = legacy_decision(DATA, _input({}, size=2_000_000_000))
    assert [r.registry for r in decision.routes] == ["dev-b"]
    denied = {d.registry: d.reasons for d in decision.denied}
    assert denied["dev-a"] == ("COST_CONSOLIDATED",) and denied["dr"] == ("COST_CONSOLIDATED",)
    assert decision.priority == 30  # normal criticality + sandbox (tag v1), settings defaults
