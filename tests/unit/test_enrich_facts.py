"""StaticEnricher: the policy input a decision is made on, built from the request and the config."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sidecar.config import Config, load_config
from sidecar.enrich import Contribution, StaticEnricher, scan_from_labels
from sidecar.model.decision import (
    Caller,
    DecideRequest,
    ImageRef,
    PolicyInput,
    ScanFacts,
    TenantUsage,
)

CONFIG = """\
registries:
  - {name: ci, region: us-east-1, metadata: {environment: ci}}
  - {name: prod-eu, region: eu-west-1, metadata: {environment: production, gdpr: "true"}}
  - {name: prod-us, region: us-east-1, metadata: {environment: production}}
policy:
  tenancy:
    tenants: [acme, acme-secret, globex]
    prefixes: {"acme/": acme, "acme/secret/": acme-secret, "globex/": globex}
    usage: {globex: {storage_used_bytes: 5, storage_limit_bytes: 10}}
"""
FIXED = datetime(2026, 11, 28, 12, 30, 5, 123456, tzinfo=UTC)
PASSED = {"security.scan.status": "passed", "security.scan.completed-at": "2026-11-27T08:00:00Z"}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    (tmp_path / "sidecar.yaml").write_text(CONFIG, encoding="utf-8")
    return load_config(tmp_path / "sidecar.yaml")


def _request(repository: str = "team/app", **fields: object) -> DecideRequest:
    # A replaying caller: nothing here is observed, so only a caller holding an override role
    # has its stated facts believed (tests/unit/test_fact_trust.py covers everyone else).
    request = DecideRequest(
        image=ImageRef("ci", repository, "prod-1", "sha256:" + "a" * 64),
        caller=Caller("replayer", roles=("replay",)),
    )
    return dataclasses.replace(request, **fields)  # type: ignore[arg-type]


async def _enrich(config: Config, request: DecideRequest) -> PolicyInput:
    return await StaticEnricher(config, clock=lambda: FIXED).enrich(request)


async def test_input_carries_request_facts_inventory_and_the_clock(config: Config) -> None:
    request = _request(
        labels={"team": "web"},
        annotations={"org.opencontainers.image.source": "git"},
        created_at="2026-11-01T00:00:00Z",
        size_bytes=123,
        platforms=("linux/amd64",),
        event="reconcile",
        access={"eu-west-1": 7},
        caller=Caller("ci-bot", tenant="", roles=("replicator", "replay")),
    )
    doc = (await _enrich(config, request)).to_json()
    assert doc["now"] == "2026-11-28T12:30:05Z"
    assert doc["event"] == "reconcile"
    assert doc["image"]["labels"] == {"team": "web"}
    assert (doc["image"]["created_at"], doc["image"]["size_bytes"]) == ("2026-11-01T00:00:00Z", 123)
    assert doc["image"]["platforms"] == ["linux/amd64"]
    assert doc["access"] == {"eu-west-1": 7}
    assert doc["caller"] == {"subject": "ci-bot", "tenant": None, "roles": ["replicator", "replay"]}
    assert [r["name"] for r in doc["registries"]] == ["ci", "prod-eu", "prod-us"]
    assert doc["registries"][1]["environment"] == "prod"
    assert doc["registries"][1]["gdpr"] is True


async def test_pinned_now_from_the_request_wins_over_the_clock(config: Config) -> None:
    policy_input = await _enrich(config, _request(now="2025-01-02T03:04:05Z"))
    assert policy_input.now == "2025-01-02T03:04:05Z"


async def test_registry_health_from_the_request_overrides_the_static_default(
    config: Config,
) -> None:
    policy_input = await _enrich(config, _request(registry_health={"prod-eu": False}))
    health = {r.name: r.healthy for r in policy_input.registries}
    assert health == {"ci": True, "prod-eu": False, "prod-us": True}


async def test_scan_facts_come_from_labels(config: Config) -> None:
    labels = {**PASSED, "security.scan.critical": "0", "security.scan.high": "3"}
    scan = (await _enrich(config, _request(labels=labels))).image.scan
    assert scan == ScanFacts("passed", "2026-11-27T08:00:00Z", 0, 3, "label")


async def test_missing_counts_are_zero_and_no_status_means_no_scan(config: Config) -> None:
    assert (await _enrich(config, _request(labels=PASSED))).image.scan == ScanFacts(
        "passed", "2026-11-27T08:00:00Z", 0, 0, "label"
    )
    assert (await _enrich(config, _request(labels={"team": "web"}))).image.scan is None


@pytest.mark.parametrize(
    ("labels", "warning"),
    [
        ({**PASSED, "security.scan.status": "maybe"}, "is not passed or failed"),
        ({**PASSED, "security.scan.critical": "many"}, "security.scan.critical"),
        ({**PASSED, "security.scan.high": "-1"}, "security.scan.high"),
        ({**PASSED, "security.scan.completed-at": "yesterday"}, "not an RFC 3339 time"),
        ({"security.scan.status": "failed"}, "security.scan.completed-at"),
        ({"security.scan.critical": "2"}, "no security.scan.status label"),
    ],
)
async def test_invalid_scan_labels_mean_no_scan_and_a_warning(
    config: Config, labels: dict[str, str], warning: str
) -> None:
    enricher = StaticEnricher(config, clock=lambda: FIXED)
    policy_input, report = await enricher.enrich_with_report(_request(labels=labels))
    assert policy_input.image.scan is None
    assert [f.source for f in report.warnings] == ["labels.scan"]
    assert warning in report.warnings[0].message
    assert report.failures == ()
    assert scan_from_labels(labels)[0] is None


@pytest.mark.parametrize(
    ("repository", "labels", "tenant"),
    [
        ("acme/web", {}, "acme"),
        ("acme/secret/vault", {}, "acme-secret"),  # longest prefix wins
        ("acme/web", {"tenant": "globex"}, "globex"),  # the label beats the prefix
        ("team/app", {}, None),
        ("acmes/app", {}, None),
    ],
)
async def test_tenant_from_label_else_longest_prefix(
    config: Config, repository: str, labels: dict[str, str], tenant: str | None
) -> None:
    policy_input = await _enrich(config, _request(repository, labels=labels))
    assert policy_input.image.tenant == tenant


async def test_tenant_usage_from_request_else_configured_for_the_tenant(config: Config) -> None:
    configured = await _enrich(config, _request("globex/app"))
    assert configured.tenant == TenantUsage("globex", 5, 10)
    supplied = TenantUsage("globex", 50, 10)
    assert (await _enrich(config, _request("globex/app", tenant_usage=supplied))).tenant == supplied
    assert (await _enrich(config, _request("acme/app"))).tenant is None


class _Broken:
    name = "registry.referrers"

    async def contribute(self, request: DecideRequest, draft: PolicyInput) -> Contribution:
        raise ConnectionError("registry unreachable")


class _Slow:
    name = "registry.health"

    async def contribute(self, request: DecideRequest, draft: PolicyInput) -> Contribution:
        await asyncio.sleep(10)
        return Contribution(draft)


class _EcrScan:
    name = "ecr.scan"

    async def contribute(self, request: DecideRequest, draft: PolicyInput) -> Contribution:
        scan = ScanFacts("failed", "2026-11-28T00:00:00Z", critical=2, source="ecr")
        image = dataclasses.replace(draft.image, scan=scan)
        return Contribution(dataclasses.replace(draft, image=image))


async def test_failing_or_slow_sources_are_isolated_and_reported(config: Config) -> None:
    enricher = StaticEnricher(
        config, clock=lambda: FIXED, extra_sources=(_Broken(), _Slow()), source_timeout_s=0.05
    )
    policy_input, report = await enricher.enrich_with_report(_request(labels=PASSED))
    assert policy_input.image.scan is not None  # the static sources still ran
    assert {f.source: f.message for f in report.failures} == {
        "registry.referrers": "ConnectionError: registry unreachable",
        "registry.health": "timed out after 0.05 s",
    }
    assert report.applied == (
        "request.registry_health",
        "labels.scan",
        "tenancy.tenant",
        "tenancy.usage",
    )
    # enrich() (typing.Enricher) still answers: a missing fact degrades, never blocks.
    assert (await enricher.enrich(_request())).image.scan is None


async def test_an_earlier_source_takes_precedence_over_the_label_fallback(config: Config) -> None:
    enricher = StaticEnricher(config, clock=lambda: FIXED, extra_sources=(_EcrScan(),))
    scan = (await enricher.enrich(_request(labels=PASSED))).image.scan
    assert scan is not None
    assert (scan.source, scan.critical) == ("ecr", 2)
