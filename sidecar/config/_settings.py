"""The records of the ``policy:`` section, each setting with its named default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, WithJsonSchema

from sidecar.config._admin import AdminSettings
from sidecar.config._auth import AuthSettings
from sidecar.config._bundle import BundleServeSettings, BundleServiceSettings
from sidecar.config._health import HealthSettings
from sidecar.config._legacy import ReplicationRule, SyncConfigPath
from sidecar.config._model import URL, Bool, Int, Key, NonEmpty, Number, Path_, Str, Strings, frozen
from sidecar.config._reconcile import ReconcileSettings
from sidecar.config._replication import ReplicationSettings
from sidecar.config._scalars import choice, host_port, url
from sidecar.config._sensitive import SensitiveDataSettings
from sidecar.masking import parse_mask_path
from sidecar.model.decision import TenantUsage
from sidecar.telemetry import LOG_FORMATS, LOG_LEVELS

__all__ = [
    "BUNDLE_OUTPUT",
    "DEFAULT_GATE_LABELS",
    "DEFAULT_LAST_KNOWN_ENTRIES",
    "DEFAULT_LISTEN",
    "DEFAULT_METRICS_LISTEN",
    "DEFAULT_OVERRIDE_ROLES",
    "DEFAULT_SERVICE_NAME",
    "FAIL_MODES",
    "BundleSettings",
    "DecisionCacheSettings",
    "DecisionRecordSettings",
    "FactSettings",
    "LegacySettings",
    "Limits",
    "OpaSettings",
    "PolicySettings",
    "TelemetrySettings",
    "TenancySettings",
    "default_source_dir",
    "default_state_dir",
]

DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_METRICS_LISTEN = "127.0.0.1:9464"
DEFAULT_SERVICE_NAME = "policy-sidecar"
FAIL_MODES = ("closed", "legacy", "last-known")
DEFAULT_LAST_KNOWN_ENTRIES = 10_000  # last-known fail mode: decisions cached (LRU)
# Under state_dir: an installed sidecar never writes into its package (site-packages).
BUNDLE_OUTPUT = Path("bundles") / "bundle.tar.gz"
# Where a wheel carries rego/ and bundles/default/ inside the package (setup.py copies them).
_PACKAGED_SOURCES = "_defaults"


_FORBID = ConfigDict(extra="forbid")
_Positive = Annotated[Int, Field(ge=1)]


def _listen(text: str) -> str:
    if not text:
        raise ValueError(f"expected HOST:PORT (port 0-65535), got {text!r}")
    return host_port(text)


def _endpoint(text: str) -> str:
    """An OTLP endpoint: host:port, or a URL that must then be http(s)."""
    if "://" in text:
        url(text)
    return text


def _mask(text: str) -> str:
    parse_mask_path(text)  # its ValueError is the problem
    return text


def _prefix(text: str) -> str:
    if not text:
        raise ValueError("a repository prefix must not be empty")
    return text


_Prefix = Annotated[Key, AfterValidator(_prefix)]


def _choice(options: tuple[str, ...]) -> BeforeValidator:
    one_of = cast(Any, Literal)[options]  # the schema lists the options
    return BeforeValidator(choice(options), json_schema_input_type=one_of)


_USAGE_SCHEMA = {
    "type": "object",
    "description": "tenant → its configured storage usage",
    "additionalProperties": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "storage_used_bytes": {"type": "integer", "minimum": 0},
            "storage_limit_bytes": {"type": "integer", "minimum": 0},
        },
    },
}
_PATHS_SCHEMA = {"type": "array", "items": {"type": "string", "minLength": 1}}
Listen = Annotated[Str, AfterValidator(_listen), Field(description="HOST:PORT")]


def default_source_dir() -> str:
    """Return the directory holding rego/ and bundles/default/: the wheel's data, else the checkout."""
    packaged = resources.files("sidecar") / _PACKAGED_SOURCES
    # opa build reads a directory: only a package on a file system (never a zip) can serve one.
    if isinstance(packaged, Path) and packaged.is_dir():
        return str(packaged)
    # A checkout (editable install): the package directory's parent.
    return str(Path(__file__).resolve().parents[2])


