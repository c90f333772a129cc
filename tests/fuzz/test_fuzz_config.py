"""Fuzzed config files: ``load_config`` loads them or raises ConfigError naming a key — nothing else.

Three sources: arbitrary bytes, arbitrary YAML trees shaped like our sections, and random
mutations (a value replaced, a key dropped or misspelt, an entry duplicated) of the real example
configs an operator starts from.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sidecar.config import Config, PolicySettings, load_config
from sidecar.errors import ConfigError
from tests.support.fuzz import ROOT, examples, nasty_text, urlish

EXAMPLES = (
    ROOT / "deploy" / "config" / "example.yaml",
    *sorted((ROOT / "tests" / "fixtures" / "compat" / "freightliner").glob("*.yaml")),
)
# Keys of our sections and Freightliner's, so generated trees reach past the top level.
KEYS = (
    "registries", "policy", "name", "type", "endpoint", "region", "metadata", "environment",
    "gdpr", "role", "backs", "tenants", "egress_cost_per_gb", "auth", "tls", "account_id",
    "project", "insecure", "opa", "address", "timeout_ms", "bundle", "data_dirs", "replication",
    "workers", "store", "webhook", "listen", "secret", "legacy", "rules", "sync_configs",
    "source_registry", "source_repository", "destination_registry", "destination_repository",
    "tag_filter", "source", "destination", "images", "tags", "tenancy", "prefixes", "usage",
    "fail_mode", "limits", "telemetry", "decision_records", "state_dir", "health", "serve",
    "sensitive", "default_source", "camelCase", "replicateWorkers", "url", "to", "endpoint_url",
    "kms_endpoint_url", "verification_key", "signing_key", "registry",
)  # fmt: skip

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    nasty_text,
    urlish,
)
_keys = st.one_of(st.sampled_from(KEYS), nasty_text, st.integers(-3, 3), st.booleans())
_trees = st.recursive(
    _scalars,
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(_keys, kids, max_size=5)),
    max_leaves=25,
)


def _load(directory: Path, text: str | bytes) -> Config | ConfigError:
    path = directory / "config.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    try:
        return load_config(path)
    except ConfigError as exc:
        # The message is "<file>: <dotted key>: <problem>"; the key names where to look.
        assert exc.key, exc.message
        assert f"{exc.key}: " in exc.message, exc.message
        return exc


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory the fuzzed config files are written to (one file, rewritten per example)."""
    return tmp_path_factory.mktemp("fuzz-config")


@settings(max_examples=examples(60))
@given(raw=st.one_of(st.binary(max_size=300), nasty_text.map(str.encode)))
@example(raw=b"\xff\xfe not utf-8")
@example(raw=b"a: [1, 2\n")
@example(raw=b"a: 1\na: 2\n")
def test_arbitrary_bytes_load_or_raise_config_error(workdir: Path, raw: bytes) -> None:
    _load(workdir, raw)


@settings(max_examples=examples(150))
@given(top=st.dictionaries(st.sampled_from(KEYS), _trees, max_size=4))
def test_arbitrary_yaml_trees_load_or_raise_config_error(
    workdir: Path, top: dict[Any, Any]
) -> None:
    _load(workdir, yaml.safe_dump(top, allow_unicode=True))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``node`` (mapping keys and list indexes)."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _mutate(doc: Any, path: tuple[Any, ...], how: str, value: Any) -> Any:
    out = copy.deepcopy(doc)
    *parents, last = path
    holder = out
    for step in parents:
        holder = holder[step]
    if how == "replace":
        holder[last] = value
    elif how == "drop":
        del holder[last]
    elif how == "rename" and isinstance(holder, dict):
        renamed = "".join(w.capitalize() if i else w for i, w in enumerate(str(last).split("_")))
        holder[renamed if renamed != last else f"{last}x"] = holder.pop(last)
    elif how == "duplicate" and isinstance(holder, list):
        holder.append(copy.deepcopy(holder[last]))
    return out


