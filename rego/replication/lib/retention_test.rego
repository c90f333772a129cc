package replication.lib.retention_test

import rego.v1

import data.replication.lib.retention

test_settings_layer_defaults_settings_and_tenant if {
	_settings("acme", {}, {}) == {"keep_last": 10, "older_than_days": 30}
	_settings("acme", {"keep_last": 4}, {}) == {"keep_last": 4, "older_than_days": 30}
	tenants := {"acme": {"retention": {"older_than_days": 7}}}
	_settings("acme", {"keep_last": 4}, tenants) == {"keep_last": 4, "older_than_days": 7}
	_settings("globex", {"keep_last": 4}, tenants) == {"keep_last": 4, "older_than_days": 30}
}

test_malformed_settings_fall_back_to_defaults if {
	_settings("acme", "forever", {"acme": {"retention": []}}) == {"keep_last": 10, "older_than_days": 30}
}

_settings(id, settings, tenants) := value if {
	value := retention.settings(id) with data.replication.settings.retention as settings
		with data.replication.tenants as tenants
}

test_over_quota_needs_a_positive_limit if {
	retention.over_quota with input as {"tenant": {"storage_used_bytes": 11, "storage_limit_bytes": 10}}
	not retention.over_quota with input as {"tenant": {"storage_used_bytes": 10, "storage_limit_bytes": 10}}
	not retention.over_quota with input as {"tenant": {"storage_used_bytes": 11, "storage_limit_bytes": 0}}
	not retention.over_quota with input as {"tenant": {"storage_used_bytes": -1, "storage_limit_bytes": "10"}}
}

test_tenant_id_must_be_a_non_empty_string if {
	retention.tenant_id == "acme" with input as {"tenant": {"id": "acme"}}
	retention.tenant_id == null with input as {"tenant": {"id": ""}}
	retention.tenant_id == null with input as {"tenant": null}
}

test_size_is_a_non_negative_number if {
	images := [{"registry": "r", "repository": "a", "tag": "t", "digest": "d", "size_bytes": -5}]
	retention.size(0) == 0 with input as {"images": images}
}