def default_state_dir() -> str:
    """Return $XDG_STATE_HOME/policy-sidecar, else ~/.local/state/policy-sidecar."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "policy-sidecar")


@dataclass(frozen=True, slots=True)
class OpaSettings:
    """``policy.opa``: which OPA to ask (no address → a managed OPA process), how long to wait."""

    __pydantic_config__ = _FORBID

    address: URL | None = None
    binary: Path_ | None = None
    timeout_ms: _Positive = 500
    startup_timeout_s: Annotated[Number, Field(ge=0.1)] = 30.0
    port: Annotated[Int, Field(ge=0, le=65535)] = 0
    extra_args: Strings = ()
    # The managed OPA's API answers only a per-launch token; set: it is also written here (0600)
    # for local tools (policy-sidecar bench, curl while debugging).
    token_file: Path_ | None = None
    # OPA's console decision logs, re-logged by the sidecar as "opa decision" lines (no input or
    # result) and joined to its own by opa_decision_id. Off: it costs OPA CPU per decision.
    decision_logs: Bool = False
    # Outage handling (DESIGN §6): one decision waits at most deadline_ms for OPA over all
    # attempts; then the fail mode answers.
    deadline_ms: _Positive = 2000
    attempts: _Positive = 3
    backoff_base_ms: _Positive = 50
    backoff_max_ms: _Positive = 500
    breaker_threshold: _Positive = 5
    breaker_cooldown_s: Annotated[Number, Field(ge=0.001)] = 5.0


@dataclass(frozen=True, slots=True)
class BundleSettings:
    """``policy.bundle``: how the bundle is built and signed, or pulled from a store; serving it."""

    __pydantic_config__ = _FORBID

    source_dir: Path_ = field(default_factory=default_source_dir)
    data_dirs: tuple[Path_, ...] = ()
    # Default: <state_dir>/bundles/bundle.tar.gz (parse_policy sets it from policy.state_dir).
    output: Path_ = field(default_factory=lambda: str(Path(default_state_dir()) / BUNDLE_OUTPUT))
    signing_key: Path_ | None = None
    verification_key: Path_ | None = None
    revision: NonEmpty | None = None
    # Set: the managed OPA pulls signed bundles from this store instead of the local build.
    service: BundleServiceSettings | None = None
    serve: BundleServeSettings = field(default_factory=BundleServeSettings)


@dataclass(frozen=True, slots=True)
class TenancySettings:
    """``policy.tenancy``: known tenants, repository prefix → tenant, configured storage usage."""

    __pydantic_config__ = _FORBID

    tenants: Strings = ()
    prefixes: Annotated[Mapping[_Prefix, NonEmpty], AfterValidator(frozen)] = field(
        default_factory=dict
    )
    usage: Annotated[
        Mapping[Annotated[Key, Field(min_length=1)], TenantUsage],
        AfterValidator(frozen),
        WithJsonSchema(_USAGE_SCHEMA),
    ] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LegacySettings:
    """``policy.legacy``: Freightliner ReplicationRules and (already read) sync configs."""

    __pydantic_config__ = _FORBID

    rules: tuple[ReplicationRule, ...] = ()
    # Written as paths of Freightliner sync configs; read into SyncConfig records.
    sync_configs: Annotated[tuple[SyncConfigPath, ...], WithJsonSchema(_PATHS_SCHEMA)] = ()


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    """``policy.telemetry``: trace export and logging."""

    __pydantic_config__ = _FORBID

    service_name: NonEmpty = DEFAULT_SERVICE_NAME
    otlp_endpoint: Annotated[NonEmpty, AfterValidator(_endpoint)] | None = None
    log_level: Annotated[str, _choice(tuple(LOG_LEVELS))] = "info"
    log_format: Annotated[str, _choice(tuple(LOG_FORMATS))] = "json"


@dataclass(frozen=True, slots=True)
class Limits:
    """``policy.limits``: request size limits enforced before enrichment."""

    __pydantic_config__ = _FORBID

    max_labels: _Positive = 256
    max_label_key_bytes: _Positive = 256
    max_label_value_bytes: _Positive = 4096
    # access (region -> pulls) and image.present_at, image.platforms, caller.roles: entries, and
    # bytes of each string
    max_access_regions: _Positive = 256
    max_platforms: _Positive = 64
    max_roles: _Positive = 64
    max_string_bytes: _Positive = 256
    # gRPC receive cap of one PolicyService message (the admin API's is derived from
    # policy.admin.max_bundle_bytes); larger ones are refused RESOURCE_EXHAUSTED before parsing
    max_message_bytes: Annotated[Int, Field(ge=4096)] = 1024 * 1024


@dataclass(frozen=True, slots=True)
class DecisionRecordSettings:
    """``policy.decision_records``: how many decisions Explain can return, for how long, masked how."""

    __pydantic_config__ = _FORBID

    max_entries: _Positive = 10_000
    # approximate bytes held (serialized record sizes): the oldest go first when over it
    max_bytes: Annotated[Int, Field(ge=4096)] = 64 * 1024 * 1024
    ttl_s: Annotated[Number, Field(ge=0.001)] = 3600.0
    # input paths shown as "***" (sidecar/masking.py)
    mask: tuple[Annotated[NonEmpty, AfterValidator(_mask)], ...] = ()


@dataclass(frozen=True, slots=True)
class DecisionCacheSettings:
    """``policy.decision_cache``: reuse OPA's answer for identical facts (docs/configuration.md)."""

    __pydantic_config__ = _FORBID

    # off by default: it needs rego/replication/cacheable.rego in the bundle, and after OPA
    # activates a revision on its own a hit may rest on the previous one for one watcher poll
    enabled: Bool = False
    # decisions held (least recently used go first); each is one small decision record
    max_entries: _Positive = 10_000


