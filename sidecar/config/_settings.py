"""The records of the ``policy:`` section, each setting with its named default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sidecar.config._admin import AdminSettings
from sidecar.config._bundle import BundleServeSettings, BundleServiceSettings
from sidecar.config._health import HealthSettings
from sidecar.config._legacy import ReplicationRule, SyncConfig
from sidecar.config._replication import ReplicationSettings
from sidecar.config._sensitive import SensitiveDataSettings
from sidecar.model.decision import TenantUsage

__all__ = [
    "BUNDLE_OUTPUT",
    "DEFAULT_LAST_KNOWN_ENTRIES",
    "DEFAULT_LISTEN",
    "DEFAULT_METRICS_LISTEN",
    "DEFAULT_SERVICE_NAME",
    "FAIL_MODES",
    "BundleSettings",
    "DecisionRecordSettings",
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
BUNDLE_OUTPUT = Path("bundles") / "build" / "bundle.tar.gz"


def default_source_dir() -> str:
    """Return the checkout holding rego/ and bundles/default/: the package directory's parent."""
    return str(Path(__file__).resolve().parents[2])


def default_state_dir() -> str:
    """Return $XDG_STATE_HOME/policy-sidecar, else ~/.local/state/policy-sidecar."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "policy-sidecar")


@dataclass(frozen=True, slots=True)
class OpaSettings:
    """``policy.opa``: which OPA to ask (no address → a managed OPA process), how long to wait."""

    address: str | None = None
    binary: str | None = None
    timeout_ms: int = 500
    startup_timeout_s: float = 30.0
    port: int = 0
    extra_args: tuple[str, ...] = ()
    # Outage handling (DESIGN §6): one decision waits at most deadline_ms for OPA over all
    # attempts; then the fail mode answers.
    deadline_ms: int = 2000
    attempts: int = 3
    backoff_base_ms: int = 50
    backoff_max_ms: int = 500
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 5.0


@dataclass(frozen=True, slots=True)
class BundleSettings:
    """``policy.bundle``: how the bundle is built and signed, or pulled from a store; serving it."""

    source_dir: str = field(default_factory=default_source_dir)
    data_dirs: tuple[str, ...] = ()
    output: str = field(default_factory=lambda: str(Path(default_source_dir()) / BUNDLE_OUTPUT))
    signing_key: str | None = None
    verification_key: str | None = None
    revision: str | None = None
    # Set: the managed OPA pulls signed bundles from this store instead of the local build.
    service: BundleServiceSettings | None = None
    serve: BundleServeSettings = field(default_factory=BundleServeSettings)


@dataclass(frozen=True, slots=True)
class TenancySettings:
    """``policy.tenancy``: known tenants, repository prefix → tenant, configured storage usage."""

    tenants: tuple[str, ...] = ()
    prefixes: Mapping[str, str] = field(default_factory=dict)
    usage: Mapping[str, TenantUsage] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LegacySettings:
    """``policy.legacy``: Freightliner ReplicationRules and (already read) sync configs."""

    rules: tuple[ReplicationRule, ...] = ()
    sync_configs: tuple[SyncConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    """``policy.telemetry``: trace export and logging."""

    service_name: str = DEFAULT_SERVICE_NAME
    otlp_endpoint: str | None = None
    log_level: str = "info"
    log_format: str = "json"


@dataclass(frozen=True, slots=True)
class Limits:
    """``policy.limits``: request size limits enforced before enrichment."""

    max_labels: int = 256
    max_label_key_bytes: int = 256
    max_label_value_bytes: int = 4096


@dataclass(frozen=True, slots=True)
class DecisionRecordSettings:
    """``policy.decision_records``: how many decisions Explain can return, for how long, masked how."""

    max_entries: int = 10_000
    ttl_s: float = 3600.0
    mask: tuple[str, ...] = ()  # input paths shown as "***" (sidecar/masking.py)


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """The whole ``policy:`` section."""

    listen: str = DEFAULT_LISTEN
    metrics_listen: str = DEFAULT_METRICS_LISTEN
    opa: OpaSettings = field(default_factory=OpaSettings)
    bundle: BundleSettings = field(default_factory=BundleSettings)
    tenancy: TenancySettings = field(default_factory=TenancySettings)
    legacy: LegacySettings = field(default_factory=LegacySettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    limits: Limits = field(default_factory=Limits)
    decision_records: DecisionRecordSettings = field(default_factory=DecisionRecordSettings)
    state_dir: str = field(default_factory=default_state_dir)
    fail_mode: str = "closed"
    last_known_entries: int = DEFAULT_LAST_KNOWN_ENTRIES
    replication: ReplicationSettings = field(default_factory=ReplicationSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    sensitive_data: SensitiveDataSettings = field(default_factory=SensitiveDataSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
