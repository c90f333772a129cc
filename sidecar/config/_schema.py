"""The JSON Schema of the config file, generated from the records' pydantic types.

``policy-sidecar config schema`` prints it and docs/config-schema.json is a copy, for editors
(yaml-language-server) and CI. Freightliner owns every section but ``policy:``, so those sections
and a registry entry allow keys we do not know; ``policy:`` does not. As in the loader, camelCase
spellings of every key are allowed (folded onto snake_case) and null means "the default".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ConfigDict, TypeAdapter
from pydantic.alias_generators import to_camel

from sidecar.config._registries import RegistryEntry
from sidecar.config._secrets import SecretsSettings
from sidecar.config._settings import PolicySettings

__all__ = ["config_schema"]


@dataclass(frozen=True, slots=True)
class _RegistryList:
    """Freightliner's other ``registries:`` shape: the list plus its default source/destination."""

    __pydantic_config__ = ConfigDict(extra="allow")

    registries: list[RegistryEntry] = field(default_factory=list)
    default_source: str | None = None
    default_destination: str | None = None


@dataclass(frozen=True, slots=True)
class _ConfigFile:
    """policy-sidecar config: Freightliner's config (its registries: and other sections) plus policy:.

    A Freightliner sync config (top-level source, destination and images) is a valid file too.
    """

    __pydantic_config__ = ConfigDict(extra="allow", title="policy-sidecar config")

    registries: list[RegistryEntry] | _RegistryList = field(default_factory=list)
    default_source: str | None = None
    default_destination: str | None = None
    policy: PolicySettings | None = None
    secrets: SecretsSettings | None = None


_NULL = {"type": "null"}
_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


def _loosen(node: object) -> None:
    """Allow what the loader allows: camelCase spellings (required either way), null = default."""
    if isinstance(node, list):
        for item in node:
            _loosen(item)
        return
    if not isinstance(node, dict):
        return
    for value in node.values():
        _loosen(value)
    for ours, standard in _BOUNDS.items():  # pydantic keeps a BeforeValidator type's bounds as is
        if ours in node:
            node[standard] = node.pop(ours)
    properties = node.get("properties")
    if not isinstance(properties, dict):
        return
    for key, value in list(properties.items()):
        properties[key] = (
            {"anyOf": [value, _NULL]} if key not in node.get("required", ()) else value
        )
        properties.setdefault(to_camel(key), properties[key])
    required = node.pop("required", [])
    if required:
        node["allOf"] = [
            {"anyOf": [{"required": [key]}, {"required": [to_camel(key)]}]} for key in required
        ]


def config_schema() -> dict[str, Any]:
    """Return the config file's JSON Schema (draft 2020-12)."""
    schema = TypeAdapter(_ConfigFile).json_schema()
    _loosen(schema)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
