"""Loads the sidecar's YAML config: Freightliner's config (registries) plus our ``policy:`` section.

The file is a superset of Freightliner's config, so Freightliner's own files load unchanged: its
other top-level sections (ecr, gcr, workers, server, …) are accepted and ignored. A Freightliner
*sync config* (top-level ``source``/``destination``/``images``) loads too: no inventory, and its
images become legacy rules. Everything is validated here, once; an invalid file raises ConfigError
naming the file, the line, the dotted key and the problem. The records are validated by pydantic
(their field types carry the rules, ``_model.py`` translates its errors); ``config_schema()`` is
the file's JSON Schema. Unknown registry keys load with a warning (``Config.warnings``) unless
``strict``. See docs/configuration.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from sidecar.config._admin import AdminToken
from sidecar.config._auth import (
    AuthFailureLimit,
    AuthRateLimit,
    AuthSettings,
    AuthUnixSettings,
    is_loopback,
)
from sidecar.config._bundle import BundleServeSettings
from sidecar.config._cron import Cron
from sidecar.config._glob import destination_template, glob_regex
from sidecar.config._health import HealthSettings
from sidecar.config._legacy import (
    ReplicationRule,
    SyncConfig,
    SyncImage,
    is_sync_config,
    load_sync_config,
    parse_sync_config,
)
from sidecar.config._policy import known_tenants, parse_policy
from sidecar.config._pubsub import GOOGLE_ISSUER, GOOGLE_JWKS_URL, OidcSettings, PubSubSettings
from sidecar.config._read import Node, Warnings, read_yaml
from sidecar.config._reconcile import ReconcileSettings
from sidecar.config._registries import (
    AuthConfig,
    RegistryConfig,
    TlsConfig,
    endpoint_host,
    normalise_environment,
    parse_registries,
    registry_nodes,
)
from sidecar.config._replication import (
    ReplicationSettings,
    RetentionSettings,
    RetrySettings,
    WebhookSettings,
    job_store_url,
)
from sidecar.config._schema import config_schema
from sidecar.config._secrets import (
    DEFAULT_SECRET_CACHE_TTL_S,
    SECRET_MANAGERS,
    SecretRef,
    SecretsSettings,
    check_registry_secrets,
    parse_secrets,
    secret_ref,
)
from sidecar.config._sensitive import SENSITIVE_ROOT, SensitiveDataSettings
from sidecar.config._settings import (
    DEFAULT_GATE_LABELS,
    DEFAULT_OVERRIDE_ROLES,
    FAIL_MODES,
    BundleSettings,
    DecisionCacheSettings,
    DecisionRecordSettings,
    FactSettings,
    LegacySettings,
    Limits,
    OpaSettings,
    PolicySettings,
    TelemetrySettings,
    TenancySettings,
)
from sidecar.config._sqs import SqsAuth, SqsSource
from sidecar.config._target import PublishTarget, is_valid_bundle_name, parse_target
from sidecar.errors import NotFound
from sidecar.model.decision import RegistryFacts

__all__ = [
    "DEFAULT_GATE_LABELS",
    "DEFAULT_OVERRIDE_ROLES",
    "DEFAULT_SECRET_CACHE_TTL_S",
    "FAIL_MODES",
    "GOOGLE_ISSUER",
    "GOOGLE_JWKS_URL",
    "SECRET_MANAGERS",
    "SENSITIVE_ROOT",
    "AdminToken",
    "AuthConfig",
    "AuthFailureLimit",
    "AuthRateLimit",
    "AuthSettings",
    "AuthUnixSettings",
    "BundleServeSettings",
    "BundleSettings",
    "Config",
    "Cron",
    "DecisionCacheSettings",
    "DecisionRecordSettings",
    "FactSettings",
    "HealthSettings",
    "LegacySettings",
    "Limits",
    "OidcSettings",
    "OpaSettings",
    "PolicySettings",
    "PubSubSettings",
    "PublishTarget",
    "ReconcileSettings",
    "RegistryConfig",
    "ReplicationRule",
    "ReplicationSettings",
    "RetentionSettings",
    "RetrySettings",
    "SecretRef",
    "SecretsSettings",
    "SensitiveDataSettings",
    "SqsAuth",
    "SqsSource",
    "SyncConfig",
    "SyncImage",
    "TelemetrySettings",
    "TenancySettings",
    "TlsConfig",
    "WebhookSettings",
    "config_schema",
    "destination_template",
    "endpoint_host",
    "glob_regex",
    "is_loopback",
    "is_valid_bundle_name",
    "job_store_url",
    "load_config",
    "load_sync_config",
    "normalise_environment",
    "parse_target",
    "secret_ref",
]

# Keys that would make a sync config ambiguous: such a file must be one thing or the other.
_MAIN_CONFIG_KEYS = ("registries", "policy")


@dataclass(frozen=True, slots=True)
class Config:
    """The loaded configuration: the registry inventory and the sidecar's policy settings."""

    registries: tuple[RegistryConfig, ...] = ()
    policy: PolicySettings = field(default_factory=PolicySettings)
    default_source: str | None = None
    default_destination: str | None = None
    source: str = ""
    # The top-level ``secrets:`` section: where registries using a secret manager read credentials.
    secrets: SecretsSettings = field(default_factory=SecretsSettings)
    # What loaded but looks wrong (unknown registry keys), as "file:line: key: problem" lines.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def inventory(self) -> tuple[RegistryFacts, ...]:
        """Return every registry as the policy sees it (DESIGN §3.1 ``registries``), file order."""
        return tuple(r.facts for r in self.registries)

    def registry(self, name: str) -> RegistryConfig:
        """Return the registry called ``name``; raise NotFound if the inventory has none."""
        for registry in self.registries:
            if registry.name == name:
                return registry
        raise NotFound(f"registry {name!r} is not in the inventory")


