"""Every invalid config is a ConfigError naming the file, the dotted key and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.config import load_config
from sidecar.errors import ConfigError

SYNC_HEAD = "source: {registry: a.io}\ndestination: {registry: b.io}\nimages:\n"

CASES = [
    # (config text, key named, problem fragment, line of the bad value; None: no line)
    (
        "registries:\n  - name: a\n    metadata: {gdpr: perhaps}\n",
        "registries[0].metadata.gdpr",
        "expected true or false",
        3,
    ),
    (
        "registries:\n  registries:\n    - name: a\n    - name: b\n      metadata: {gdpr: 3}\n",
        "registries.registries[1].metadata.gdpr",
        "expected true or false",
        5,
    ),
    ("registries:\n  - name: a\n  - name: a\n", "registries[1].name", "duplicate registry name", 3),
    ("registries:\n  - type: ecr\n", "registries[0]", "needs a name", 2),
    ("registries: {registries: 7}\n", "registries.registries", "expected a list", 1),
    (
        "registries:\n  - name: a\n    metadata: {role: tertiary}\n",
        "registries[0].metadata.role",
        "'tertiary' is not one of primary, secondary",
        3,
    ),
    (
        "registries:\n  - name: a\n    metadata: {role: secondary, backs: ghost}\n",
        "registries[0].metadata.backs",
        "names no registry",
        3,
    ),
    (
        "registries:\n  - name: a\n    metadata: {egress_cost_per_gb: cheap}\n",
        "registries[0].metadata.egress_cost_per_gb",
        "expected a number",
        3,
    ),
    (
        "registries:\n  - name: a\n    metadata: {egress_cost_per_gb: -1}\n",
        "registries[0].metadata.egress_cost_per_gb",
        "at least 0",
        3,
    ),
    ("registries:\n  - name: a\n    timeout: soon\n", "registries[0].timeout", "duration", 3),
    (
        "registries:\n  - name: a\n    accountID: '1'\n    account_id: '2'\n",
        "registries[0].account_id",
        "given twice",
        4,
    ),
    (
        "registries:\n  - name: a\n    metadata: {tenants: [acme, initech]}\n"
        "policy:\n  tenancy: {tenants: [acme]}\n",
        "registries[0].metadata.tenants",
        "unknown tenant 'initech'",
        3,
    ),
    ("policy:\n  listne: 127.0.0.1:1\n", "policy.listne", "did you mean 'listen'", 2),
    ("policy:\n  opa: {timout_ms: 5}\n", "policy.opa.timout_ms", "did you mean 'timeout_ms'", 2),
    # Regression (deep fuzz): a bound broken by a numeric string crashed the error's formatting.
    ("policy:\n  opa: {timeout_ms: '0'}\n", "policy.opa.timeout_ms", "must be at least 1, got 0", 2),
    ("policy:\n  opa: {timeout_ms: 0}\n", "policy.opa.timeout_ms", "at least 1", 2),
    ("policy:\n  opa: {address: 'localhost:8181'}\n", "policy.opa.address", "http(s)://", 2),
    ("policy:\n  opa: {port: 70000}\n", "policy.opa.port", "at most 65535", 2),
    ("policy:\n  listen: localhost\n", "policy.listen", "HOST:PORT", 2),
    (
        "policy:\n  fail_mode: open\n",
        "policy.fail_mode",
        "not one of closed, legacy, last-known",
        2,
    ),
    ("policy:\n  telemetry: {log_format: xml}\n", "policy.telemetry.log_format", "not one of", 2),
    ("policy:\n  telemetry: {log_level: verbose}\n", "policy.telemetry.log_level", "not one of", 2),
    (
        "policy:\n  limits: {max_labels: lots}\n",
        "policy.limits.max_labels",
        "expected an integer",
        2,
    ),
    ("policy:\n  decision_records: {ttl_s: 0}\n", "policy.decision_records.ttl_s", "at least", 2),
    ("policy:\n  bundle: {data_dirs: data}\n", "policy.bundle.data_dirs", "expected a list", 2),
    (
        "policy:\n  tenancy: {tenants: [acme], prefixes: {'x/': globex}}\n",
        "policy.tenancy.prefixes.x/",
        "unknown tenant 'globex'",
        2,
    ),
    (
        "policy:\n  tenancy: {usage: {acme: {storage_used_bytes: -1}}}\n",
        "policy.tenancy.usage.acme.storage_used_bytes",
        "at least 0",
        2,
    ),
    (
        "policy:\n  tenancy: {usage: {acme: {storage_limit: 1}}}\n",
        "policy.tenancy.usage.acme.storage_limit",
        "did you mean 'storage_limit_bytes'",
        2,
    ),
    (
        "policy:\n  legacy: {rules: [{destination_registry: x}]}\n",
        "policy.legacy.rules[0].source_repository",
        "required",
        2,
    ),
    (
        "policy:\n  legacy: {rules: [{source_repository: 'a/*', destination_registry: x,"
        " destination_repository: 'b/$2'}]}\n",
        "policy.legacy.rules[0].destination_repository",
        "uses $2",
        2,
    ),
    (
        "policy:\n  legacy: {rules: [{source_repository: 'a/[*', destination_registry: x}]}\n",
        "policy.legacy.rules[0].source_repository",
        "unclosed '['",
        2,
    ),
    (
        "policy:\n  legacy: {rules: [{source_repository: a, destination_registry: x,"
        " tag_filter: 'v{1,2}*'}]}\n",
        "policy.legacy.rules[0].tag_filter",
        "not supported in tag globs",
        2,
    ),
    (
        "policy:\n  legacy: {rules: [{source_repository: a, destination_registry: x, tagz: v}]}\n",
        "policy.legacy.rules[0].tagz",
        "unknown key",
        2,
    ),
    (
        "registries:\n  - name: a\npolicy:\n  legacy: {rules: [{source_repository: r,"
        " destination_registry: gcr}]}\n",
        "policy.legacy.rules[0].destination_registry",
        "names no registry",
        4,
    ),
    (
        "policy:\n  legacy: {sync_configs: [missing.yaml]}\n",
        "policy.legacy.sync_configs[0]",
        "does not exist",
        2,
    ),
    (
        SYNC_HEAD + "  - {repository: a, semver_constraint: '>=1.0'}\n",
        "images[0].semver_constraint",
        "not supported as policy data yet",
        4,
    ),
    (SYNC_HEAD + "  - {repository: a, latest_n: 3}\n", "images[0].latest_n", "tag list", 4),
    (
        SYNC_HEAD + "  - {repository: a, tags: [v1], all_tags: true}\n",
        "images[0]",
        "exactly one of",
        4,
    ),
    (SYNC_HEAD + "  - {repository: a}\n", "images[0]", "exactly one of", 4),
    (
        SYNC_HEAD + "  - {repository: a, tag_regex: '(unclosed'}\n",
        "images[0].tag_regex",
        "not a valid regular expression",
        4,
    ),
    (SYNC_HEAD + "  - {repository: a, tags: [1.10]}\n", "images[0].tags[0]", "quote it", 4),
    (
        "destination: {registry: b.io}\nimages: [{repository: a, all_tags: true}]\n",
        "source",
        "required in a sync config",
        None,
    ),
    (
        "images: [{repository: a, all_tags: true}]\nregistries: []\n",
        "(document)",
        "sync-config keys",
        None,
    ),
    ("registries: [\n", "line 2", "not valid YAML", None),
    ("policy: {}\npolicy: {}\n", "line 2", "appears twice", None),
    ("- just\n- a list\n", "(document)", "expected a mapping", None),
]


@pytest.mark.parametrize(("text", "key", "problem", "line"), CASES, ids=[c[1] for c in CASES])
def test_invalid_config_names_file_key_and_problem(
    tmp_path: Path, text: str, key: str, problem: str, line: int | None
) -> None:
    path = tmp_path / "sidecar.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == key
    assert caught.value.line == line
    where = f"{path}:{line}" if line else str(path)
    assert str(caught.value).startswith(f"{where}: {key}: ")
    assert problem in str(caught.value)


def test_errors_inside_a_referenced_sync_config_name_that_file(tmp_path: Path) -> None:
    sync = tmp_path / "sync.yaml"
    sync.write_text(SYNC_HEAD + "  - {repository: a, latest_n: 2}\n", encoding="utf-8")
    main = tmp_path / "sidecar.yaml"
    main.write_text("policy:\n  legacy: {sync_configs: [sync.yaml]}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(main)
    assert str(caught.value).startswith(f"{sync}:4: images[0].latest_n: ")


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
