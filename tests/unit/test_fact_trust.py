"""Which request facts the enricher believes (sidecar/enrich/trust.py): the merge rules of issue 15.

Observed facts win over the request; a gate fact the registry did not observe counts only from a
caller holding an override role; ``now``, ``registry_health``, ``tenant_usage`` and ``access``
are the sidecar's unless such a caller states them. The registry is played by a FactSource double
that reports what it observed, as ``RegistryFactSource`` does (tests/integration covers that one
against a real registry, tests/security the whole path).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import pytest

from sidecar.config import Config, load_config
from sidecar.enrich import (
    Contribution,
    FactTrust,
    StaticEnricher,
    check_request_facts,
    merge_request_image,
    trust_of,
)
from sidecar.errors import ConfigError, InvalidArgument
from sidecar.model.decision import (
    Caller,
    DecideRequest,
    DroppedFact,
    ImageFacts,
    ImageRef,
    PolicyInput,
    ScanFacts,
    TenantUsage,
)

CONFIG = """\
registries:
  - {name: ci, region: us-east-1, metadata: {environment: ci}}
  - {name: prod-us, region: us-east-1, metadata: {environment: prod}}
policy:
  tenancy:
    tenants: [acme, globex]
    prefixes: {"acme/": acme}
    usage: {acme: {storage_used_bytes: 50, storage_limit_bytes: 10}}