DEFAULT_OVERRIDE_ROLES = ("fact-override", "replay")
DEFAULT_GATE_LABELS = ("security.scan.*", "tenant", "compliance-required", "customer-id")


@dataclass(frozen=True, slots=True)
class FactSettings:
    """``policy.facts``: which request-stated facts the sidecar believes (docs/facts.md)."""

    __pydantic_config__ = _FORBID

    # caller roles that may state now, registry_health, tenant_usage and access, and gate facts
    # the registry could not observe (replay, testing); [] = no caller may
    override_roles: tuple[NonEmpty, ...] = DEFAULT_OVERRIDE_ROLES
    # label globs that gate a decision: a request's value counts only when the registry shows it
    gate_labels: tuple[NonEmpty, ...] = DEFAULT_GATE_LABELS


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """The whole ``policy:`` section."""

    __pydantic_config__ = _FORBID

    listen: Listen = DEFAULT_LISTEN
    metrics_listen: Annotated[Str, AfterValidator(host_port)] = DEFAULT_METRICS_LISTEN
    opa: OpaSettings = field(default_factory=OpaSettings)
    bundle: BundleSettings = field(default_factory=BundleSettings)
    tenancy: TenancySettings = field(default_factory=TenancySettings)
    legacy: LegacySettings = field(default_factory=LegacySettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    limits: Limits = field(default_factory=Limits)
    decision_records: DecisionRecordSettings = field(default_factory=DecisionRecordSettings)
    decision_cache: DecisionCacheSettings = field(default_factory=DecisionCacheSettings)
    state_dir: Path_ = field(default_factory=default_state_dir)
    fail_mode: Annotated[str, _choice(FAIL_MODES)] = "closed"
    last_known_entries: _Positive = DEFAULT_LAST_KNOWN_ENTRIES
    replication: ReplicationSettings = field(default_factory=ReplicationSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    reconcile: ReconcileSettings = field(default_factory=ReconcileSettings)
    sensitive_data: SensitiveDataSettings = field(default_factory=SensitiveDataSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    facts: FactSettings = field(default_factory=FactSettings)
    # None: the data plane trusts its callers (loopback only); else who they are (config/_auth.py)
    auth: AuthSettings | None = None
    # Serve an unauthenticated data plane on a non-loopback policy.listen anyway (not advised).
    allow_unauthenticated_listen: Bool = False
