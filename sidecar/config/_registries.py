"""The ``registries:`` section: Freightliner's registry list read as-is, plus the policy facts.

Freightliner writes ``registries:`` either as a list or as an object holding ``registries:`` with
``defaultSource``/``defaultDestination``; both are accepted. Keys are snake_case with camelCase
tolerated. The DESIGN §3.1 inventory attributes (region, environment, gdpr, role, backs, tenants,
egress_cost_per_gb, healthy) come from a registry's own field or, failing that, its ``metadata``
map, which is where Freightliner keeps free-form facts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from sidecar.config._model import (
    Bool,
    Duration,
    Expanded,
    Int,
    NonEmpty,
    Secret,
    Str,
    keys,
    read_record,
)
from sidecar.config._read import Node, Warnings, did_you_mean
from sidecar.config._scalars import as_str
from sidecar.model.decision import RegistryFacts

__all__ = [
    "AuthConfig",
    "RegistryConfig",
    "RegistryEntry",
    "RegistryList",
    "TlsConfig",
    "endpoint_host",
    "normalise_environment",
    "parse_registries",
    "registry_nodes",
]

# Freightliner's examples spell environments out; the policy's bundle data uses the short forms.
_ENVIRONMENT_ALIASES = {"production": "prod", "development": "dev", "stage": "staging"}
_ROLES = ("primary", "secondary")
_FACT_KEYS = ("environment", "gdpr", "role", "backs", "tenants", "egress_cost_per_gb", "healthy")


def _check_keys(fields: Mapping[str, Node], known: tuple[str, ...], warnings: Warnings) -> None:
    for key, node in fields.items():
        if key not in known:
            warnings.warn(node, f"unknown registry key{did_you_mean(key, known)}")


def normalise_environment(value: str) -> str:
    """Return the policy's environment name: lower case, production → prod, development → dev."""
    lowered = value.strip().lower()
    return _ENVIRONMENT_ALIASES.get(lowered, lowered)


def endpoint_host(endpoint: str) -> str:
    """Return the host[:port] of a registry endpoint, scheme and path stripped, lower case."""
    text = endpoint.strip()
    if "://" not in text:
        text = "//" + text
    try:
        return urlsplit(text).netloc.lower()
    except ValueError:
        # urllib refuses an unbalanced IPv6 bracket ("[::1"); such a host matches only itself.
        return text.split("://", 1)[-1].lstrip("/").split("/", 1)[0].lower()


def _or(default: str) -> AfterValidator:
    return AfterValidator(lambda text: text or default)


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """A registry's credentials as Freightliner configures them (secrets stay out of repr)."""

    type: Annotated[Str, _or("anonymous")] = "anonymous"
    # An unset ${VAR} in any credential field is refused at load, never sent as literal text.
    username: Expanded = ""
    password: Secret = field(default="", repr=False)
    token: Secret = field(default="", repr=False)
    profile: Expanded = ""
    role_arn: Expanded = ""
    credentials_file: Expanded = ""
    # Credentials from the secret manager of the top-level ``secrets:`` section (sidecar/secrets).
    use_secrets_manager: Bool = False
    secret_name: Expanded = ""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Client TLS settings for one registry."""

    cert_file: Str = ""
    key_file: Str = ""
    ca_file: Str = ""
    insecure_skip_verify: Bool = False


def _fact(schema: dict[str, Any]) -> WithJsonSchema:
    """An inventory fact's schema: the fact reader checks it (it may come from metadata instead)."""
    return WithJsonSchema(schema)


