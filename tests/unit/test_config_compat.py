"""Freightliner's own config files load unchanged, and its spelling variants mean the same thing."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.config import Config, load_config
from sidecar.errors import NotFound
from sidecar.fallback.legacy import legacy_rules_data
from tests.support.compat import compat_dir

COMPAT = compat_dir()


def _load(name: str) -> Config:
    return load_config(COMPAT / name)


def test_every_freightliner_example_file_loads() -> None:
    names = sorted(p.name for p in COMPAT.glob("*.yaml"))
    assert names == [
        "config-with-registries.yaml",
        "config_example.yaml",
        "registries.yaml",
        "sync-config.yaml",
    ]
    for name in names:
        assert _load(name).source.endswith(name)


def test_registries_yaml_reads_fields_tls_and_normalised_metadata() -> None:
    config = _load("registries.yaml")
    assert len(config.registries) == 12
    assert config.default_source == "ecr-production"
    assert config.default_destination == "gcr-production"
    harbor = config.registry("harbor-internal")
    assert harbor.facts.environment == "prod"  # metadata says "production"
    assert harbor.tls.ca_file == "/path/to/ca.crt"
    assert harbor.tls.cert_file == "/path/to/client.crt"
    assert harbor.endpoint == "https://harbor.company.com"
    assert harbor.host == "harbor.company.com"
    assert (harbor.timeout_s, harbor.retry_attempts) == (60, 5)
    assert harbor.metadata["team"] == "platform"
    ecr = config.registry("ecr-production")
    assert (ecr.type, ecr.region, ecr.account_id, ecr.auth.type) == (
        "ecr",
        "us-east-1",
        "123456789012",
        "aws",
    )
    assert ecr.facts.region == "us-east-1"
    assert config.registry("secure-registry").auth.use_secrets_manager is True


def test_secrets_stay_out_of_repr() -> None:
    private = _load("registries.yaml").registry("dockerhub-private")
    assert private.auth.password == "mypassword"
    assert "mypassword" not in repr(private)


def test_config_with_registries_reads_the_nested_camelcase_form() -> None:
    config = _load("config-with-registries.yaml")
    assert [r.name for r in config.registries][:3] == ["ecr-prod", "ecr-staging", "gcr-prod"]
    assert (config.default_source, config.default_destination) == ("ecr-prod", "gcr-prod")
    local = config.registry("local-dev")
    assert local.endpoint == "localhost:5000"
    assert local.insecure is True
    assert (local.timeout_s, local.retry_attempts) == (30, 3)
    assert local.facts.environment == "dev"  # "development"
    assert config.registry("ecr-prod").account_id == "123456789012"  # accountID
    assert config.registry("ecr-staging").auth.role_arn.endswith("role/FreightlinerRole")
    assert config.registry("gcr-prod").auth.credentials_file == "/etc/gcp/service-account.json"
    harbor = config.registry("harbor-prod")
    assert harbor.tls.ca_file == "/etc/ssl/certs/harbor-ca.pem"  # caFile
    assert harbor.tls.insecure_skip_verify is False
    assert harbor.facts.environment == "prod"
    assert config.registry("dockerhub").facts.environment == "public"  # kept as written
    assert config.registry("artifactory").tls.key_file.endswith("artifactory-client-key.pem")


def test_inventory_has_policy_defaults_where_freightliner_says_nothing() -> None:
    facts = {f.name: f for f in _load("config-with-registries.yaml").inventory()}
    ghcr = facts["ghcr"]
    assert (ghcr.environment, ghcr.region, ghcr.gdpr, ghcr.role, ghcr.backs) == (
        "",
        "",
        False,
        "primary",
        None,
    )
    assert (ghcr.healthy, ghcr.tenants, ghcr.egress_cost_per_gb) == (True, (), 0.0)


def test_config_example_without_registries_gives_an_empty_inventory_and_defaults() -> None:
    config = _load("config_example.yaml")
    assert config.inventory() == ()
    assert config.policy == load_config(None).policy


def test_sync_config_loads_as_legacy_rules_without_inventory() -> None:
    config = _load("sync-config.yaml")
    assert config.inventory() == ()
    (sync,) = config.policy.legacy.sync_configs
    assert (sync.source_registry, sync.destination_registry) == (
        "registry-1.docker.io",
        "my-registry.example.com",
    )
    assert len(sync.images) == 8
    rules = legacy_rules_data((), config.policy.legacy.sync_configs)["rules"]
    assert [r["id"] for r in rules] == [f"legacy-{i}" for i in range(8)]
    postgres = next(r for r in rules if r["source_repository"] == "library/postgres")
    assert postgres["destination_tag_prefix"] == "pg-"
    assert postgres["tags"] == []
    assert postgres["tag_regex"] == ""
    redis = next(r for r in rules if r["source_repository"] == "library/redis")
    assert (redis["tag_regex"], redis["destination_repository"]) == (r"^7\..*", "cache/redis")


SNAKE = """\
registries:
  - name: eu
    type: ecr
    account_id: "1"
    region: eu-west-1
    retry_attempts: 2
    auth: {type: aws, role_arn: arn:x, credentials_file: /c}
    tls: {insecure_skip_verify: true, ca_file: /ca}
    metadata: {environment: production, gdpr: "true", egress_cost_per_gb: "0.5"}
  - name: eu-dr
    metadata: {role: secondary, backs: eu, tenants: "acme, globex"}
