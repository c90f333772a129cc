"""The ``legacy`` fail mode: Freightliner rules evaluated natively, with the policy's safety denials.

Mirrors rego/replication/{legacy,scan,compliance,tenancy,dr,placement,priority}.rego for the
registries legacy rules route, so a degraded answer routes exactly as OPA would through those
rules. Registries no legacy rule routes are denied ``POLICY_UNAVAILABLE`` (plus any safety code that
applies to them): environment routing and explicit-rule routing need OPA. See docs/policy.md,
"When OPA is down".
"""

from __future__ import annotations

import math
from datetime import timedelta
from types import MappingProxyType

from sidecar.enrich.rfc3339 import parse_rfc3339
from sidecar.fallback._data import FallbackData
from sidecar.fallback._rules import active_rules
from sidecar.fallback.legacy import match_rule, pattern_matches
from sidecar.model.decision import (
    Decision,
    Deferral,
    Denial,
    PolicyInput,
    Reason,
    RegistryFacts,
    Route,
)

__all__ = ["POLICY_UNAVAILABLE", "REASON_MESSAGES", "legacy_decision"]

POLICY_UNAVAILABLE = "POLICY_UNAVAILABLE"
# The same human messages as the Rego packages' `reasons` (rego/replication/*.rego), so a degraded
# answer reads like a normal one.
REASON_MESSAGES = MappingProxyType(
    {
        "COST_CONSOLIDATED": "estimated replication cost exceeds the threshold; routes consolidated",
        "CROSS_TENANT": "the caller acts for a different tenant than the image's",
        "CUSTOMER_NOT_ALLOWED": "registry accepts only images of its allowlisted customers",
        "FAILOVER_SECONDARY": "primary registry is unhealthy; its secondary receives the image",
        "LEGACY_RULE": "routed by a legacy Freightliner replication rule",
        "NOT_GDPR": "compliance-required image may only go to GDPR registries",
        "POLICY_UNAVAILABLE": "OPA is unreachable; only what the fail mode can decide is routed",
        "REGISTRY_UNAVAILABLE": "registry is unhealthy; replication deferred until it recovers",
        "SCAN_EXPIRED": "security scan is older than the maximum scan age",
        "SCAN_FAILED": "security scan failed or found critical vulnerabilities",
        "SCAN_MISSING": "image has no security scan",
        "SECONDARY_STANDBY": "secondary registry stands by while its primary is healthy",
        "TENANT_ISOLATION": "registry is dedicated to other tenants",
    }
)
POLICY_ID = "sidecar.fallback.legacy"
_CUSTOMER_LABEL = "customer-id"  # as rego/replication/customers.rego


def _tenant(value: str | None) -> str | None:
    return value or None  # "" means no tenant, exactly like null (proto3 has no null)


def image_environment(data: FallbackData, tag: str) -> str:
    """The environment of the first tag pattern matching ``tag``, else the default one."""
    for entry in data.patterns:
        if pattern_matches(entry.pattern, tag):
            return entry.environment
    return data.default_environment


def _blocking(data: FallbackData, policy_input: PolicyInput) -> set[str]:
    codes: set[str] = set()
    scan = policy_input.image.scan
    if scan is not None:
        completed, now = parse_rfc3339(scan.completed_at), parse_rfc3339(policy_input.now)
        if completed and now and now - completed > timedelta(days=data.max_scan_age_days):
            codes.add("SCAN_EXPIRED")
    caller = _tenant(policy_input.caller.tenant)
    if caller is not None and caller != _tenant(policy_input.image.tenant):
        codes.add("CROSS_TENANT")
    return codes


def _safety_codes(
    data: FallbackData, policy_input: PolicyInput, registry: RegistryFacts, failover: set[str]
) -> set[str]:
    image = policy_input.image
    codes: set[str] = set()
    if registry.environment in data.gated_environments:
        if image.scan is None:
            codes.add("SCAN_MISSING")
        elif image.scan.status == "failed" or image.scan.critical > 0:
            codes.add("SCAN_FAILED")
    if image.labels.get(data.compliance_label) == "true" and not registry.gdpr:
        codes.add("NOT_GDPR")
    if registry.tenants and _tenant(image.tenant) not in registry.tenants:
        codes.add("TENANT_ISOLATION")
    if registry.role == "secondary" and registry.name not in failover:
        codes.add("SECONDARY_STANDBY")
    allowed = data.customer_allowlist.get(registry.name)
    if allowed is not None and image.labels.get(_CUSTOMER_LABEL) not in allowed:
        codes.add("CUSTOMER_NOT_ALLOWED")
    return codes


