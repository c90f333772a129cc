"""The ``policy:`` section: documented defaults, path resolution, tenancy and the example config."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.config import load_config
from sidecar.model.decision import TenantUsage

ROOT = Path(__file__).resolve().parents[2]


def test_no_config_means_every_documented_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    config = load_config(None)
    policy = config.policy
    assert config.inventory() == ()
    assert (policy.listen, policy.metrics_listen, policy.fail_mode) == (
        "127.0.0.1:50051",
        "127.0.0.1:9464",
        "closed",
    )
    assert (policy.opa.address, policy.opa.binary, policy.opa.port) == (None, None, 0)
    assert (policy.opa.timeout_ms, policy.opa.startup_timeout_s) == (500, 30.0)
    # The default bundle source is this checkout: it holds rego/ and bundles/default/.
    assert Path(policy.bundle.source_dir) == ROOT
    assert (ROOT / "rego").is_dir()
    assert (ROOT / "bundles" / "default").is_dir()
    # Built bundles go under state_dir, never beside the sources (site-packages when installed).
    assert Path(policy.bundle.output) == Path(policy.state_dir) / "bundles" / "bundle.tar.gz"
    assert policy.bundle.signing_key is None
    assert policy.bundle.revision is None
    assert (policy.limits.max_labels, policy.limits.max_label_key_bytes) == (256, 256)
    assert policy.limits.max_label_value_bytes == 4096
    assert (policy.decision_records.max_entries, policy.decision_records.ttl_s) == (10_000, 3600)
    assert policy.telemetry.service_name == "policy-sidecar"
    assert (policy.telemetry.log_level, policy.telemetry.log_format) == ("info", "json")
    assert policy.telemetry.otlp_endpoint is None
    assert Path(policy.state_dir) == Path.home() / ".local" / "state" / "policy-sidecar"


def test_state_dir_follows_xdg_state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert load_config(None).policy.state_dir == str(tmp_path / "policy-sidecar")


def test_relative_paths_resolve_against_the_config_files_directory(tmp_path: Path) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    (conf_dir / "sync.yaml").write_text(
        "source: {registry: a.io}\ndestination: {registry: b.io}\n"
        "images: [{repository: x, all_tags: true}]\n",
        encoding="utf-8",
    )
    (conf_dir / "sidecar.yaml").write_text(
        "policy:\n"
        "  state_dir: state\n"
        "  bundle: {source_dir: src, data_dirs: [data, /abs/data], output: out/b.tar.gz,\n"
        "           signing_key: keys/k.pem, verification_key: keys/k.pub}\n"
        "  legacy: {sync_configs: [sync.yaml]}\n",
        encoding="utf-8",
    )
    policy = load_config(conf_dir / "sidecar.yaml").policy
    assert policy.state_dir == str(conf_dir / "state")
    assert policy.bundle.source_dir == str(conf_dir / "src")
    assert policy.bundle.data_dirs == (str(conf_dir / "data"), "/abs/data")
    assert policy.bundle.output == str(conf_dir / "out" / "b.tar.gz")
    assert policy.bundle.signing_key == str(conf_dir / "keys" / "k.pem")
    assert policy.legacy.sync_configs[0].path == str(conf_dir / "sync.yaml")


def test_bundle_output_defaults_under_state_dir_not_the_source_dir(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "policy:\n  state_dir: /var/lib/policy-sidecar\n  bundle: {source_dir: /srv/policy}\n"
    )
    bundle = load_config(tmp_path / "c.yaml").policy.bundle
    assert bundle.output == "/var/lib/policy-sidecar/bundles/bundle.tar.gz"


def test_metrics_listen_can_be_disabled_and_opa_address_configured(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "policy:\n  metrics_listen: null\n"
        "  opa: {address: 'http://127.0.0.1:8181/', timeout_ms: 250,\n"
        "        extra_args: [--log-level, debug]}\n"
    )
    policy = load_config(tmp_path / "c.yaml").policy
    assert policy.metrics_listen == ""
    assert policy.opa.address == "http://127.0.0.1:8181"
    assert (policy.opa.timeout_ms, policy.opa.extra_args) == (250, ("--log-level", "debug"))


def test_tenancy_prefixes_and_usage(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "policy:\n  tenancy:\n    tenants: [acme, globex]\n"
        "    prefixes: {'acme/': acme, 'globex/': globex}\n"
        "    usage: {acme: {storage_used_bytes: 20, storage_limit_bytes: 10}}\n"
    )
    tenancy = load_config(tmp_path / "c.yaml").policy.tenancy
    assert tenancy.tenants == ("acme", "globex")
    assert dict(tenancy.prefixes) == {"acme/": "acme", "globex/": "globex"}
    assert tenancy.usage["acme"] == TenantUsage("acme", 20, 10)


def test_example_deploy_config_loads_with_a_realistic_inventory() -> None:
    config = load_config(ROOT / "deploy" / "config" / "example.yaml")
    facts = {f.name: f for f in config.inventory()}
    assert set(facts) >= {"ci", "prod-us", "prod-eu", "prod-eu-dr", "dev-us", "sandbox"}
    assert facts["prod-eu"].gdpr is True
    assert facts["prod-us"].gdpr is False
    assert (facts["prod-eu-dr"].role, facts["prod-eu-dr"].backs) == ("secondary", "prod-eu")
    assert facts["sandbox"].environment == "sandbox"
    assert config.policy.legacy.rules
    assert config.policy.tenancy.prefixes
    for data_dir in config.policy.bundle.data_dirs:
        assert Path(data_dir).is_dir()