_TENANTS = {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]}
_BOOLISH = {"anyOf": [{"type": "boolean"}, {"enum": ["true", "false", "True", "False"]}]}


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """One ``registries:`` entry as written: Freightliner's registry fields plus the policy facts.

    The facts (environment … healthy) may also be written inside ``metadata``, where Freightliner
    keeps free-form values. Other keys load with a warning (a typo would silently drop a setting).
    """

    name: NonEmpty
    type: Annotated[Str, _or("generic")] = "generic"
    endpoint: Str = ""
    region: Str = ""
    account_id: Annotated[str, BeforeValidator(as_str, json_schema_input_type=str | int)] = ""
    project: Str = ""
    location: Str = ""
    auth: AuthConfig = field(default_factory=AuthConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    insecure: Bool = False
    timeout: Annotated[Duration, Field(ge=0)] | None = None
    retry_attempts: Annotated[Int, Field(ge=0)] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    environment: Annotated[object, _fact({"type": "string"})] = None
    gdpr: Annotated[object, _fact(_BOOLISH)] = None
    role: Annotated[object, _fact({"enum": list(_ROLES)})] = None
    backs: Annotated[object, _fact({"type": ["string", "null"]})] = None
    tenants: Annotated[object, _fact(_TENANTS)] = None
    egress_cost_per_gb: Annotated[object, _fact({"type": ["number", "string"]})] = None
    healthy: Annotated[object, _fact(_BOOLISH)] = None


# The keys a registry entry may have (Freightliner's documented fields, including the ones the
# sidecar does not use such as location, plus the facts); anything else warns.
REGISTRY_KEYS = keys(RegistryEntry)
AUTH_KEYS = keys(AuthConfig)
TLS_KEYS = keys(TlsConfig)


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    """One registry of the inventory: Freightliner's fields plus the facts the policy sees."""

    name: str
    facts: RegistryFacts
    type: str = "generic"
    endpoint: str = ""
    region: str = ""
    account_id: str = ""
    project: str = ""
    location: str = ""  # Artifact Registry: the repositories' location (e.g. us-east1)
    auth: AuthConfig = field(default_factory=AuthConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    insecure: bool = False
    timeout_s: float | None = None
    retry_attempts: int | None = None
    metadata: Mapping[str, object] = field(default_factory=dict)

    @property
    def host(self) -> str:
        """The endpoint's host[:port] (how Freightliner sync configs name registries)."""
        return endpoint_host(self.endpoint) if self.endpoint else ""


@dataclass(frozen=True, slots=True)
class RegistryList:
    """The parsed ``registries:`` section."""

    registries: tuple[RegistryConfig, ...] = ()
    default_source: str | None = None
    default_destination: str | None = None


def _fact_nodes(fields: Mapping[str, Node], metadata: Node) -> dict[str, Node]:
    """Return the node holding each inventory fact: the registry's own field, else its metadata."""
    meta = metadata.fields()
    found = {k: meta[k] for k in _FACT_KEYS if k in meta and not meta[k].is_null}
    found.update({k: fields[k] for k in _FACT_KEYS if k in fields and not fields[k].is_null})
    return found


def _tenants(node: Node, known: frozenset[str]) -> tuple[str, ...]:
    tenants = node.string_list()
    for tenant in tenants:
        if known and tenant not in known:
            # A registry dedicated to an unknown tenant is a typo that isolates it from everyone.
            raise node.error(f"unknown tenant {tenant!r} (policy.tenancy.tenants: {sorted(known)})")
    return tenants


def _facts(
    name: str, region: str, nodes: Mapping[str, Node], known_tenants: frozenset[str]
) -> RegistryFacts:
    role: Literal["primary", "secondary"] = "primary"
    if "role" in nodes:
        role = "secondary" if nodes["role"].choice(_ROLES) == "secondary" else "primary"
    environment = nodes["environment"].string() if "environment" in nodes else ""
    egress = nodes.get("egress_cost_per_gb")
    return RegistryFacts(
        name=name,
        region=region,
        environment=normalise_environment(environment),
        gdpr=nodes["gdpr"].boolean() if "gdpr" in nodes else False,
        role=role,
        backs=nodes["backs"].optional_string() if "backs" in nodes else None,
        healthy=nodes["healthy"].boolean() if "healthy" in nodes else True,
        tenants=_tenants(nodes["tenants"], known_tenants) if "tenants" in nodes else (),
        egress_cost_per_gb=egress.number(minimum=0.0) if egress is not None else 0.0,
    )


def _registry(node: Node, known_tenants: frozenset[str], warnings: Warnings) -> RegistryConfig:
    f = node.fields()
    _check_keys(f, REGISTRY_KEYS, warnings)
    if "name" not in f:
        raise node.error("a registry needs a name")
    nested: dict[str, object] = {}
    for key, record in (("auth", AuthConfig), ("tls", TlsConfig)):
        if key in f and not f[key].is_null:
            _check_keys(f[key].fields(), keys(record), warnings)
            nested[key] = read_record(record, f[key], lenient=True)
    entry = read_record(RegistryEntry, node, lenient=True, given=nested)
    metadata = f.get("metadata", node.child("metadata", None))
    region_node = f.get("region") or metadata.fields().get("region")
    region = region_node.string() if region_node is not None and not region_node.is_null else ""
    return RegistryConfig(
        name=entry.name,
        facts=_facts(entry.name, region, _fact_nodes(f, metadata), known_tenants),
        type=entry.type,
        endpoint=entry.endpoint,
        region=region,
        account_id=entry.account_id,
        project=entry.project,
        location=entry.location,
        auth=entry.auth,
        tls=entry.tls,
        insecure=entry.insecure,
        timeout_s=entry.timeout,
        retry_attempts=entry.retry_attempts,
        metadata=MappingProxyType({k: v.value for k, v in metadata.raw_mapping().items()}),
    )


def _check_backs(registries: tuple[RegistryConfig, ...], nodes: list[Node]) -> None:
    """A secondary must back a registry that exists, else DR would silently never fail over."""
    names = {r.name for r in registries}
    for registry, node in zip(registries, nodes, strict=True):
        backs = registry.facts.backs
        if backs is None:
            continue
        fields = node.fields()
        where = _fact_nodes(fields, fields.get("metadata", node.child("metadata", None)))
        if backs == registry.name:
            raise where["backs"].error("a registry cannot back itself")
        if backs not in names:
            raise where["backs"].error(
                f"names no registry of the inventory (known: {', '.join(sorted(names))})"
            )


def registry_nodes(node: Node) -> list[Node]:
    """The entry nodes of ``registries:`` in either Freightliner shape (a list, or a wrapper)."""
    entries = node
    if isinstance(node.value, dict):
        entries = node.fields().get("registries", node.child("registries", None))
    return list(entries.items())


def parse_registries(
    node: Node, known_tenants: frozenset[str] = frozenset(), warnings: Warnings | None = None
) -> RegistryList:
    """Parse ``registries:`` in either Freightliner shape; raise ConfigError naming the bad key.

    ``known_tenants`` (policy.tenancy.tenants), when non-empty, is what a registry's ``tenants``
    may name. Unknown keys of an entry go to ``warnings``.
    """
    warnings = warnings if warnings is not None else Warnings()
    default_source = default_destination = None
    if isinstance(node.value, dict):
        wrapper = node.fields()
        if "default_source" in wrapper:
            default_source = wrapper["default_source"].optional_string()
        if "default_destination" in wrapper:
            default_destination = wrapper["default_destination"].optional_string()
    nodes = registry_nodes(node)
    registries = tuple(_registry(n, known_tenants, warnings) for n in nodes)
    seen: dict[str, int] = {}
    for index, registry in enumerate(registries):
        if registry.name in seen:
            raise (
                nodes[index]
                .child("name", registry.name)
                .error(
                    f"duplicate registry name {registry.name!r} (first at index {seen[registry.name]})"
                )
            )
        seen[registry.name] = index
    _check_backs(registries, nodes)
    return RegistryList(registries, default_source, default_destination)
