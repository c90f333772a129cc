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
from typing import Literal
from urllib.parse import urlsplit

from sidecar.config._read import Node, Warnings, did_you_mean
from sidecar.model.decision import RegistryFacts

__all__ = [
    "AuthConfig",
    "RegistryConfig",
    "RegistryList",
    "TlsConfig",
    "endpoint_host",
    "normalise_environment",
    "parse_registries",
]

# Freightliner's examples spell environments out; the policy's bundle data uses the short forms.
_ENVIRONMENT_ALIASES = {"production": "prod", "development": "dev", "stage": "staging"}
_ROLES = ("primary", "secondary")
_FACT_KEYS = ("environment", "gdpr", "role", "backs", "tenants", "egress_cost_per_gb", "healthy")
# Every key a registry entry may have: Freightliner's registry fields (its docs and the examples in
# shared/compat/freightliner, including the ones the sidecar does not use, such as location) plus
# the inventory facts. Anything else is a typo that would silently drop a setting: a warning.
REGISTRY_KEYS = (
    "name",
    "type",
    "endpoint",
    "region",
    "account_id",
    "project",
    "location",
    "auth",
    "tls",
    "insecure",
    "timeout",
    "retry_attempts",
    "metadata",
    *_FACT_KEYS,
)
AUTH_KEYS = (
    "type",
    "username",
    "password",
    "token",
    "profile",
    "role_arn",
    "credentials_file",
    "use_secrets_manager",
    "secret_name",
)
TLS_KEYS = ("cert_file", "key_file", "ca_file", "insecure_skip_verify")


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


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """A registry's credentials as Freightliner configures them (secrets stay out of repr)."""

    type: str = "anonymous"
    username: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    profile: str = ""
    role_arn: str = ""
    credentials_file: str = ""
    use_secrets_manager: bool = False
    secret_name: str = ""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Client TLS settings for one registry."""

    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""
    insecure_skip_verify: bool = False


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


def _text(fields: Mapping[str, Node], key: str) -> str:
    node = fields.get(key)
    return node.string() if node is not None and not node.is_null else ""


def _auth(node: Node) -> AuthConfig:
    f = node.fields()
    secrets = f.get("use_secrets_manager")
    return AuthConfig(
        type=_text(f, "type") or "anonymous",
        username=_text(f, "username"),
        password=_text(f, "password"),
        token=_text(f, "token"),
        profile=_text(f, "profile"),
        role_arn=_text(f, "role_arn"),
        credentials_file=_text(f, "credentials_file"),
        use_secrets_manager=secrets.boolean() if secrets and not secrets.is_null else False,
        secret_name=_text(f, "secret_name"),
    )


def _tls(node: Node) -> TlsConfig:
    f = node.fields()
    skip = f.get("insecure_skip_verify")
    return TlsConfig(
        cert_file=_text(f, "cert_file"),
        key_file=_text(f, "key_file"),
        ca_file=_text(f, "ca_file"),
        insecure_skip_verify=skip.boolean() if skip and not skip.is_null else False,
    )


def _fact_nodes(fields: Mapping[str, Node], metadata: Node) -> dict[str, Node]:
    """Return the node holding each inventory fact: the registry's own field, else its metadata."""
    meta = metadata.fields()
    found = {k: meta[k] for k in _FACT_KEYS if k in meta and not meta[k].is_null}
    found.update({k: fields[k] for k in _FACT_KEYS if k in fields and not fields[k].is_null})
    return found


def _tenants(node: Node, known: frozenset[str]) -> tuple[str, ...]:
    tenants = node.string_list(allow_csv=True)
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
        gdpr=nodes["gdpr"].boolean(tolerate_strings=True) if "gdpr" in nodes else False,
        role=role,
        backs=nodes["backs"].optional_string() if "backs" in nodes else None,
        healthy=nodes["healthy"].boolean(tolerate_strings=True) if "healthy" in nodes else True,
        tenants=_tenants(nodes["tenants"], known_tenants) if "tenants" in nodes else (),
        egress_cost_per_gb=egress.number(minimum=0.0) if egress is not None else 0.0,
    )


def _registry(node: Node, known_tenants: frozenset[str], warnings: Warnings) -> RegistryConfig:
    f = node.fields()
    _check_keys(f, REGISTRY_KEYS, warnings)
    for key, known in (("auth", AUTH_KEYS), ("tls", TLS_KEYS)):
        if key in f and isinstance(f[key].value, dict):
            _check_keys(f[key].fields(), known, warnings)
    if "name" not in f:
        raise node.error("a registry needs a name")
    name = f["name"].string(allow_empty=False)

    metadata = f.get("metadata", node.child("metadata", None))
    fact_nodes = _fact_nodes(f, metadata)
    region_node = f.get("region") or metadata.fields().get("region")
    region = region_node.string() if region_node is not None and not region_node.is_null else ""
    timeout, retries, insecure = f.get("timeout"), f.get("retry_attempts"), f.get("insecure")
    return RegistryConfig(
        name=name,
        facts=_facts(name, region, fact_nodes, known_tenants),
        type=_text(f, "type") or "generic",
        endpoint=_text(f, "endpoint"),
        region=region,
        account_id=_text(f, "account_id"),
        project=_text(f, "project"),
        auth=_auth(f["auth"]) if "auth" in f else AuthConfig(),
        tls=_tls(f["tls"]) if "tls" in f else TlsConfig(),
        insecure=insecure.boolean() if insecure and not insecure.is_null else False,
        timeout_s=timeout.seconds() if timeout and not timeout.is_null else None,
        retry_attempts=retries.integer(minimum=0) if retries and not retries.is_null else None,
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


def parse_registries(
    node: Node, known_tenants: frozenset[str] = frozenset(), warnings: Warnings | None = None
) -> RegistryList:
    """Parse ``registries:`` in either Freightliner shape; raise ConfigError naming the bad key.

    ``known_tenants`` (policy.tenancy.tenants), when non-empty, is what a registry's ``tenants``
    may name. Unknown keys of an entry go to ``warnings``.
    """
    warnings = warnings if warnings is not None else Warnings()
    default_source = default_destination = None
    entries = node
    if isinstance(node.value, dict):
        wrapper = node.fields()
        entries = wrapper.get("registries", node.child("registries", None))
        if "default_source" in wrapper:
            default_source = wrapper["default_source"].optional_string()
        if "default_destination" in wrapper:
            default_destination = wrapper["default_destination"].optional_string()
    nodes = list(entries.items())
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
