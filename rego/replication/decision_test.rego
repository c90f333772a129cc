package replication_test

import rego.v1

import data.replication
import data.replication.compliance
import data.replication.customers
import data.replication.dr
import data.replication.environment
import data.replication.fixtures_test as fx
import data.replication.legacy
import data.replication.placement
import data.replication.scan
import data.replication.tenancy

_names(list) := [entry.registry | some entry in list]

_denied(decision) := {entry.registry: entry.reasons | some entry in decision.denied}

_codes(decision) := [reason.code | some reason in decision.reasons]

# DESIGN 3.2: every registry but the source is in exactly one of routes, denied, deferred.
_exactly_once(decision, source) if {
	listed := array.flatten([_names(decision.routes), _names(decision.denied), _names(decision.deferred)])
	count(listed) == count({name | some name in listed})
	{name | some name in listed} == {r.name | some r in fx.registries; r.name != source}
}

_keys := {"allow", "priority", "routes", "denied", "deferred", "actions", "remove", "reasons", "policies"}

test_prod_image_routes_to_prod_registries if {
	decision := replication.decision with input as fx.base
	decision.allow
	_names(decision.routes) == ["prod-us", "prod-eu", "prod-ap"]
	[route.rank | some route in decision.routes] == [1, 2, 3]
	_denied(decision) == {
		"acme-prod": ["TENANT_ISOLATION"], "dev-eu": ["ENV_MISMATCH"], "dev-us": ["ENV_MISMATCH"],
		"prod-eu-dr": ["SECONDARY_STANDBY"], "sandbox": ["ENV_MISMATCH"],
	}
	decision.deferred == []
	_exactly_once(decision, "ci")
	decision.priority == 60
}

test_default_route_target_is_the_image if {
	decision := replication.decision with input as fx.base
	decision.routes[0] == {"registry": "prod-us", "repository": "team/app", "tag": "prod-1.0", "rank": 1}
}

test_pulls_reorder_routes if {
	decision := replication.decision with input as fx.with_input({"access": {"eu-west-1": 50, "us-east-1": 3}})
	_names(decision.routes) == ["prod-eu", "prod-us", "prod-ap"]
}

test_empty_input_yields_every_field if {
	decision := replication.decision with input as {}
	object.keys(decision) == _keys
	decision.allow
	decision.routes == []
	decision.policies == ["replication.decision", "replication.priority"]
}

test_null_parts_yield_every_field if {
	partial := {
		"image": {"registry": "ci", "tag": "prod-1", "scan": null, "tenant": null, "labels": null},
		"registries": fx.registries,
		"tenant": null,
		"caller": {"tenant": null},
	}
	decision := replication.decision with input as partial
	object.keys(decision) == _keys
	_exactly_once(decision, "ci")
	_denied(decision)["prod-us"] == ["SCAN_MISSING"]
}

test_unhealthy_wanted_registry_is_deferred if {
	decision := replication.decision with input as fx.with_registries({}, fx.patch_registry("prod-ap", {"healthy": false}))
	decision.deferred == [{"registry": "prod-ap", "reason": "REGISTRY_UNAVAILABLE"}]
	"REGISTRY_UNAVAILABLE" in _codes(decision)
	"replication.dr" in decision.policies
	_exactly_once(decision, "ci")
}

test_denial_beats_deferral if {
	decision := replication.decision with input as fx.with_registries({}, fx.patch_registry("dev-us", {"healthy": false}))
	_denied(decision)["dev-us"] == ["ENV_MISMATCH"]
	decision.deferred == []
}

test_failover_routes_secondary if {
	decision := replication.decision with input as fx.with_registries({}, fx.patch_registry("prod-eu", {"healthy": false}))
	"prod-eu-dr" in _names(decision.routes)
	decision.deferred == [{"registry": "prod-eu", "reason": "REGISTRY_UNAVAILABLE"}]
	"FAILOVER_SECONDARY" in _codes(decision)
	_exactly_once(decision, "ci")
}