def _legacy_targets(
    data: FallbackData, policy_input: PolicyInput, others: set[str]
) -> dict[str, tuple[str, str]]:
    """Destination → (repository, tag) of the winning rule: the smallest id, as in legacy.rego."""
    found: dict[str, tuple[str, tuple[str, str]]] = {}
    for rule in data.legacy_rules:
        if rule.destination_registry not in others:
            continue
        target = match_rule(rule, policy_input.image.ref)
        if target is None:
            continue
        current = found.get(rule.destination_registry)
        if current is None or rule.id < current[0]:
            found[rule.destination_registry] = (rule.id, target)
    return {name: target for name, (_, target) in found.items()}


def _rank(policy_input: PolicyInput, registries: list[RegistryFacts]) -> list[RegistryFacts]:
    access = policy_input.access
    return sorted(
        registries, key=lambda r: (-access.get(r.region, 0), r.egress_cost_per_gb, r.name)
    )


def _priority(data: FallbackData, policy_input: PolicyInput, env: str, rule: float | None) -> int:
    if rule is None:
        weights = data.criticality
        label = policy_input.image.labels.get("criticality", "")
        weight = weights.get(label, weights.get(data.default_criticality, 0))
        rule = weight + data.environment_weight.get(env, 0)
    # OPA's round() rounds half away from zero; priorities are never negative after the clamp.
    return max(0, min(100, math.floor(rule + 0.5)))


def legacy_decision(data: FallbackData, policy_input: PolicyInput) -> Decision:
    """Return the decision the legacy rules and safety checks give for ``policy_input``."""
    source = policy_input.image.ref.registry
    others = {r.name: r for r in policy_input.registries if r.name != source}
    unhealthy = {r.name for r in policy_input.registries if not r.healthy}
    failover = {
        r.name for r in policy_input.registries if r.role == "secondary" and r.backs in unhealthy
    }
    env = image_environment(data, policy_input.image.ref.tag)
    rules = active_rules(data, policy_input, env)
    priority = _priority(data, policy_input, env, rules.priority())
    blocking = _blocking(data, policy_input)
    if blocking:
        denied = tuple(Denial(name, tuple(sorted(blocking))) for name in sorted(others))
        return _decision(False, priority=priority, denied=denied, codes=blocking)
    targets = _legacy_targets(data, policy_input, set(others))
    rule_denials = rules.denials(source)
    codes: dict[str, set[str]] = {}
    for name, registry in others.items():
        found = _safety_codes(data, policy_input, registry, failover)
        found |= rule_denials.get(name, set())
        if name not in targets:
            found.add(POLICY_UNAVAILABLE)
        if found:
            codes[name] = found
    passed = [others[name] for name in targets if name not in codes]
    ranked = _rank(policy_input, [r for r in passed if r.name not in unhealthy])
    deferred = tuple(
        Deferral(r.name, "REGISTRY_UNAVAILABLE")
        for r in sorted(passed, key=lambda r: r.name)
        if r.name in unhealthy
    )
    size_gb = policy_input.image.size_bytes / 1_000_000_000
    if size_gb * sum(r.egress_cost_per_gb for r in ranked) > data.cost_threshold:
        gdpr_kept = policy_input.image.labels.get(data.compliance_label) == "true"
        kept = [r for i, r in enumerate(ranked) if i == 0 or (gdpr_kept and r.gdpr)]
        for dropped in {r.name for r in ranked} - {r.name for r in kept}:
            codes[dropped] = {"COST_CONSOLIDATED"}
        ranked = kept
    routes = tuple(
        Route(r.name, targets[r.name][0], targets[r.name][1], rank)
        for rank, r in enumerate(ranked, start=1)
    )
    denied = tuple(Denial(name, tuple(sorted(codes[name]))) for name in sorted(codes))
    used = {c for found in codes.values() for c in found}
    used |= {"LEGACY_RULE"} if routes else set()
    used |= {"REGISTRY_UNAVAILABLE"} if deferred else set()
    used |= {"FAILOVER_SECONDARY"} if any(r.registry in failover for r in routes) else set()
    return _decision(
        True, priority=priority, routes=routes, denied=denied, deferred=deferred, codes=used
    )


def _decision(
    allow: bool,
    *,
    priority: int,
    routes: tuple[Route, ...] = (),
    denied: tuple[Denial, ...] = (),
    deferred: tuple[Deferral, ...] = (),
    codes: set[str],
) -> Decision:
    reasons = tuple(
        Reason(code, REASON_MESSAGES.get(code, f"denied by explicit rule ({code})"))
        for code in sorted(codes)
    )
    # Cleanup actions are left for OPA: nothing destructive is decided on a degraded answer.
    return Decision(
        allow=allow,
        priority=priority,
        routes=routes,
        denied=denied,
        deferred=deferred,
        reasons=reasons,
        policies=(POLICY_ID,),
    )
