"""The JSON Schema of bundle data (docs/policy.md "Bundle data"): what every data file must fit.

Validation checks the merged data document of a bundle against it, so a typo'd key or a wrong type
in a data file (``"max_age_days": "seven"``) is refused with its path before OPA could evaluate a
policy against it. Keys are closed where a typo would silently change a decision (settings, rule
``match``/``set``, tenants); new data for new policies needs a new entry here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DATA_SCHEMA"]

_STR: dict[str, Any] = {"type": "string"}
_STRS: dict[str, Any] = {"type": "array", "items": _STR}
_NON_NEG_INT: dict[str, Any] = {"type": "integer", "minimum": 0}
_PRIORITY: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": 100}


def _closed(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_RETENTION = _closed({"keep_last": _NON_NEG_INT, "older_than_days": _NON_NEG_INT})

_RULE = _closed(
    {
        "id": {"type": "string", "minLength": 1},
        "description": _STR,
        "priority": {"type": "integer"},
        "match": _closed(
            {
                "repository": _STR,
                "tag": _STR,
                "labels": {"type": "object", "additionalProperties": _STR},
                "environment": _STR,
            }
        ),
        "set": _closed(
            {
                "destination_repository": _STR,
                "priority": _PRIORITY,
                "retention": _RETENTION,
            }
        ),
        "deny": {
            "type": "array",
            "items": _closed(
                {"registry": {"type": "string", "minLength": 1}, "code": _STR}, ("registry",)
            ),
        },
        "chain": _STRS,
    },
    ("id",),
)

_SETTINGS = _closed(
    {
        "environments": _closed(
            {
                "patterns": {
                    "type": "array",
                    "items": _closed(
                        {"pattern": _STR, "environment": _STR}, ("pattern", "environment")
                    ),
                },
                "default": _STR,
            }
        ),
        "compliance": _closed({"label": _STR}),
        "scan": _closed(
            {"max_age_days": {"type": "number", "minimum": 0}, "gated_environments": _STRS}
        ),
        "cost": _closed({"threshold": {"type": "number", "minimum": 0}}),
        "priority": _closed(
            {
                "criticality": {"type": "object", "additionalProperties": {"type": "integer"}},
                "default_criticality": _STR,
                "environment": {"type": "object", "additionalProperties": {"type": "integer"}},
            }
        ),
        "retention": _RETENTION,
    }
)

# Denial codes whose registries lose an existing copy (DESIGN §3.4). Codes that mean "not now" or
# "not known" never remove: the policy ignores them here, and the schema refuses them so that
# an author who lists one learns it at once instead of wondering why nothing is removed.
_NEVER_PRUNE = ("CROSS_TENANT", "ENV_MISMATCH", "POLICY_UNAVAILABLE", "REGISTRY_UNAVAILABLE",
                "SECONDARY_STANDBY")  # fmt: skip
_PRUNE = _closed(
    {
        "reasons": {
            "type": "array",
            "uniqueItems": True,
            "items": {
                "type": "string",
                "minLength": 1,
                "not": {"anyOf": [{"enum": list(_NEVER_PRUNE)}, {"pattern": "^SCAN_"}]},
                # Read by bundle validation as the problem text of a failed "not".
                "$comment": "this code never removes a copy (DESIGN §3.4: only a lasting denial "
                "such as NOT_GDPR, TENANT_ISOLATION or COST_CONSOLIDATED does)",
            },
        }
    }
)

# Generated from config by the sidecar (sidecar/fallback/legacy.py); only the shape is pinned here.
_LEGACY = {
    "type": "object",
    "properties": {
        "rules": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "destination_registry"],
                "properties": {"id": _STR, "source_registry": _STR, "destination_registry": _STR},
            },
        },
        "by_prefix": {"type": "object", "additionalProperties": {"type": "array"}},
        "unindexed": {"type": "array"},
    },
}

_BINDING = _closed(
    {
        "roles": {"type": "array", "items": {"type": "string", "minLength": 1}},
        # A tenant-scoped role (tenant-admin) acts only on this tenant.
        "tenant": {"type": ["string", "null"]},
    },
    ("roles",),
)

DATA_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "replication": _closed(
            {
                "settings": _SETTINGS,
                "rules": {"type": "array", "items": _RULE},
                "tenants": {
                    "type": "object",
                    "additionalProperties": _closed(
                        {"retention": _RETENTION, "rules": {"type": "array", "items": _RULE}}
                    ),
                },
                "legacy": _LEGACY,
                "prune": _PRUNE,
            }
        ),
        "system": {
            "type": "object",
            "properties": {
                # role -> admin actions it grants ("*" = every action)
                "roles": {"type": "object", "additionalProperties": _STRS},
                # caller name (certificate subject, SAN as "DNS:…"/"URI:…", or "token:<name>")
                "bindings": {"type": "object", "additionalProperties": _BINDING},
            },
        },
    },
}