test_expired_scan_denies_everything if {
	expired := fx.image({"scan": object.union(fx.passed_scan, {"completed_at": "2026-01-01T00:00:00Z"})})
	decision := replication.decision with input as expired
	not decision.allow
	decision.routes == []
	decision.deferred == []
	_exactly_once(decision, "ci")
	_codes(decision) == ["SCAN_EXPIRED"]
	decision.priority == 60
	every entry in decision.denied { entry.reasons == ["SCAN_EXPIRED"] }
}

test_cross_tenant_denies_everything_but_keeps_actions if {
	usage := {"id": "acme", "storage_used_bytes": 9, "storage_limit_bytes": 1}
	cross := object.union(fx.image({"tenant": "acme"}), {"caller": {"tenant": "globex"}, "tenant": usage})
	decision := replication.decision with input as cross
	not decision.allow
	_exactly_once(decision, "ci")
	decision.actions == [{"type": "cleanup", "tenant": "acme", "keep_last": 10, "older_than_days": 30}]
	_codes(decision) == ["CROSS_TENANT", "QUOTA_EXCEEDED"]
	decision.policies == ["replication.decision", "replication.priority", "replication.tenancy"]
	every entry in decision.denied { entry.reasons == ["CROSS_TENANT"] }
}

test_both_blocking_reasons_listed if {
	both := object.union(
		fx.image({"scan": object.union(fx.passed_scan, {"completed_at": "2020-01-01T00:00:00Z"})}),
		{"caller": {"tenant": "globex"}},
	)
	decision := replication.decision with input as both
	_denied(decision)["prod-us"] == ["CROSS_TENANT", "SCAN_EXPIRED"]
}

test_compliance_keeps_gdpr_only if {
	decision := replication.decision with input as fx.image({"labels": {"compliance-required": "true"}})
	_names(decision.routes) == ["prod-eu"]
	_denied(decision)["prod-us"] == ["NOT_GDPR"]
	_denied(decision)["dev-us"] == ["ENV_MISMATCH", "NOT_GDPR"]
	"replication.compliance" in decision.policies
}

test_cost_consolidation_keeps_rank_one_and_compliance if {
	big := fx.with_registries(
		{"size_bytes": 5000000000000, "labels": {"compliance-required": "true"}},
		fx.patch_registry("prod-eu", {"healthy": false}),
	)
	decision := replication.decision with input as object.union(big, {"access": {"us-east-1": 9}})
	_names(decision.routes) == ["prod-eu-dr"]
	consolidated := object.union(fx.image({"size_bytes": 5000000000000}), {"access": {"eu-west-1": 9}})
	plain := replication.decision with input as consolidated
	_names(plain.routes) == ["prod-eu"]
	_denied(plain)["prod-us"] == ["COST_CONSOLIDATED"]
	_denied(plain)["prod-ap"] == ["COST_CONSOLIDATED"]
	"COST_CONSOLIDATED" in _codes(plain)
	"replication.placement" in plain.policies
	_exactly_once(plain, "ci")
}

test_cost_consolidation_keeps_every_gdpr_route if {
	inventory := fx.patch_registry("prod-eu", {"healthy": false})
	failover := fx.with_registries({"size_bytes": 5000000000000, "labels": {"compliance-required": "true"}}, inventory)
	decision := replication.decision with input as failover
	_names(decision.routes) == ["prod-eu-dr"]
}

test_rule_denial_beats_route_and_legacy if {
	rules := [{"id": "embargo", "deny": [{"registry": "prod-us", "code": "EMBARGO"}, {"registry": "dev-us"}]}]
	legacy := [{
		"id": "legacy-0",
		"source_registry": "ci",
		"source_regex": "^team/([^/]*)$",
		"destination_registry": "dev-us",
	}]
	decision := replication.decision with input as fx.base
		with data.replication.rules as rules
		with data.replication.legacy.rules as legacy
	_denied(decision)["prod-us"] == ["EMBARGO"]
	_denied(decision)["dev-us"] == ["RULE_DENIED"]
	{"code": "EMBARGO", "message": "denied by explicit rule embargo"} in decision.reasons
	"replication.rules" in decision.policies
	not "LEGACY_RULE" in _codes(decision)
}

