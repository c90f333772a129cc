"""Parses the ``policy:`` section, the sidecar's own settings, into checked records.

Unlike Freightliner's sections, every key here is ours, so an unknown key is a typo and an error
(with a "did you mean" hint). Relative paths resolve against the config file's directory, so a
config works from any working directory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

from sidecar.config._admin import parse_admin
from sidecar.config._bundle import parse_bundle_serve, parse_bundle_service
from sidecar.config._health import parse_health
from sidecar.config._legacy import SyncConfig, load_sync_config, parse_rules
from sidecar.config._model import keys, read_record
from sidecar.config._read import Node, resolve_path
from sidecar.config._registries import RegistryConfig
from sidecar.config._replication import parse_replication
from sidecar.config._sensitive import parse_sensitive_data
from sidecar.config._settings import (
    BUNDLE_OUTPUT,
    BundleSettings,
    DecisionRecordSettings,
    LegacySettings,
    Limits,
    OpaSettings,
    PolicySettings,
    TelemetrySettings,
    TenancySettings,
)
from sidecar.model.decision import TenantUsage

__all__ = ["known_tenants", "parse_policy"]


def _given(fields: Mapping[str, Node], key: str) -> Node | None:
    node = fields.get(key)
    return None if node is None or node.is_null else node


def _section(node: Node, key: str) -> Node:
    return node.fields().get(key) or node.child(key, None)


def _opa(node: Node, base: Path) -> OpaSettings:
    opa = read_record(OpaSettings, node, base=base)
    if opa.backoff_max_ms < opa.backoff_base_ms:
        f = node.fields()
        where = f.get("backoff_max_ms") or f["backoff_base_ms"]
        raise where.error(
            f"backoff_max_ms must be at least backoff_base_ms ({opa.backoff_base_ms})"
        )
    return opa


def _bundle(node: Node, base: Path) -> BundleSettings:
    f = node.fields()
    service = _given(f, "service")
    serve = parse_bundle_serve(_section(node, "serve"), base)
    bundle = read_record(BundleSettings, node, base=base, given={"service": None, "serve": serve})
    if "output" not in f or f["output"].is_null:
        bundle = replace(bundle, output=str(Path(bundle.source_dir) / BUNDLE_OUTPUT))
    if service is None:
        return bundle
    return replace(
        bundle,
        service=parse_bundle_service(service, verification_key=bundle.verification_key),
    )


def _usage(tenant: str, node: Node) -> TenantUsage:
    f = node.fields(("storage_used_bytes", "storage_limit_bytes"), strict=True)
    used, limit = _given(f, "storage_used_bytes"), _given(f, "storage_limit_bytes")
    return TenantUsage(
        id=tenant,
        storage_used_bytes=used.integer(minimum=0) if used else 0,
        storage_limit_bytes=limit.integer(minimum=0) if limit else 0,
    )


def _tenancy(node: Node) -> TenancySettings:
    f = node.fields(TenancySettings.__dataclass_fields__, strict=True)
    tenants = f["tenants"].string_list() if "tenants" in f else ()
    known = set(tenants)

    def tenant(value: Node) -> str:
        name = value.string(allow_empty=False)
        if known and name not in known:
            raise value.error(f"unknown tenant {name!r} (policy.tenancy.tenants: {sorted(known)})")
        return name

    prefixes: dict[str, str] = {}
    for prefix, value in (f["prefixes"].raw_mapping() if "prefixes" in f else {}).items():
        if not prefix:
            raise value.error("a repository prefix must not be empty")
        prefixes[prefix] = tenant(value)
    usage: dict[str, TenantUsage] = {}
    for name, value in (f["usage"].raw_mapping() if "usage" in f else {}).items():
        tenant(value.at(value.path, name))
        usage[name] = _usage(name, value)
    return TenancySettings(tenants, MappingProxyType(prefixes), MappingProxyType(usage))


def known_tenants(policy: Node) -> frozenset[str]:
    """Return ``policy.tenancy.tenants`` (checked again in full by :func:`parse_policy`)."""
    tenancy = policy.fields().get("tenancy")
    if tenancy is None:
        return frozenset()
    tenants = tenancy.fields().get("tenants")
    return frozenset(tenants.string_list()) if tenants is not None else frozenset()


def _legacy(node: Node, base: Path, registries: Sequence[RegistryConfig]) -> LegacySettings:
    f = node.fields(LegacySettings.__dataclass_fields__, strict=True)
    names = frozenset(r.name for r in registries)
    rules = parse_rules(f["rules"], names) if "rules" in f else ()
    syncs: list[SyncConfig] = []
    for item in f["sync_configs"].items() if "sync_configs" in f else ():
        path = resolve_path(item.string(allow_empty=False), base)
        if not Path(path).is_file():
            raise item.error(f"sync config {path} does not exist")
        syncs.append(load_sync_config(path, registries))
    return LegacySettings(rules, tuple(syncs))


def parse_policy(node: Node, base: Path, registries: Sequence[RegistryConfig]) -> PolicySettings:
    """Parse the ``policy:`` section; relative paths resolve against ``base``."""
    f = node.fields(keys(PolicySettings), strict=True)

    def section(key: str) -> Node:
        return f.get(key) or node.child(key, None)

    opa, bundle = _opa(section("opa"), base), _bundle(section("bundle"), base)
    if opa.address and bundle.service:
        raise (
            section("bundle")
            .child("service", None)
            .error(
                "configures the managed OPA, but policy.opa.address names an external one: "
                "configure that OPA to pull bundles itself (deploy/opa/*.yaml)"
            )
        )
    names = frozenset(r.name for r in registries)
    sections = {
        "opa": opa,
        "bundle": bundle,
        "tenancy": _tenancy(section("tenancy")),
        "legacy": _legacy(section("legacy"), base, registries),
        "telemetry": read_record(TelemetrySettings, section("telemetry")),
        "limits": read_record(Limits, section("limits")),
        "decision_records": read_record(DecisionRecordSettings, section("decision_records")),
        "replication": parse_replication(section("replication"), base, names),
        "health": parse_health(section("health")),
        "sensitive_data": parse_sensitive_data(section("sensitive_data"), base),
        "admin": parse_admin(section("admin"), base),
    }
    if "metrics_listen" in f and f["metrics_listen"].is_null:
        sections["metrics_listen"] = ""  # null: no metrics listener
    return read_record(PolicySettings, node, base=base, given=sections)
