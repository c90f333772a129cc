"""Fail modes (DESIGN §6): closed, last-known and the native legacy rules, used while OPA is away."""

from __future__ import annotations

from sidecar.fallback.legacy import (
    LegacyRule,
    convert_rules,
    glob_regex,
    legacy_rules_data,
    match_rule,
    pattern_matches,
    substitute,
)
from sidecar.fallback.modes import (
    POLICY_UNAVAILABLE,
    FailMode,
    Fallback,
    FallbackData,
    LastKnownCache,
    closed_decision,
    facts_key,
    legacy_decision,
    load_fallback_data,
)

__all__ = [
    "POLICY_UNAVAILABLE",
    "FailMode",
    "Fallback",
    "FallbackData",
    "LastKnownCache",
    "LegacyRule",
    "closed_decision",
    "convert_rules",
    "facts_key",
    "glob_regex",
    "legacy_decision",
    "legacy_rules_data",
    "load_fallback_data",
    "match_rule",
    "pattern_matches",
    "substitute",
]
