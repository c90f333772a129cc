"""Checks the explicit rules of bundle data: unique ids, known ``chain`` targets, no chain cycles.

Rego walks chains as data (it has no recursion), so a cycle would not fail at evaluation: it would
quietly pull every rule of the loop into each decision. DESIGN §3.3 rejects such a bundle at build
time instead, before it can ever be served.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["find_rule_problems"]


@dataclass(frozen=True, slots=True)
class _Rule:
    id: str
    where: str
    chain: tuple[str, ...]


def find_rule_problems(data: Mapping[str, Any]) -> list[str]:
    """Return every problem of the rules in ``data`` (the bundle's root data document).

    Rules are ``data.replication.rules`` plus ``data.replication.tenants[*].rules``; ids share one
    namespace. Reports malformed rules, duplicate ids, chains to unknown ids and every cycle found
    by a depth-first walk in id order (each as ``rule chain cycle: a -> b -> a``).
    """
    problems: list[str] = []
    rules = _collect(data, problems)
    by_id: dict[str, _Rule] = {}
    for rule in rules:
        first = by_id.setdefault(rule.id, rule)
        if first is not rule:
            problems.append(f"duplicate rule id {rule.id!r} ({first.where} and {rule.where})")
    for rule in rules:
        for target in rule.chain:
            if target not in by_id:
                problems.append(
                    f"rule {rule.id!r} ({rule.where}) chains to unknown rule {target!r}"
                )
    graph = {
        rule_id: sorted({t for t in rule.chain if t in by_id}) for rule_id, rule in by_id.items()
    }
    problems.extend(f"rule chain cycle: {' -> '.join(cycle)}" for cycle in _cycles(graph))
    return problems


def _collect(data: Mapping[str, Any], problems: list[str]) -> list[_Rule]:
    replication = data.get("replication")
    if not isinstance(replication, Mapping):
        return []
    sources: list[tuple[str, Any]] = [("replication.rules", replication.get("rules"))]
    tenants = replication.get("tenants")
    if tenants is not None and not isinstance(tenants, Mapping):
        problems.append("replication.tenants must be an object keyed by tenant id")
    elif tenants:
        for tenant_id in sorted(tenants):
            tenant = tenants[tenant_id]
            where = f"replication.tenants.{tenant_id}"
            if not isinstance(tenant, Mapping):
                problems.append(f"{where} must be an object")
                continue
            sources.append((f"{where}.rules", tenant.get("rules")))
    rules: list[_Rule] = []
    for where, items in sources:
        if items is None:
            continue
        if not isinstance(items, list):
            problems.append(f"{where} must be a list of rules")
            continue
        for index, item in enumerate(items):
            rule = _parse_rule(item, f"{where}[{index}]", problems)
            if rule is not None:
                rules.append(rule)
    return rules


def _parse_rule(item: Any, where: str, problems: list[str]) -> _Rule | None:
    if not isinstance(item, Mapping):
        problems.append(f"{where} must be an object")
        return None
    rule_id = item.get("id")
    if not isinstance(rule_id, str) or not rule_id:
        problems.append(f"{where} has no id (a non-empty string is required)")
        return None
    chain = item.get("chain", [])
    if not isinstance(chain, list) or not all(isinstance(t, str) for t in chain):
        problems.append(f"rule {rule_id!r} ({where}): chain must be a list of rule ids")
        return None
    return _Rule(rule_id, where, tuple(chain))


def _cycles(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """Return one cycle per back edge of an id-ordered DFS, each rotated to start at its least id.

    That names at least one cycle in every cyclic group of rules, deterministically, without the
    exponential blow-up of enumerating every elementary cycle.
    """
    found: dict[tuple[str, ...], list[str]] = {}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for root in sorted(graph):
        if state.get(root):
            continue
        # Iterative DFS: chains are data, and a long one must not hit Python's recursion limit.
        path: list[str] = [root]
        stack = [iter(graph[root])]
        state[root] = 1
        while stack:
            target = next(stack[-1], None)
            if target is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(target) == 1:
                cycle = path[path.index(target) :]
                start = cycle.index(min(cycle))
                ordered = cycle[start:] + cycle[:start]
                found.setdefault(tuple(ordered), [*ordered, ordered[0]])
            elif not state.get(target):
                state[target] = 1
                path.append(target)
                stack.append(iter(graph[target]))
    return [found[key] for key in sorted(found)]
