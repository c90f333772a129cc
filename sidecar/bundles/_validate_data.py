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
    data: LoadedData,
    roots: Iterable[str],
    inventory: Inventory | None,
    prefixes: Mapping[str, str] | None = None,
) -> list[DataProblem]:
    """Return every schema, root, rule-chain, reference, tenancy and lock-out problem of ``data``.

    ``prefixes`` is ``policy.tenancy.prefixes`` (repository prefix → tenant): a tenant's rules may
    only send images into repositories that tenant owns (see :func:`_tenant_destinations`).
    """
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
        message = error.message
        if error.validator == "not" and isinstance(error.schema, Mapping):
            # jsonschema words a failed "not" as the whole sub-schema; the schema says why.
            message = f"{error.instance!r}: {error.schema.get('$comment', 'not allowed here')}"
        problems.append(
            DataProblem("schema", f"{data.origin(error.absolute_path)}:{path}", message)
        )
    where = data.origin(["replication"])
    problems += [DataProblem("rules", where, p) for p in find_rule_problems(data.document)]
    if inventory is not None:
        problems += _references(data, inventory)
    if prefixes:
        problems += _tenant_destinations(data, prefixes)
    problems += _lockout(data)
    return problems


_PLACEHOLDERS = ("{repository}", "{tag}")


def _tenant_destinations(data: LoadedData, prefixes: Mapping[str, str]) -> list[DataProblem]:
    """A tenant rule's ``set.destination_repository`` must stay in that tenant's namespace.

    The repository a template can produce is known up to its first placeholder (``{repository}``
    or ``{tag}``): that literal head must start with one of the tenant's prefixes, and no prefix
    of another tenant may be reachable from it (the head lies in it, or it extends the head), so a
    nested prefix (``acme/shared/`` of another tenant under ``acme/``) cannot be written into
    either. A tenant without a configured prefix owns no namespace: its rules may set only
    destinations that no other tenant's prefix can own. ``.``/``..`` segments are refused.
    """
    replication = data.document.get("replication")
    tenants = replication.get("tenants") if isinstance(replication, Mapping) else None
    if not isinstance(tenants, Mapping):
        return []
    owned: dict[str, list[str]] = {}
    for prefix, owner in prefixes.items():
        owned.setdefault(owner, []).append(prefix)
    problems: list[DataProblem] = []
    for path, rule in _rules({"tenants": tenants}):
        tenant = str(path[2])  # ["replication", "tenants", <tenant>, "rules", <index>]
        settings = rule.get("set")
        destination = (
            settings.get("destination_repository") if isinstance(settings, Mapping) else None
        )
        if not isinstance(destination, str):
            continue  # unset (or a schema problem, reported by the schema check)
        own = sorted(owned.get(tenant, ()))
        reason = _destination_problem(destination, tenant, own, prefixes)
        if reason:
            where = [*path, "set", "destination_repository"]
            allowed = ", ".join(repr(p) for p in own) if own else "none configured"
            problems.append(
                DataProblem(
                    "tenancy",
                    f"{data.origin(where)}:{'.'.join(str(p) for p in where)}",
                    f"rule {rule.get('id')!r} of tenant {tenant!r} sets destination_repository "
                    f"{destination!r}, {reason} (allowed prefixes of {tenant!r} in "
                    f"policy.tenancy.prefixes: {allowed})",
                )
            )
    return problems


def _destination_problem(
    destination: str, tenant: str, own: list[str], prefixes: Mapping[str, str]
) -> str:
    """Return why ``destination`` (a rule template) escapes ``tenant``'s namespace, or ""."""
    cut = min((i for i in (destination.find(p) for p in _PLACEHOLDERS) if i >= 0), default=-1)
    head = destination if cut < 0 else destination[:cut]
    if destination.startswith("/") or any(
        s in (".", "..") for s in destination.replace("{", "/").replace("}", "/").split("/")
    ):
        return "which has '.' or '..' segments or a leading '/'"
    reasons = []
    if own and not any(head.startswith(p) for p in own):
        reasons.append("is outside the tenant's repository prefixes")
    # The repository belongs to its longest matching prefix (as the tenant resolver reads it);
    # a template may also reach any longer prefix that extends its literal head.
    matching = [p for p in prefixes if head.startswith(p)]
    longest = max(matching, key=len) if matching else None
    reachable = {longest} if longest is not None else set()
    if cut >= 0:
        reachable |= {p for p in prefixes if p.startswith(head)}
    foreign = sorted(p for p in reachable if p is not None and prefixes[p] != tenant)
    if foreign:
        owners = ", ".join(f"{p!r} of tenant {prefixes[p]!r}" for p in foreign)
        reasons.append(f"can reach another tenant's repositories ({owners})")
    return f"which {' and '.join(reasons)}" if reasons else ""


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
