package replication.tenancy_test

import rego.v1

import data.replication.fixtures_test as fx
import data.replication.tenancy

_acme_image := fx.image({"tenant": "acme"})

_isolated(input_value) := {d.registry | some d in tenancy.deny with input as input_value}

_over := {"id": "acme", "storage_used_bytes": 11, "storage_limit_bytes": 10}

_tenants := {"acme": {"retention": {"keep_last": 5, "older_than_days": 14}}}

test_image_tenant if {
	tenancy.image_tenant == "acme" with input as _acme_image
	tenancy.image_tenant == null with input as fx.base
	tenancy.image_tenant == null with input as fx.image({"tenant": ""})
	tenancy.image_tenant == null with input as {}
}

test_caller_tenant_empty_string_is_none if {
	tenancy.caller_tenant == null with input as fx.with_input({"caller": {"tenant": ""}})
}

test_dedicated_registry_denied_to_other_tenant if {
	_isolated(fx.image({"tenant": "globex"})) == {"acme-prod"}
	{"registry": "acme-prod", "code": "TENANT_ISOLATION"} in tenancy.deny with input as fx.image({"tenant": "globex"})
}

test_dedicated_registry_denied_to_image_without_tenant if {
	_isolated(fx.base) == {"acme-prod"}
}

test_dedicated_registry_serves_its_tenant if {
	count(_isolated(_acme_image)) == 0
}

test_registry_without_tenants_key_is_shared if {
	count(_isolated({"image": {"registry": "ci"}, "registries": [{"name": "plain"}]})) == 0
}

test_source_never_isolated if {
	count(_isolated(fx.image({"registry": "acme-prod"}))) == 0
}

test_caller_of_other_tenant_blocks if {
	tenancy.blocking == {"CROSS_TENANT"} with input as object.union(_acme_image, {"caller": {"tenant": "globex"}})
}

test_tenant_caller_on_tenantless_image_blocks if {
	tenancy.blocking == {"CROSS_TENANT"} with input as fx.with_input({"caller": {"tenant": "acme"}})
}

test_same_tenant_caller_allowed if {
	count(tenancy.blocking) == 0 with input as object.union(_acme_image, {"caller": {"tenant": "acme"}})
}

test_platform_caller_allowed if {
	count(tenancy.blocking) == 0 with input as _acme_image
	count(tenancy.blocking) == 0 with input as object.union(_acme_image, {"caller": {"tenant": ""}})
	count(tenancy.blocking) == 0 with input as object.remove(_acme_image, ["caller"])
}

test_over_quota_gets_default_cleanup if {
	action := {"type": "cleanup", "tenant": "acme", "keep_last": 10, "older_than_days": 30}
	tenancy.actions == {action} with input as object.union(_acme_image, {"tenant": _over})
}

test_at_limit_is_not_over_quota if {
	usage := object.union(_over, {"storage_used_bytes": 10})
	not tenancy.over_quota with input as object.union(_acme_image, {"tenant": usage})
}

test_zero_limit_means_unlimited if {
	usage := object.union(_over, {"storage_limit_bytes": 0})
	not tenancy.over_quota with input as object.union(_acme_image, {"tenant": usage})
}

test_null_tenant_usage_has_no_action if {
	count(tenancy.actions) == 0 with input as _acme_image
}

test_tenant_retention_overrides_settings if {
	action := {"type": "cleanup", "tenant": "acme", "keep_last": 5, "older_than_days": 14}
	tenancy.actions == {action} with input as object.union(_acme_image, {"tenant": _over})
		with data.replication.tenants as _tenants
}

test_partial_tenant_retention_keeps_other_defaults if {
	tenants := {"acme": {"retention": {"keep_last": 3}}}
	tenancy.retention == {"keep_last": 3, "older_than_days": 30} with input as object.union(_acme_image, {"tenant": _over})
		with data.replication.tenants as tenants
}

test_settings_retention_applies if {
	tenancy.retention == {"keep_last": 2, "older_than_days": 7} with input as object.union(_acme_image, {"tenant": _over})
		with data.replication.settings.retention as {"keep_last": 2, "older_than_days": 7}
}

test_rule_retention_overrides_tenant_retention if {
	tenants := {"acme": {
		"retention": {"keep_last": 5, "older_than_days": 14},
		"rules": [{"id": "acme-keep", "set": {"retention": {"keep_last": 1, "older_than_days": 2}}}],
	}}
	action := {"type": "cleanup", "tenant": "acme", "keep_last": 1, "older_than_days": 2}
	tenancy.actions == {action} with input as object.union(_acme_image, {"tenant": _over})
		with data.replication.tenants as tenants
}

test_reason_codes_are_declared_with_messages if {
	tenancy.reasons.QUOTA_EXCEEDED != ""
	denials := tenancy.deny with input as fx.base
	count(denials) > 0
	every denial in denials { tenancy.reasons[denial.code] != "" }
}

test_blocking_code_is_declared_with_a_message if {
	blocking := tenancy.blocking with input as fx.with_input({"caller": {"tenant": "acme"}})
	count(blocking) == 1
	every code in blocking { tenancy.reasons[code] != "" }
}
