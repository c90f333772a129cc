"""Parses the ``policy:`` section, the sidecar's own settings, into checked records.

Unlike Freightliner's sections, every key here is ours, so an unknown key is a typo and an error
(with a "did you mean" hint). Relative paths resolve against the config file's directory, so a
config works from any working directory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

from pydantic import ConfigDict, Field

from sidecar.config._admin import parse_admin
from sidecar.config._auth import is_loopback, parse_auth
from sidecar.config._bundle import parse_bundle_serve, parse_bundle_service
from sidecar.config._health import parse_health
from sidecar.config._legacy import read_rule
from sidecar.config._model import Int, keys, read_record
from sidecar.config._read import Node
from sidecar.config._reconcile import parse_reconcile
from sidecar.config._registries import RegistryConfig
from sidecar.config._replication import parse_replication
from sidecar.config._sensitive import parse_sensitive_data
from sidecar.config._settings import (
    BUNDLE_OUTPUT,
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
    if service is None:
        return bundle
    return replace(
        bundle,
        service=parse_bundle_service(service, verification_key=bundle.verification_key),
    )


@dataclass(frozen=True, slots=True)
class _Storage:
    """One tenant's entry of ``policy.tenancy.usage`` (a TenantUsage without its id)."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    storage_used_bytes: Annotated[Int, Field(ge=0)] = 0
    storage_limit_bytes: Annotated[Int, Field(ge=0)] = 0


def _tenancy(node: Node) -> TenancySettings:
    f = node.fields()
    usage: dict[str, TenantUsage] = {}
    for name, entry in (f["usage"].raw_mapping() if "usage" in f else {}).items():
        storage = read_record(_Storage, entry)
        usage[name] = TenantUsage(name, storage.storage_used_bytes, storage.storage_limit_bytes)
    tenancy = read_record(TenancySettings, node, given={"usage": usage})
    known = set(tenancy.tenants)
    named = [("prefixes", key, name) for key, name in tenancy.prefixes.items()]
    for section, key, name in [*named, *(("usage", name, name) for name in tenancy.usage)]:
        if known and name not in known:
            raise (
                f[section]
                .child(key, None)
                .error(f"unknown tenant {name!r} (policy.tenancy.tenants: {sorted(known)})")
            )
    return tenancy


def known_tenants(policy: Node) -> frozenset[str]:
    """Return ``policy.tenancy.tenants`` (checked again in full by :func:`parse_policy`)."""
    tenancy = policy.fields().get("tenancy")
    if tenancy is None:
        return frozenset()
    return frozenset(
        read_record(TenancySettings, tenancy, known=("tenants",), lenient=True).tenants
    )


def _legacy(node: Node, base: Path, registries: Sequence[RegistryConfig]) -> LegacySettings:
    f = node.fields(keys(LegacySettings), strict=True)
    names = frozenset(r.name for r in registries)
    rules = tuple(read_rule(item, names) for item in f["rules"].items()) if "rules" in f else ()
    return read_record(
        LegacySettings,
        node,
        base=base,
        given={"rules": rules},
        context={"registries": registries},
    )


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
        "decision_cache": read_record(DecisionCacheSettings, section("decision_cache")),
        "facts": read_record(FactSettings, section("facts")),
        "replication": parse_replication(section("replication"), base, names),
        "health": parse_health(section("health")),
        "reconcile": parse_reconcile(section("reconcile"), names),
        "sensitive_data": parse_sensitive_data(section("sensitive_data"), base),
        "admin": parse_admin(section("admin"), base),
        "auth": parse_auth(section("auth"), base),
    }
    if "metrics_listen" in f and f["metrics_listen"].is_null:
        sections["metrics_listen"] = ""  # null: no metrics listener
    policy = read_record(PolicySettings, node, base=base, given=sections)
    output = section("bundle").fields().get("output")
    if output is None or output.is_null:
        # The default output lives under state_dir, never beside the sources (site-packages).
        built = str(Path(policy.state_dir) / BUNDLE_OUTPUT)
        policy = replace(policy, bundle=replace(policy.bundle, output=built))
    if (
        policy.auth is None
        and not policy.allow_unauthenticated_listen
        and not is_loopback(policy.listen)
    ):
        raise section("listen").error(
            f"{policy.listen} is not loopback, and without policy.auth every caller there is "
            "trusted: configure policy.auth, listen on 127.0.0.1, or set "
            "policy.allow_unauthenticated_listen: true"
        )
    return policy
