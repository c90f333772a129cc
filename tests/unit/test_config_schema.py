"""The config's JSON Schema: docs/config-schema.json is current and accepts every shipped config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from sidecar.cli import main
from tests.support.compat import COMPAT_FILES, compat_dir

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "config-schema.json"
SHIPPED = [
    *sorted((ROOT / "deploy" / "config").glob("*.yaml")),
    ROOT / "tests" / "cases" / "sidecar.yaml",
    *(compat_dir() / name for name in COMPAT_FILES),
]


def _schema_text(capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["config", "schema"]) == 0
    return capsys.readouterr().out


@pytest.fixture
def validator(capsys: pytest.CaptureFixture[str]) -> jsonschema.Draft202012Validator:
    schema = json.loads(_schema_text(capsys))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_schema_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    fresh = _schema_text(capsys)
    assert COMMITTED.read_text(encoding="utf-8") == fresh, (
        "docs/config-schema.json is stale: policy-sidecar config schema > docs/config-schema.json"
    )


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_schema_accepts_every_shipped_config(
    validator: jsonschema.Draft202012Validator, path: Path
) -> None:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    problems = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
    assert problems == []


def test_example_configs_point_editors_at_the_schema() -> None:
    for path in (ROOT / "deploy" / "config").glob("*.yaml"):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=../../docs/config-schema.json", path


ACCEPTED: list[Any] = [
    {"registries": [{"name": "a", "accountID": 1, "roleARN": "x", "customField": True}]},
    {"registries": {"defaultSource": "a", "registries": [{"name": "a"}]}, "ecr": {"x": 1}},
    {"policy": {"opa": {"timeoutMs": 5, "address": None}, "health": {"interval_s": "30s"}}},
]
REFUSED: list[Any] = [
    {"policy": {"listne": "127.0.0.1:1"}},
    {"policy": {"opa": {"timeout_ms": 0}}},
    {"policy": {"fail_mode": "open"}},
    {"registries": [{"type": "ecr"}]},
]


@pytest.mark.parametrize("doc", ACCEPTED)
def test_schema_allows_freightliner_keys_and_camel_case(
    validator: jsonschema.Draft202012Validator, doc: Any
) -> None:
    assert list(validator.iter_errors(doc)) == []


@pytest.mark.parametrize("doc", REFUSED)
def test_schema_refuses_what_the_loader_refuses(
    validator: jsonschema.Draft202012Validator, doc: Any
) -> None:
    assert list(validator.iter_errors(doc)) != []
