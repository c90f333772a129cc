"""Freightliner rules and sync configs → ``data.replication.legacy``, as docs/policy.md shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sidecar.config import ReplicationRule, load_config, load_sync_config
from sidecar.fallback.legacy import glob_regex, legacy_rules_data

INVENTORY = """\
registries:
  - {name: ecr-prod, type: ecr, region: us-east-1}
  - {name: gcr-prod, type: gcr, region: us}
  - {name: hub, type: dockerhub, endpoint: "https://Registry-1.Docker.io/"}
  - {name: mirror, type: generic, endpoint: "harbor.example.com:8443"}
policy:
  legacy:
    rules:
      - SourceRegistry: ecr-prod
        SourceRepository: "team/*"
        DestinationRegistry: gcr-prod
        DestinationRepository: "mirror/$1"
        TagFilter: "v*"
        Schedule: "@hourly"
        ForceOverwrite: true
    sync_configs: [sync.yaml]
"""
SYNC = """\
source: {registry: registry-1.docker.io}
destination: {registry: "harbor.example.com:8443"}
images:
  - {repository: library/nginx, tags: [latest, "1.25"]}
  - {repository: "library/*", tag_regex: "^3\\\\.", destination_repository: "base/*"}
  - {repository: library/postgres, all_tags: true, destination_prefix: pg-,
     destination_suffix: -mirror, limit: 20}
"""


def _config_dir(tmp_path: Path) -> Path:
    (tmp_path / "sidecar.yaml").write_text(INVENTORY, encoding="utf-8")
    (tmp_path / "sync.yaml").write_text(SYNC, encoding="utf-8")
    return tmp_path


def test_a_replication_rule_becomes_the_documented_entry(tmp_path: Path) -> None:
    config = load_config(_config_dir(tmp_path) / "sidecar.yaml")
    data = legacy_rules_data(config.policy.legacy.rules, (), config.inventory())
    assert data == {
        "rules": [
            {
                "id": "legacy-0",
                "source_registry": "ecr-prod",
                "source_repository": "team/*",
                "source_regex": "^team/([^/]*)$",
                "destination_registry": "gcr-prod",
                "destination_repository": "mirror/$1",
                "tags": [],
                "tag_regex": "",
                "tag_filter": "v*",
                "include_tags": [],
                "exclude_tags": [],
                "destination_tag_prefix": "",
                "destination_tag_suffix": "",
            }
        ],
        "by_prefix": {"team": [0]},
        "unindexed": [],
    }


def test_rules_are_indexed_by_their_literal_first_segment() -> None:
    rules = [
        ReplicationRule("team/*", "prod", source_registry="ci"),
        ReplicationRule("*/app", "prod", source_registry="ci"),
        ReplicationRule("nginx", "prod", source_registry="ci"),
        ReplicationRule("te?m/x", "prod", source_registry="ci"),
        ReplicationRule("team/a/*", "prod", source_registry="ci"),
    ]
    index = legacy_rules_data(rules, ())
    assert index["by_prefix"] == {"team": [0, 4], "nginx": [2]}
    assert index["unindexed"] == [1, 3]


def test_sync_config_hosts_map_to_inventory_names_by_endpoint_host(tmp_path: Path) -> None:
    config = load_config(_config_dir(tmp_path) / "sidecar.yaml")
    rules = legacy_rules_data(
        config.policy.legacy.rules, config.policy.legacy.sync_configs, config.inventory()
    )["rules"]
    assert [r["id"] for r in rules] == ["legacy-0", "legacy-1", "legacy-2", "legacy-3"]
    nginx, library, postgres = rules[1:]
    # Scheme, case and trailing slash of the endpoint do not matter; the port does.
    assert (nginx["source_registry"], nginx["destination_registry"]) == ("hub", "mirror")
    assert nginx["tags"] == ["latest", "1.25"]
    assert nginx["source_regex"] == "^library/nginx$"
    # Freightliner's "*" in a destination becomes the matching $n.
    assert (library["destination_repository"], library["tag_regex"]) == ("base/$1", r"^3\.")
    # destination_prefix/suffix apply to tags: "Tags will be: pg-latest".
    assert (postgres["destination_tag_prefix"], postgres["destination_tag_suffix"]) == (
        "pg-",
        "-mirror",
    )
    assert postgres["tags"] == []
    assert postgres["tag_regex"] == ""


def test_unmatched_hosts_stay_as_the_registry_name(tmp_path: Path) -> None:
    sync = load_sync_config(_config_dir(tmp_path) / "sync.yaml")
    assert (sync.source_registry, sync.destination_registry) == (
        "registry-1.docker.io",
        "harbor.example.com:8443",
    )
    rules = legacy_rules_data((), [tmp_path / "sync.yaml"])["rules"]
    assert rules[0]["destination_registry"] == "harbor.example.com:8443"


def test_sync_config_paths_resolve_hosts_with_registry_configs(tmp_path: Path) -> None:
    config = load_config(_config_dir(tmp_path) / "sidecar.yaml")
    by_path = legacy_rules_data((), [str(tmp_path / "sync.yaml")], config.registries)["rules"]
    assert by_path[0]["source_registry"] == "hub"


def test_rules_are_numbered_before_sync_config_images() -> None:
    rules = [
        ReplicationRule(source_repository=f"r{i}/*", destination_registry="d") for i in range(11)
    ]
    data = legacy_rules_data(rules, ())["rules"]
    assert [r["id"] for r in data] == [f"legacy-{i}" for i in range(11)]


def test_destination_equal_to_the_source_pattern_is_kept_for_keep_the_name() -> None:
    rule = ReplicationRule(
        source_repository="keep/*", destination_registry="d", destination_repository="keep/*"
    )
    assert legacy_rules_data([rule], ())["rules"][0]["destination_repository"] == "keep/*"


@pytest.mark.parametrize(
    ("glob", "regex", "captures"),
    [
        ("team/app", "^team/app$", 0),
        ("a.b/c+d", r"^a\.b/c\+d$", 0),
        ("a?c", r"^a\?c$", 0),  # no "*": Freightliner compares exactly
        ("team/*", "^team/([^/]*)$", 1),
        ("*/*-svc", r"^([^/]*)/([^/]*)\-svc$", 2),
        ("app?/*", "^app[^/]/([^/]*)$", 1),
        ("app[0-9]/*", "^app[0-9]/([^/]*)$", 1),
        ("app[^x]/*", "^app[^x]/([^/]*)$", 1),
        (r"a\*b/*", r"^a\*b/([^/]*)$", 1),
    ],
)
def test_source_regex_from_glob(glob: str, regex: str, captures: int) -> None:
    assert glob_regex(glob) == (regex, captures)
    re.compile(regex)


@pytest.mark.parametrize("bad", ["a/[*", "a/*\\", "a/[]*", "a/[-z]*"])
def test_globs_filepath_match_rejects_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        glob_regex(bad)
