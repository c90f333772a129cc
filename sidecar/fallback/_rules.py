"""Explicit rules (``data.replication.rules`` and tenant rules) natively, as ``replication.rules`` does.

The legacy fail mode needs them for two things only: their denials (a denial always beats a route,
OPA down or not) and the winning ``set.priority``. Same semantics as rego/replication/ruleset.rego:
a rule is active when its ``match`` block matches or an active rule chains to it; conflicts go to
the highest rule ``priority``, then the smallest id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sidecar.fallback._data import FallbackData
from sidecar.fallback.legacy import pattern_matches
from sidecar.model.decision import PolicyInput

__all__ = ["ActiveRules", "active_rules"]


def _matches(rule: Mapping[str, Any], policy_input: PolicyInput, environment: str) -> bool:
    match = rule.get("match", {})
    if not isinstance(match, Mapping):
        return False
    image = policy_input.image
    repository, tag = match.get("repository"), match.get("tag")
    if repository and not pattern_matches(str(repository), image.ref.repository):
        return False
    if tag and not pattern_matches(str(tag), image.ref.tag):
        return False
    wanted_env = match.get("environment")
    if wanted_env and wanted_env != environment:
        return False
    labels = match.get("labels", {})
    return isinstance(labels, Mapping) and all(
        image.labels.get(key) == value for key, value in labels.items()
    )


def _rule_priority(rule: Mapping[str, Any]) -> float:
    value = rule.get("priority")
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


class ActiveRules:
    """The rules in force for one input: their denials and winning values."""

    def __init__(self, by_id: Mapping[str, Mapping[str, Any]], active: frozenset[str]) -> None:
        self._by_id = by_id
        self.active = active

    def winner(self, key: str) -> Mapping[str, Any] | None:
        """Return the active rule whose ``set[key]`` wins (highest priority, then smallest id)."""
        ranked = sorted(
            (-_rule_priority(rule), rule_id)
            for rule_id in self.active
            if (rule := self._by_id[rule_id]).get("set", {}).get(key) is not None
        )
        return self._by_id[ranked[0][1]] if ranked else None

    def priority(self) -> float | None:
        """The winning ``set.priority``, or None when no active rule sets a number."""
        rule = self.winner("priority")
        value = rule["set"]["priority"] if rule is not None else None
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def denials(self, source: str) -> dict[str, set[str]]:
        """Return registry → codes denied by active rules (``RULE_DENIED`` when no code given)."""
        out: dict[str, set[str]] = {}
        for rule_id in self.active:
            for entry in self._by_id[rule_id].get("deny", []):
                if isinstance(entry, Mapping) and entry.get("registry") != source:
                    code = str(entry.get("code", "RULE_DENIED"))
                    out.setdefault(str(entry.get("registry")), set()).add(code)
        return out


def active_rules(data: FallbackData, policy_input: PolicyInput, environment: str) -> ActiveRules:
    """Return the global and image-tenant rules in force for ``policy_input``."""
    rules = [
        r
        for r in (*data.rules, *data.tenant_rules(policy_input.image.tenant))
        if isinstance(r.get("id"), str)
    ]
    by_id = {str(r["id"]): r for r in rules}
    matched = [str(r["id"]) for r in rules if _matches(r, policy_input, environment)]
    active: set[str] = set()
    pending = list(matched)
    # graph.reachable in Rego: the matched rules plus everything they chain to, transitively.
    while pending:
        rule_id = pending.pop()
        if rule_id in active or rule_id not in by_id:
            continue
        active.add(rule_id)
        chain = by_id[rule_id].get("chain", [])
        pending.extend(str(c) for c in chain if isinstance(chain, list))
    return ActiveRules(by_id, frozenset(active))