test_rule_destination_template if {
	rules := [{"id": "mirror", "set": {"destination_repository": "mirror/{repository}-{tag}"}}]
	decision := replication.decision with input as fx.base with data.replication.rules as rules
	decision.routes[0].repository == "mirror/team/app-prod-1.0"
	"replication.rules" in decision.policies
}

test_legacy_route_bypasses_env_mismatch if {
	legacy := [{
		"id": "legacy-0",
		"source_registry": "ci",
		"source_regex": "^team/([^/]*)$",
		"destination_registry": "dev-us",
		"destination_repository": "legacy/$1",
		"destination_tag_suffix": "-ci",
	}]
	decision := replication.decision with input as fx.base with data.replication.legacy.rules as legacy
	"LEGACY_RULE" in _codes(decision)
	"replication.legacy" in decision.policies
	_exactly_once(decision, "ci")
	{"registry": "dev-us", "repository": "legacy/app", "tag": "prod-1.0-ci", "rank": 1} in decision.routes
}

test_legacy_route_still_obeys_safety_denials if {
	legacy := [{"id": "legacy-0", "source_regex": "^team/([^/]*)$", "destination_registry": "prod-us"}]
	unscanned := replication.decision with input as fx.image({"tag": "dev-1", "scan": null})
		with data.replication.legacy.rules as legacy
	_denied(unscanned)["prod-us"] == ["SCAN_MISSING"]
	gdpr := replication.decision with input as fx.image({"tag": "dev-1", "labels": {"compliance-required": "true"}})
		with data.replication.legacy.rules as legacy
	_denied(gdpr)["prod-us"] == ["NOT_GDPR"]
	tenant_legacy := [object.union(legacy[0], {"destination_registry": "acme-prod"})]
	isolated := replication.decision with input as fx.base with data.replication.legacy.rules as tenant_legacy
	_denied(isolated)["acme-prod"] == ["TENANT_ISOLATION"]
	expired := fx.image({"scan": object.union(fx.passed_scan, {"completed_at": "2020-01-01T00:00:00Z"})})
	blocked := replication.decision with input as expired with data.replication.legacy.rules as legacy
	blocked.routes == []
}

test_reasons_sorted_with_messages if {
	decision := replication.decision with input as fx.base
	codes := _codes(decision)
	codes == sort(codes)
	codes == ["ENV_MISMATCH", "SECONDARY_STANDBY", "TENANT_ISOLATION"]
	every reason in decision.reasons { reason.message != "" }
}

test_lists_sorted_by_registry if {
	decision := replication.decision with input as fx.image({"tag": "dev-1"})
	_names(decision.denied) == sort(_names(decision.denied))
}

test_tenant_image_routes_to_dedicated_registry if {
	decision := replication.decision with input as fx.image({"tenant": "acme"})
	"acme-prod" in _names(decision.routes)
}

test_missing_source_registry_keeps_every_check if {
	partial := {"image": {"tag": "prod-1", "scan": null}, "registries": fx.registries}
	decision := replication.decision with input as partial
	_denied(decision)["prod-us"] == ["SCAN_MISSING"]
	_denied(decision).ci == ["ENV_MISMATCH"]
	_denied(decision)["acme-prod"] == ["SCAN_MISSING", "TENANT_ISOLATION"]
	_denied(decision)["prod-eu-dr"] == ["SCAN_MISSING", "SECONDARY_STANDBY"]
	decision.routes == []
}

test_missing_source_registry_keeps_rule_denials if {
	rules := [{"id": "block", "deny": [{"registry": "prod-us"}]}]
	decision := replication.decision with input as {"image": {"tag": "dev-1"}, "registries": fx.registries}
		with data.replication.rules as rules
	_denied(decision)["prod-us"] == ["ENV_MISMATCH", "RULE_DENIED", "SCAN_MISSING"]
}

