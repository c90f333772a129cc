"""The data checks of bundle validation: data files, schema, rule chains, inventory references.

Each check returns every problem it finds (never only the first), each naming the data file and
the path or rule, so an author fixes a bundle in one round.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from jsonschema import Draft202012Validator

# The bundle build's own merge: validation must see the data exactly as the build lays it out.
from sidecar.bundles.build import merge_data
from sidecar.bundles.chains import find_rule_problems
from sidecar.bundles.data_schema import DATA_SCHEMA

__all__ = ["DataProblem", "Inventory", "LoadedData", "check_data", "load_data"]

_DATA_NAMES = ("data.json", "data.yaml", "data.yml")
_VALIDATOR = Draft202012Validator(DATA_SCHEMA)
_ADMIN_ACTION = "Rollback"  # whoever may roll back can undo a bad bundle


@dataclass(frozen=True, slots=True)
class DataProblem:
    """A finding of a data check (check name, location, message)."""

    check: str
    location: str
    message: str


@dataclass(frozen=True, slots=True)
class Inventory:
    """What bundle data may refer to: registry names and, when configured, the known tenants."""

    registries: frozenset[str]
    tenants: frozenset[str]
    # The loaded inventory as conftest's rego/inventory policy reads a config file.
    document: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class LoadedData:
    """The merged data document and, per top-level data path, the file that set it."""

    document: dict[str, Any]
    origins: Mapping[str, str]

    def origin(self, path: Iterable[Any]) -> str:
        """Return the data file that holds ``path`` (the deepest file placed on its prefix)."""
        parts = [str(p) for p in path]
        for depth in range(len(parts), -1, -1):
            found = self.origins.get("/".join(parts[:depth]))
            if found:
                return found
        return "data.json"


def load_data(files: Mapping[str, bytes], problems: list[DataProblem]) -> LoadedData:
    """Merge every data file of the bundle at its directory's data path (parents first)."""
    document: dict[str, Any] = {}
    origins: dict[str, str] = {}
    names = [n for n in files if n.rsplit("/", 1)[-1] in _DATA_NAMES]
    for name in sorted(names, key=lambda n: (n.count("/"), n)):
        try:
            text = files[name].decode("utf-8")
            value = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
        # RecursionError: a document nested deeper than the parsers go.
        except (UnicodeDecodeError, ValueError, RecursionError, yaml.YAMLError) as exc:
            problems.append(DataProblem("data", name, f"not valid {_kind(name)}: {exc}"))
            continue
        parts = [p for p in name.split("/")[:-1] if p]
        if not parts and not isinstance(value, dict):
            problems.append(DataProblem("data", name, "data at the root must be an object"))
            continue
        for part in reversed(parts):
            value = {part: value}
        document = merge_data(document, value)
        origins["/".join(parts)] = name
    return LoadedData(document, origins)


def check_data(
    data: LoadedData, roots: Iterable[str], inventory: Inventory | None
) -> list[DataProblem]:
    """Return every schema, root, rule-chain, reference and lock-out problem of ``data``."""
    problems: list[DataProblem] = []
    allowed = set(roots)
    for key in sorted(data.document):
        if key not in allowed:
            problems.append(
                DataProblem(
                    "manifest",
                    data.origin([key]),
                    f"data root {key!r} is outside the bundle roots {sorted(allowed)}",
                )
            )
    for error in sorted(_VALIDATOR.iter_errors(data.document), key=lambda e: list(e.path)):
        path = ".".join(str(p) for p in error.absolute_path) or "(root)"
        problems.append(
            DataProblem("schema", f"{data.origin(error.absolute_path)}:{path}", error.message)
        )
    where = data.origin(["replication"])
    problems += [DataProblem("rules", where, p) for p in find_rule_problems(data.document)]
    if inventory is not None:
        problems += _references(data, inventory)
    problems += _lockout(data)
    return problems


def _references(data: LoadedData, inventory: Inventory) -> list[DataProblem]:
    """Registries and tenants named by rules, legacy rules and tenant data must exist."""
    problems: list[DataProblem] = []
    replication = data.document.get("replication")
    if not isinstance(replication, Mapping):
        return problems
    registries = sorted(inventory.registries)

    def registry(name: Any, path: list[Any], what: str) -> None:
        if inventory.registries and isinstance(name, str) and name and name not in registries:
            problems.append(
                DataProblem(
                    "references",
                    f"{data.origin(path)}:{'.'.join(str(p) for p in path)}",
                    f"{what} names registry {name!r}, which the inventory lacks "
                    f"(registries: {', '.join(registries)})",
                )
            )

    for path, rule in _rules(replication):
        for index, entry in enumerate(
            rule.get("deny", []) if isinstance(rule.get("deny"), list) else []
        ):
            if isinstance(entry, Mapping):
                registry(
                    entry.get("registry"),
                    [*path, "deny", index, "registry"],
                    f"rule {rule.get('id')!r}",
                )
    legacy = replication.get("legacy")
    legacy_rules = legacy.get("rules") if isinstance(legacy, Mapping) else None
    for index, rule in enumerate(legacy_rules if isinstance(legacy_rules, list) else []):
        if isinstance(rule, Mapping):
            for key in ("source_registry", "destination_registry"):
                path = ["replication", "legacy", "rules", index, key]
                registry(rule.get(key), path, f"legacy rule {rule.get('id')!r}")
    tenants = replication.get("tenants")
    if inventory.tenants and isinstance(tenants, Mapping):
        for tenant in sorted(tenants):
            if tenant not in inventory.tenants:
                problems.append(
                    DataProblem(
                        "references",
                        f"{data.origin(['replication', 'tenants', tenant])}:replication.tenants.{tenant}",
                        f"tenant {tenant!r} is not in the inventory's tenants "
                        f"(policy.tenancy.tenants: {', '.join(sorted(inventory.tenants))})",
                    )
                )
    return problems


def _rules(replication: Mapping[str, Any]) -> list[tuple[list[Any], Mapping[str, Any]]]:
    found: list[tuple[list[Any], Mapping[str, Any]]] = []
    sources: list[tuple[list[Any], Any]] = [(["replication", "rules"], replication.get("rules"))]
    tenants = replication.get("tenants")
    if isinstance(tenants, Mapping):
        for tenant, body in sorted(tenants.items()):
            if isinstance(body, Mapping):
                sources.append((["replication", "tenants", tenant, "rules"], body.get("rules")))
    for prefix, rules in sources:
        for index, rule in enumerate(rules if isinstance(rules, list) else []):
            if isinstance(rule, Mapping):
                found.append(([*prefix, index], rule))
    return found


def _lockout(data: LoadedData) -> list[DataProblem]:
    """Bindings that leave nobody able to roll back would make a bad bundle permanent."""
    system = data.document.get("system")
    if not isinstance(system, Mapping) or not isinstance(system.get("bindings"), Mapping):
        return []
    roles = system.get("roles")
    roles = roles if isinstance(roles, Mapping) else {}
    for binding in system["bindings"].values():
        names = binding.get("roles", []) if isinstance(binding, Mapping) else []
        for role in names if isinstance(names, list) else []:
            granted = roles.get(role)
            if isinstance(granted, list) and ({"*", _ADMIN_ACTION} & set(map(str, granted))):
                return []
    return [
        DataProblem(
            "rules",
            f"{data.origin(['system', 'bindings'])}:system.bindings",
            "no binding grants a role that may Rollback: publishing this would lock every "
            "admin out of the PolicyAdmin API",
        )
    ]


def _kind(name: str) -> str:
    return "JSON" if name.endswith(".json") else "YAML"
