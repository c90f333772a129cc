"""Parses the ``policy:`` section, the sidecar's own settings, into checked records.

Unlike Freightliner's sections, every key here is ours, so an unknown key is a typo and an error
(with a "did you mean" hint). Relative paths resolve against the config file's directory, so a
config works from any working directory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from sidecar.config._admin import parse_admin
from sidecar.config._bundle import parse_bundle_serve, parse_bundle_service
from sidecar.config._health import parse_health
from sidecar.config._legacy import SyncConfig, load_sync_config, parse_rules
from sidecar.config._read import Node, resolve_path
from sidecar.config._registries import RegistryConfig
from sidecar.config._replication import parse_replication
from sidecar.config._sensitive import parse_sensitive_data
from sidecar.config._settings import (
    BUNDLE_OUTPUT,
    DEFAULT_LAST_KNOWN_ENTRIES,
    DEFAULT_LISTEN,
    DEFAULT_METRICS_LISTEN,
    FAIL_MODES,
    BundleSettings,
    DecisionRecordSettings,
    LegacySettings,
    Limits,
    OpaSettings,
    PolicySettings,
    TelemetrySettings,
    TenancySettings,
    default_source_dir,
    default_state_dir,
)
from sidecar.masking import parse_mask_path
from sidecar.model.decision import TenantUsage
from sidecar.telemetry import LOG_FORMATS, LOG_LEVELS

__all__ = ["known_tenants", "parse_policy"]


def _given(fields: Mapping[str, Node], key: str) -> Node | None:
    node = fields.get(key)
    return None if node is None or node.is_null else node


def _listen(node: Node, *, allow_empty: bool) -> str:
    text = node.string()
    if not text and allow_empty:
        return ""
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise node.error(f"expected HOST:PORT (port 0-65535), got {text!r}")
    return text


def _url(node: Node) -> str:
    text = node.string(allow_empty=False)
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. "http://[x": an unbalanced IPv6 bracket
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise node.error(f"expected an http(s)://host:port URL, got {text!r}")
    return text.rstrip("/")


def _opa(node: Node, base: Path) -> OpaSettings:
    f = node.fields(OpaSettings.__dataclass_fields__, strict=True)
    d = OpaSettings()
    address, binary = _given(f, "address"), _given(f, "binary")
    return OpaSettings(
        address=_url(address) if address else None,
        binary=resolve_path(binary.string(allow_empty=False), base) if binary else None,
        timeout_ms=f["timeout_ms"].integer(minimum=1) if "timeout_ms" in f else d.timeout_ms,
        startup_timeout_s=(
            f["startup_timeout_s"].number(minimum=0.1)
            if "startup_timeout_s" in f
            else d.startup_timeout_s
        ),
        port=f["port"].integer(minimum=0, maximum=65535) if "port" in f else d.port,
        extra_args=f["extra_args"].string_list() if "extra_args" in f else (),
        **_opa_resilience(f, d),
    )


def _opa_resilience(f: Mapping[str, Node], d: OpaSettings) -> dict[str, Any]:
    """The deadline, retry and circuit-breaker keys of ``policy.opa``."""
    ints = ("deadline_ms", "attempts", "backoff_base_ms", "backoff_max_ms", "breaker_threshold")
    out: dict[str, Any] = {k: f[k].integer(minimum=1) for k in ints if k in f}
    if "breaker_cooldown_s" in f:
        out["breaker_cooldown_s"] = f["breaker_cooldown_s"].number(minimum=0.001)
    base = out.get("backoff_base_ms", d.backoff_base_ms)
    if out.get("backoff_max_ms", d.backoff_max_ms) < base:
        node = f.get("backoff_max_ms") or f["backoff_base_ms"]
        raise node.error(f"backoff_max_ms must be at least backoff_base_ms ({base})")
    return out


def _bundle(node: Node, base: Path) -> BundleSettings:
    f = node.fields(BundleSettings.__dataclass_fields__, strict=True)
    source = _given(f, "source_dir")
    source_dir = resolve_path(source.string(allow_empty=False), base) if source else None
    source_dir = source_dir or default_source_dir()
    output, revision, service = _given(f, "output"), _given(f, "revision"), _given(f, "service")
    data_dirs = f["data_dirs"].string_list() if "data_dirs" in f else ()

    def path(key: str) -> str | None:
        given = _given(f, key)
        return resolve_path(given.string(allow_empty=False), base) if given else None

    return BundleSettings(
        source_dir=source_dir,
        data_dirs=tuple(resolve_path(d, base) for d in data_dirs),
        output=(
            resolve_path(output.string(allow_empty=False), base)
            if output
            else str(Path(source_dir) / BUNDLE_OUTPUT)
        ),
        signing_key=path("signing_key"),
        verification_key=path("verification_key"),
        revision=revision.string(allow_empty=False) if revision else None,
        service=(
            parse_bundle_service(service, verification_key=path("verification_key"))
            if service
            else None
        ),
        serve=parse_bundle_serve(f.get("serve") or node.child("serve", None), base),
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


def _telemetry(node: Node) -> TelemetrySettings:
    f = node.fields(TelemetrySettings.__dataclass_fields__, strict=True)
    d = TelemetrySettings()
    endpoint = _given(f, "otlp_endpoint")
    if endpoint and "://" in endpoint.string():
        _url(endpoint)
    return TelemetrySettings(
        service_name=(
            f["service_name"].string(allow_empty=False) if "service_name" in f else d.service_name
        ),
        otlp_endpoint=endpoint.string(allow_empty=False) if endpoint else None,
        log_level=f["log_level"].choice(tuple(LOG_LEVELS)) if "log_level" in f else d.log_level,
        log_format=f["log_format"].choice(LOG_FORMATS) if "log_format" in f else d.log_format,
    )


def _limits(node: Node) -> Limits:
    f = node.fields(Limits.__dataclass_fields__, strict=True)
    d = Limits()
    return Limits(
        max_labels=f["max_labels"].integer(minimum=1) if "max_labels" in f else d.max_labels,
        max_label_key_bytes=(
            f["max_label_key_bytes"].integer(minimum=1)
            if "max_label_key_bytes" in f
            else d.max_label_key_bytes
        ),
        max_label_value_bytes=(
            f["max_label_value_bytes"].integer(minimum=1)
            if "max_label_value_bytes" in f
            else d.max_label_value_bytes
        ),
    )


def _records(node: Node) -> DecisionRecordSettings:
    f = node.fields(DecisionRecordSettings.__dataclass_fields__, strict=True)
    d = DecisionRecordSettings()
    mask = f["mask"].string_list() if "mask" in f else ()
    for item in f["mask"].items() if "mask" in f else ():
        try:
            parse_mask_path(item.string())
        except ValueError as exc:
            raise item.error(str(exc)) from None
    return DecisionRecordSettings(
        max_entries=f["max_entries"].integer(minimum=1) if "max_entries" in f else d.max_entries,
        ttl_s=f["ttl_s"].number(minimum=0.001) if "ttl_s" in f else d.ttl_s,
        mask=mask,
    )


def parse_policy(node: Node, base: Path, registries: Sequence[RegistryConfig]) -> PolicySettings:
    """Parse the ``policy:`` section; relative paths resolve against ``base``."""
    f = node.fields(PolicySettings.__dataclass_fields__, strict=True)

    def section(key: str) -> Node:
        return f.get(key) or node.child(key, None)

    metrics = f.get("metrics_listen")
    state = _given(f, "state_dir")
    opa, bundle = _opa(section("opa"), base), _bundle(section("bundle"), base)
    if opa.address and bundle.service:
        where = section("bundle").child("service", None)
        raise where.error(
            "configures the managed OPA, but policy.opa.address names an external one: "
            "configure that OPA to pull bundles itself (deploy/opa/*.yaml)"
        )
    return PolicySettings(
        listen=_listen(f["listen"], allow_empty=False) if "listen" in f else DEFAULT_LISTEN,
        metrics_listen=(
            _listen(metrics, allow_empty=True)
            if metrics and not metrics.is_null
            else ("" if metrics else DEFAULT_METRICS_LISTEN)
        ),
        opa=opa,
        bundle=bundle,
        tenancy=_tenancy(section("tenancy")),
        legacy=_legacy(section("legacy"), base, registries),
        telemetry=_telemetry(section("telemetry")),
        limits=_limits(section("limits")),
        decision_records=_records(section("decision_records")),
        state_dir=(
            resolve_path(state.string(allow_empty=False), base) if state else default_state_dir()
        ),
        fail_mode=f["fail_mode"].choice(FAIL_MODES) if "fail_mode" in f else FAIL_MODES[0],
        last_known_entries=(
            f["last_known_entries"].integer(minimum=1)
            if "last_known_entries" in f
            else DEFAULT_LAST_KNOWN_ENTRIES
        ),
        replication=parse_replication(
            section("replication"), base, frozenset(r.name for r in registries)
        ),
        health=parse_health(section("health")),
        sensitive_data=parse_sensitive_data(section("sensitive_data"), base),
        admin=parse_admin(section("admin"), base),
    )
