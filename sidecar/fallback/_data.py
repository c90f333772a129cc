"""The bundle data the legacy fail mode evaluates with, read from the files the bundle is built from.

The values live once, in ``bundles/default/replication/`` and the configured ``data_dirs`` (merged
exactly as the bundle builder merges them), plus the legacy rules converted from config. The
defaults below only mirror the Rego packages' own defaults for data a bundle leaves out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sidecar.bundles.build import load_data_dir, merge_data
from sidecar.config import Config
from sidecar.fallback.legacy import LegacyRule, convert_rules

__all__ = ["EnvPattern", "FallbackData", "customer_allowlist", "load_fallback_data"]

_DEFAULT_PATTERNS = (("prod-*", "prod"), ("dev-*", "dev"))
_DEFAULT_CRITICALITY = MappingProxyType({"critical": 60, "high": 45, "normal": 30, "low": 15})
_DEFAULT_ENV_WEIGHT = MappingProxyType({"prod": 30, "dev": 15, "sandbox": 0})


@dataclass(frozen=True, slots=True)
class EnvPattern:
    """One ``settings.environments.patterns`` entry: tag glob → environment."""

    pattern: str
    environment: str


def _get(doc: Any, key: str, default: Any) -> Any:
    return doc.get(key, default) if isinstance(doc, Mapping) else default


@dataclass(frozen=True, slots=True)
class FallbackData:
    """Settings, explicit rules and legacy rules of ``data.replication``, as the policy reads them."""

    patterns: tuple[EnvPattern, ...] = ()
    default_environment: str = "sandbox"
    compliance_label: str = "compliance-required"
    max_scan_age_days: float = 7
    gated_environments: frozenset[str] = frozenset({"prod"})
    cost_threshold: float = 100.0
    criticality: Mapping[str, float] = field(default_factory=lambda: _DEFAULT_CRITICALITY)
    default_criticality: str = "normal"
    environment_weight: Mapping[str, float] = field(default_factory=lambda: _DEFAULT_ENV_WEIGHT)
    rules: tuple[Mapping[str, Any], ...] = ()
    tenants: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    legacy_rules: tuple[LegacyRule, ...] = ()
    # data.sensitive.customers.allowlist (registry → customer ids), from the decrypted
    # sensitive data the sidecar holds, never from bundle files (customers.rego).
    customer_allowlist: Mapping[str, frozenset[str]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    @classmethod
    def from_data(
        cls, replication: Mapping[str, Any], legacy_rules: Sequence[LegacyRule] = ()
    ) -> FallbackData:
        """Read ``data.replication`` (settings, rules, tenants) plus already converted legacy rules."""
        settings = _get(replication, "settings", {})
        envs = _get(settings, "environments", {})
        scan = _get(settings, "scan", {})
        prio = _get(settings, "priority", {})
        raw_patterns = _get(envs, "patterns", None)
        patterns = (
            tuple(EnvPattern(str(p["pattern"]), str(p["environment"])) for p in raw_patterns)
            if isinstance(raw_patterns, list)
            else tuple(EnvPattern(p, e) for p, e in _DEFAULT_PATTERNS)
        )
        rules = _get(replication, "rules", [])
        if not legacy_rules:
            legacy_doc = _get(_get(replication, "legacy", {}), "rules", [])
            legacy_rules = [LegacyRule.from_json(r, i) for i, r in enumerate(legacy_doc)]
        return cls(
            patterns=patterns,
            default_environment=str(_get(envs, "default", "sandbox")),
            compliance_label=str(
                _get(_get(settings, "compliance", {}), "label", "compliance-required")
            ),
            max_scan_age_days=float(_get(scan, "max_age_days", 7)),
            gated_environments=frozenset(_get(scan, "gated_environments", ["prod"])),
            cost_threshold=float(_get(_get(settings, "cost", {}), "threshold", 100.0)),
            criticality=MappingProxyType(dict(_get(prio, "criticality", _DEFAULT_CRITICALITY))),
            default_criticality=str(_get(prio, "default_criticality", "normal")),
            environment_weight=MappingProxyType(
                dict(_get(prio, "environment", _DEFAULT_ENV_WEIGHT))
            ),
            rules=tuple(r for r in rules if isinstance(r, Mapping))
            if isinstance(rules, list)
            else (),
            tenants=MappingProxyType(dict(_get(replication, "tenants", {}))),
            legacy_rules=tuple(legacy_rules),
        )

    def tenant_rules(self, tenant: str | None) -> tuple[Mapping[str, Any], ...]:
        """Return the explicit rules of ``tenant`` (none for no tenant)."""
        if not tenant:
            return ()
        rules = _get(self.tenants.get(tenant), "rules", [])
        return tuple(r for r in rules if isinstance(r, Mapping)) if isinstance(rules, list) else ()


def customer_allowlist(sensitive: Mapping[str, Any]) -> Mapping[str, frozenset[str]]:
    """Read ``data.sensitive.customers.allowlist`` as customers.rego does (malformed → empty)."""
    allowlist = _get(_get(sensitive, "customers", {}), "allowlist", {})
    if not isinstance(allowlist, Mapping):
        return MappingProxyType({})
    return MappingProxyType(
        {
            str(name): frozenset(c for c in ids if isinstance(c, str))
            for name, ids in allowlist.items()
            if isinstance(ids, list)
        }
    )


def load_fallback_data(config: Config) -> FallbackData:
    """Read bundles/default + ``policy.bundle.data_dirs`` and convert the configured legacy rules.

    Raises BundleError for an unreadable data file and ConfigError for a bad sync config, like
    the bundle build that starts the sidecar would.
    """
    settings = config.policy.bundle
    merged: Any = load_data_dir(Path(settings.source_dir) / "bundles" / "default")
    for extra in settings.data_dirs:
        merged = merge_data(merged, load_data_dir(Path(extra)))
    legacy = convert_rules(
        config.policy.legacy.rules, config.policy.legacy.sync_configs, config.inventory()
    )
    return FallbackData.from_data(_get(merged, "replication", {}), legacy)