def _from_sync_config(doc: Node) -> Config:
    clash = [k for k in _MAIN_CONFIG_KEYS if isinstance(doc.value, dict) and k in doc.value]
    if clash:
        raise doc.error(
            f"has both sync-config keys (source/destination/images) and {', '.join(clash)}: "
            "list sync configs under policy.legacy.sync_configs instead"
        )
    sync = parse_sync_config(doc)
    policy = PolicySettings()
    return Config(
        policy=dataclasses.replace(policy, legacy=LegacySettings(sync_configs=(sync,))),
        source=doc.source,
    )


def load_config(path: str | Path | None, *, strict: bool = False) -> Config:
    """Load and validate the config at ``path`` (None → every default, empty inventory).

    Warnings (unknown registry keys) are logged and kept in ``Config.warnings``; ``strict`` makes
    them ConfigErrors.
    """
    if path is None:
        return Config()
    resolved = Path(path).expanduser().resolve()
    doc = read_yaml(resolved)
    if not isinstance(doc.value, dict):
        raise doc.error(f"expected a mapping at the top level, got {type(doc.value).__name__}")
    if is_sync_config(doc):
        return _from_sync_config(doc)
    top = doc.fields()
    policy_node = top.get("policy", doc.child("policy", None))
    warnings = Warnings(strict=strict)
    registries = parse_registries(
        top.get("registries", doc.child("registries", None)), known_tenants(policy_node), warnings
    )
    secrets_node = top.get("secrets", doc.child("secrets", None))
    secrets = parse_secrets(secrets_node, resolved.parent, warnings)
    registries_node = top.get("registries", doc.child("registries", None))
    check_registry_secrets(
        registries.registries, registry_nodes(registries_node), secrets, secrets_node, warnings
    )
    policy = parse_policy(policy_node, resolved.parent, registries.registries)
    # Freightliner's registries.yaml keeps its defaults at the top level instead.
    default_source = registries.default_source
    default_destination = registries.default_destination
    if default_source is None and "default_source" in top:
        default_source = top["default_source"].optional_string()
    if default_destination is None and "default_destination" in top:
        default_destination = top["default_destination"].optional_string()
    return Config(
        registries=registries.registries,
        policy=policy,
        default_source=default_source,
        default_destination=default_destination,
        source=str(resolved),
        secrets=secrets,
        warnings=tuple(warnings.messages),
    )