"""
PASSED = {
    "security.scan.status": "passed",
    "security.scan.completed-at": "2026-11-27T08:00:00Z",
    "security.scan.critical": "0",
}
FAILED = {**PASSED, "security.scan.status": "failed", "security.scan.critical": "3"}
REF = ImageRef("ci", "acme/app", "prod-1", "sha256:" + "a" * 64)
ANYONE = Caller("ci-bot", roles=("replicator",))
REPLAYER = Caller("replayer", roles=("replay",))
CONFLICT = "the registry's value wins"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    (tmp_path / "sidecar.yaml").write_text(CONFIG, encoding="utf-8")
    return load_config(tmp_path / "sidecar.yaml")


@dataclasses.dataclass(frozen=True)
class _Registry:
    """A FactSource double standing for the source registry: it observed ``labels``."""

    labels: Mapping[str, str]
    scan: ScanFacts | None = None
    name: str = "registry.image"

    async def contribute(self, request: DecideRequest, draft: PolicyInput) -> Contribution:
        image = dataclasses.replace(
            draft.image, labels=dict(self.labels), size_bytes=500, scan=self.scan
        )
        observed = ("image.labels", "image.annotations", "image.size_bytes", "image.created_at")
        if self.scan is not None:
            observed = (*observed, "image.scan")
        return Contribution(dataclasses.replace(draft, image=image), observed=observed)


class _Down:
    """The source registry, unreachable."""

    name = "registry.image"

    async def contribute(self, request: DecideRequest, draft: PolicyInput) -> Contribution:
        raise ConnectionError("registry unreachable")


def _request(caller: Caller = ANYONE, **fields: object) -> DecideRequest:
    return dataclasses.replace(DecideRequest(REF, caller=caller), **fields)  # type: ignore[arg-type]


def _reasons(dropped: tuple[DroppedFact, ...]) -> dict[str, str]:
    return {d.fact: d.reason for d in dropped}


async def test_registry_labels_win_and_every_request_only_label_is_dropped(config: Config) -> None:
    enricher = StaticEnricher(config, extra_sources=(_Registry({**FAILED, "team": "web"}),))
    forged = {**PASSED, "tenant": "globex", "compliance-required": "false", "team": "web"}
    policy_input, provenance = await enricher.enrich_traced(_request(labels=forged))

    image = policy_input.image
    assert image.labels == {**FAILED, "team": "web"}
    assert (image.scan and image.scan.status, image.tenant) == ("failed", "acme")
    reasons = _reasons(provenance.dropped)
    assert reasons.pop("image.labels.security.scan.status") == CONFLICT
    assert reasons.pop("image.labels.security.scan.critical") == CONFLICT
    assert set(reasons) == {"image.labels.tenant", "image.labels.compliance-required"}
    assert all("not on the image in the registry" in r for r in reasons.values())
    facts = provenance.facts
    assert facts["image.labels.security.scan.status"] == "registry"
    assert facts["image.scan"] == "registry"  # read from the registry's labels
    assert facts["image.tenant"] == "config"  # the repository prefix, the label was dropped
    assert facts["image.size_bytes"] == "registry"
    assert facts["now"] == "sidecar"
    # A role does not outrank an observation: a replay of old labels still sees today's.
    replayed, _ = await enricher.enrich_traced(_request(REPLAYER, labels=forged))
    assert replayed.image.labels == image.labels


async def test_an_observed_scan_beats_the_request_labels(config: Config) -> None:
    scan = ScanFacts("failed", "2026-11-27T00:00:00Z", critical=2, source="ecr")
    enricher = StaticEnricher(config, extra_sources=(_Registry({}, scan),))
    policy_input, provenance = await enricher.enrich_traced(_request(REPLAYER, labels=PASSED))
    assert policy_input.image.scan == scan
    assert provenance.facts["image.scan"] == "registry"
    assert set(_reasons(provenance.dropped)) == {f"image.labels.{k}" for k in PASSED}


@pytest.mark.parametrize("registry", [_Down(), None], ids=["registry down", "not configured"])
async def test_unobserved_gate_facts_need_an_override_role(
    config: Config, registry: _Down | None
) -> None:
    enricher = StaticEnricher(config, extra_sources=(registry,) if registry else ())
    labels = {
        **PASSED,
        "tenant": "globex",
        "customer-id": "cust-1",
        "compliance-required": "true",  # closes a gate: kept
        "criticality": "high",  # gates nothing: kept
    }
    request = _request(
        labels=labels,
        annotations={"policy-sidecar.io/signed": "true", "org.opencontainers.image.source": "git"},
        created_at="2026-11-01T00:00:00Z",
        size_bytes=123,
        platforms=("linux/amd64",),
    )
    policy_input, provenance = await enricher.enrich_traced(request)
    image = policy_input.image
    assert image.labels == {"compliance-required": "true", "criticality": "high"}
    assert image.annotations == {"org.opencontainers.image.source": "git"}
    assert (image.scan, image.tenant, image.created_at) == (None, "acme", None)
    # A stated size can only make cost consolidation stricter than none; platforms gate nothing.
    assert (image.size_bytes, image.platforms) == (123, ("linux/amd64",))
    dropped = _reasons(provenance.dropped)
    assert set(dropped) == {
        *(f"image.labels.{k}" for k in (*PASSED, "tenant", "customer-id")),
        "image.annotations.policy-sidecar.io/signed",
        "image.created_at",
    }
    assert all("registry was not read" in reason for reason in dropped.values())
    assert provenance.facts["image.labels.criticality"] == "request"

    believed, trail = await enricher.enrich_traced(dataclasses.replace(request, caller=REPLAYER))
    assert believed.image.labels == labels and believed.image.tenant == "globex"
    assert believed.image.scan is not None and believed.image.created_at == "2026-11-01T00:00:00Z"
    assert trail.dropped == ()
    assert trail.facts["image.scan"] == trail.facts["image.tenant"] == "request"


async def test_sidecar_facts_from_a_caller_without_a_role_are_dropped(config: Config) -> None:
    stated = {
        "now": "2020-01-01T00:00:00Z",
        "registry_health": {"prod-us": False},
        "tenant_usage": TenantUsage("acme", 0, 10),
        "access": {"us-east-1": 9},
    }
    enricher = StaticEnricher(config)
    policy_input, provenance = await enricher.enrich_traced(_request(**stated))
    assert policy_input.now != "2020-01-01T00:00:00Z"
    assert all(r.healthy for r in policy_input.registries)
    assert policy_input.tenant == TenantUsage("acme", 50, 10)  # configured: over its limit
    assert policy_input.access == {}
    assert [d.fact for d in provenance.dropped] == [
        "now",
        "registry_health",
        "tenant_usage",
        "access",
    ]
    assert (provenance.facts["now"], provenance.facts["tenant"]) == ("sidecar", "config")

    replay, trail = await enricher.enrich_traced(_request(REPLAYER, **stated))
    assert replay.now == "2020-01-01T00:00:00Z"
    assert {r.name: r.healthy for r in replay.registries} == {"ci": True, "prod-us": False}
    assert (replay.tenant, replay.access) == (TenantUsage("acme", 0, 10), {"us-east-1": 9})
    assert trail.dropped == ()
    assert {k: trail.facts[k] for k in ("now", "tenant", "access.us-east-1")} == dict.fromkeys(
        ("now", "tenant", "access.us-east-1"), "request"
    )
    assert trail.facts["registries.prod-us.healthy"] == "request"


def test_stating_sidecar_facts_without_a_role_is_refused_naming_the_field(config: Config) -> None:
    trust = trust_of(config)
    check_request_facts(_request(), trust)  # nothing stated: fine
    with pytest.raises(InvalidArgument) as refused:
        check_request_facts(_request(access={"us-east-1": 1}, now="2026-01-01T00:00:00Z"), trust)
    assert refused.value.field == "now"
    assert "['fact-override', 'replay']" in refused.value.message
    assert "'ci-bot' has roles ['replicator']" in refused.value.message
    check_request_facts(_request(REPLAYER, now="2026-01-01T00:00:00Z"), trust)
    check_request_facts(_request(Caller("op", roles=("fact-override",)), access={"x": 1}), trust)
    check_request_facts(_request(now="2026-01-01T00:00:00Z"), FactTrust.operator())


def test_override_roles_and_gate_labels_are_configurable(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.yaml"
    facts = "  facts: {override_roles: [auditor], gate_labels: ['team']}\n"
    path.write_text(CONFIG + facts, encoding="utf-8")
    trust = trust_of(load_config(path))
    assert (trust.believes(REPLAYER), trust.believes(Caller(roles=("auditor",)))) == (False, True)
    assert trust.gate_label("team") and not trust.gate_label("tenant")
    path.write_text(CONFIG + "  facts: {override_roles: []}\n", encoding="utf-8")
    assert not trust_of(load_config(path)).believes(REPLAYER)  # nobody may
    path.write_text(CONFIG + "  facts: {override_role: [x]}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="override_role"):
        load_config(path)


def test_merge_keeps_equal_values_quietly_and_reports_conflicts_without_values() -> None:
    draft = PolicyInput(
        "2026-01-01T00:00:00Z", "push", ImageFacts(REF, labels={"a": "1", "b": "2"}), ()
    )
    request = _request(labels={"a": "1", "b": "secret-value"})
    merged, origins, dropped = merge_request_image(
        draft, request, {"image.labels": "registry.image"}, FactTrust()
    )
    assert merged.image.labels == {"a": "1", "b": "2"}
    assert origins == {"image.labels.a": "registry", "image.labels.b": "registry"}
    assert dropped == [DroppedFact("image.labels.b", CONFLICT)]
    assert "secret-value" not in repr(dropped)