@st.composite
def mutated_examples(draw: st.DrawFn) -> tuple[str, str]:
    """(example file name, YAML text of that file with one to three mutations)."""
    source = draw(st.sampled_from(EXAMPLES))
    doc = yaml.safe_load(source.read_text(encoding="utf-8"))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        how = draw(st.sampled_from(["replace", "replace", "drop", "rename", "duplicate"]))
        doc = _mutate(doc, path, how, draw(_trees))
    return source.name, yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


@pytest.mark.parametrize("source", EXAMPLES, ids=lambda p: p.name)
def test_the_example_configs_load_unchanged(workdir: Path, source: Path) -> None:
    text = yaml.safe_dump(yaml.safe_load(source.read_text(encoding="utf-8")))
    assert isinstance(_load(workdir, text), Config)


def _policy_paths(obj: Any, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every leaf key of the ``policy:`` section, read off the settings dataclasses themselves."""
    found: list[tuple[str, ...]] = []
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        path = (*prefix, field.name)
        found += _policy_paths(value, path) if dataclasses.is_dataclass(value) else [path]
    return found


POLICY_PATHS = _policy_paths(PolicySettings(), ("policy",))
# Per-registry keys and inventory facts (docs/configuration.md), set on a registry of the example.
REGISTRY_KEYS = (
    "name", "type", "endpoint", "region", "account_id", "project", "auth", "tls", "insecure",
    "timeout", "retry_attempts", "metadata", "environment", "gdpr", "role", "backs", "tenants",
    "egress_cost_per_gb",
)  # fmt: skip
_HOSTPORT = st.builds(
    lambda host, port: f"{host}:{port}",
    st.sampled_from(["127.0.0.1", "[::1]", "", "host", "0.0.0.0", "[x"]),  # noqa: S104 - input
    st.sampled_from(["0", "80", "65536", "-1", "x", ""]),
)
_values = st.one_of(urlish, _HOSTPORT, _scalars, _trees)


@st.composite
def fuzzed_settings(draw: st.DrawFn) -> dict[str, Any]:
    """The deploy example with one to four ``policy:``/registry settings set to fuzzed values."""
    doc = yaml.safe_load(EXAMPLES[0].read_text(encoding="utf-8"))
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            path: tuple[Any, ...] = draw(st.sampled_from(POLICY_PATHS))
        else:
            index = draw(st.integers(0, len(doc["registries"]) - 1))
            path = ("registries", index, draw(st.sampled_from(REGISTRY_KEYS)))
        holder = doc
        for step in path[:-1]:
            if not isinstance(holder.get(step) if isinstance(holder, dict) else None, (dict, list)):
                holder[step] = {}
            holder = holder[step]
        holder[path[-1]] = draw(_values)
    return doc


@settings(max_examples=examples(250))
@given(doc=fuzzed_settings())
# Regressions: a NUL in a path, an unknown ~user, a URL urllib cannot split were not ConfigError.
@example(doc={"policy": {"state_dir": "a\x00b"}})
@example(doc={"policy": {"bundle": {"signing_key": "~no-such-user-x/key.pem"}}})
@example(doc={"policy": {"opa": {"address": "http://[x"}}})
@example(doc={"policy": {"bundle": {"service": {"url": "http://[x/bundles/a"}}}})
@example(doc={"source": {"registry": "[b"}, "destination": {"registry": "c"},
              "images": [{"repository": "x/y", "tags": ["v1"]}]})  # fmt: skip
def test_fuzzed_settings_load_or_raise_config_error(workdir: Path, doc: dict[str, Any]) -> None:
    _load(workdir, yaml.safe_dump(doc, allow_unicode=True))


@settings(max_examples=examples(250))
@given(mutated=mutated_examples())
def test_mutated_example_configs_load_or_raise_config_error(
    workdir: Path, mutated: tuple[str, str]
) -> None:
    _load(workdir, mutated[1])