policy:
  metrics_listen: ""
  decision_records: {max_entries: 5, ttl_s: 9}
  legacy:
    rules:
      - {source_registry: eu, source_repository: "a/*", destination_registry: eu-dr,
         destination_repository: "m/$1", tag_filter: "v*", include_tags: [v1*]}
"""

CAMEL = """\
registries:
  - name: eu
    type: ecr
    accountID: "1"
    region: eu-west-1
    retryAttempts: 2
    auth: {type: aws, roleARN: arn:x, credentialsFile: /c}
    tls: {insecureSkipVerify: true, caFile: /ca}
    metadata: {environment: production, gdpr: true, egressCostPerGb: 0.5}
  - name: eu-dr
    metadata: {role: secondary, backs: eu, tenants: [acme, globex]}
policy:
  metricsListen: ""
  decisionRecords: {maxEntries: 5, ttlS: 9}
  legacy:
    rules:
      - {SourceRegistry: eu, SourceRepository: "a/*", DestinationRegistry: eu-dr,
         DestinationRepository: "m/$1", TagFilter: "v*", IncludeTags: [v1*]}
"""


def test_camelcase_and_pascalcase_mean_the_same_as_snake_case(tmp_path: Path) -> None:
    (tmp_path / "snake.yaml").write_text(SNAKE, encoding="utf-8")
    (tmp_path / "camel.yaml").write_text(CAMEL, encoding="utf-8")
    snake, camel = load_config(tmp_path / "snake.yaml"), load_config(tmp_path / "camel.yaml")
    assert snake.inventory() == camel.inventory()
    assert snake.policy == camel.policy
    eu = camel.registry("eu")
    assert (eu.account_id, eu.retry_attempts, eu.auth.role_arn, eu.tls.ca_file) == (
        "1",
        2,
        "arn:x",
        "/ca",
    )
    assert (eu.facts.environment, eu.facts.gdpr, eu.facts.egress_cost_per_gb) == ("prod", True, 0.5)
    dr = camel.registry("eu-dr").facts
    assert (dr.role, dr.backs, dr.tenants) == ("secondary", "eu", ("acme", "globex"))
    assert camel.policy.metrics_listen == ""
    assert camel.policy.legacy.rules[0].include_tags == ("v1*",)


def test_environment_references_expand_and_unset_ones_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIDECAR_TEST_SVC", "replicator")
    monkeypatch.delenv("SIDECAR_TEST_UNSET", raising=False)
    (tmp_path / "c.yaml").write_text(
        "registries:\n  - name: r\n    endpoint: ${SIDECAR_TEST_UNSET}\n"
        "policy:\n  telemetry: {service_name: '${SIDECAR_TEST_SVC}-sidecar'}\n",
        encoding="utf-8",
    )
    config = load_config(tmp_path / "c.yaml")
    assert config.policy.telemetry.service_name == "replicator-sidecar"
    assert config.registry("r").endpoint == "${SIDECAR_TEST_UNSET}"


def test_unknown_registry_lookup_is_not_found() -> None:
    with pytest.raises(NotFound, match="nope"):
        _load("registries.yaml").registry("nope")