_customer_allowlist := {"customers": {"allowlist": {"prod-us": ["secret-customer-7"]}}}

test_customer_allowlist_denies_other_customers_without_quoting_it if {
	image := fx.image({"labels": {"customer-id": "cust-z"}})
	decision := replication.decision with input as image with data.sensitive as _customer_allowlist
	_names(decision.routes) == ["prod-eu", "prod-ap"]
	_denied(decision)["prod-us"] == ["CUSTOMER_NOT_ALLOWED"]
	"CUSTOMER_NOT_ALLOWED" in _codes(decision)
	"replication.customers" in decision.policies
	_exactly_once(decision, "ci")
	not contains(json.marshal(decision), "secret-customer-7")
}

test_customer_allowlist_routes_its_customer if {
	image := fx.image({"labels": {"customer-id": "secret-customer-7"}})
	decision := replication.decision with input as image with data.sensitive as _customer_allowlist
	_names(decision.routes) == ["prod-us", "prod-eu", "prod-ap"]
	not "CUSTOMER_NOT_ALLOWED" in _codes(decision)
}

# Each concern package declares the codes it emits; a code belongs to exactly one package.
test_each_package_owns_its_reason_codes if {
	object.keys(compliance.reasons) == {"NOT_GDPR"}
	object.keys(customers.reasons) == {"CUSTOMER_NOT_ALLOWED"}
	object.keys(dr.reasons) == {"FAILOVER_SECONDARY", "REGISTRY_UNAVAILABLE", "SECONDARY_STANDBY"}
	object.keys(environment.reasons) == {"ENV_MISMATCH"}
	object.keys(legacy.reasons) == {"LEGACY_RULE"}
	object.keys(placement.reasons) == {"COST_CONSOLIDATED"}
	object.keys(scan.reasons) == {"SCAN_EXPIRED", "SCAN_FAILED", "SCAN_MISSING"}
	object.keys(tenancy.reasons) == {"CROSS_TENANT", "QUOTA_EXCEEDED", "TENANT_ISOLATION"}
}

test_decision_messages_come_from_the_owning_package if {
	decision := replication.decision with input as fx.image({"tag": "dev-1", "scan": null})
	{"code": "ENV_MISMATCH", "message": environment.reasons.ENV_MISMATCH} in decision.reasons
	{"code": "SECONDARY_STANDBY", "message": dr.reasons.SECONDARY_STANDBY} in decision.reasons
}

test_rule_denial_with_a_package_code_reads_like_the_package if {
	rules := [{"id": "gdpr-only", "deny": [{"registry": "prod-us", "code": "NOT_GDPR"}]}]
	decision := replication.decision with input as fx.base with data.replication.rules as rules
	_denied(decision)["prod-us"] == ["NOT_GDPR"]
	{"code": "NOT_GDPR", "message": compliance.reasons.NOT_GDPR} in decision.reasons
	"replication.compliance" in decision.policies
	"replication.rules" in decision.policies
}

_reasons_by_policy := {
	"replication.compliance": compliance.reasons,
	"replication.customers": customers.reasons,
	"replication.dr": dr.reasons,
	"replication.environment": environment.reasons,
	"replication.legacy": legacy.reasons,
	"replication.placement": placement.reasons,
	"replication.scan": scan.reasons,
	"replication.tenancy": tenancy.reasons,
}

# _owners and _package_reasons are spelled out for speed; they must stay exactly what the
# packages' own reasons say.
test_owners_name_the_package_of_every_reason_code if {
	replication._owners == {code: id |
		some id, reasons in _reasons_by_policy
		some code, _ in reasons
	}
}

test_package_reasons_are_each_packages_own if {
	every id, reasons in _reasons_by_policy {
		replication._package_reasons(id) == reasons
	}
}
