package main_test

import rego.v1

import data.main

_registry(name, metadata) := {
	"name": name,
	"type": "generic",
	"region": "us-east-1",
	"metadata": object.union({"environment": "prod"}, metadata),
}

_config(registries) := {"registries": registries, "policy": {"tenancy": {"tenants": ["acme", "globex"]}}}

_deny(registries) := messages if {
	messages := main.deny with input as _config(registries)
}

test_valid_list_config_passes if {
	count(_deny([
		_registry("prod-eu", {"gdpr": true}),
		_registry("prod-eu-dr", {"gdpr": true, "role": "secondary", "backs": "prod-eu"}),
		_registry("acme-prod", {"tenants": ["acme"], "egress_cost_per_gb": 0.05}),
	])) == 0
}

test_freightliner_object_form_is_read if {
	config := {"registries": {"defaultSource": "a", "registries": [{"name": "a", "metadata": {"environment": "ci"}}]}}
	main.deny == {`registry "a" has no region`} with input as config
}

test_config_without_registries_fails if {
	main.deny == {"config has no registries list"} with input as {"policy": {}}
}

test_registry_without_name if {
	_deny([{"region": "us-east-1", "metadata": {"environment": "prod"}}]) == {"registry #0 has no name"}
}

test_missing_region if {
	_deny([{"name": "r", "metadata": {"environment": "prod"}}]) == {`registry "r" has no region`}
}

test_region_from_metadata_counts if {
	count(_deny([{"name": "r", "metadata": {"environment": "prod", "region": "eu"}}])) == 0
}

test_blank_environment if {
	_deny([_registry("r", {"environment": ""})]) == {`registry "r" has no environment`}
}

test_gdpr_must_be_boolean if {
	messages := _deny([_registry("r", {"gdpr": "true"})])
	messages == {`registry "r": gdpr must be a boolean (true or false), not the string "true"`}
	count(_deny([_registry("r", {"gdpr": false})])) == 0
}

test_field_wins_over_metadata if {
	registry := object.union(_registry("r", {"gdpr": "yes"}), {"gdpr": true})
	count(_deny([registry])) == 0
}

test_role_must_be_known if {
	messages := _deny([_registry("r", {"role": "backup"})])
	messages == {`registry "r": role must be primary or secondary, not "backup"`}
}

test_secondary_needs_backs if {
	messages := _deny([_registry("dr", {"role": "secondary"})])
	messages == {`registry "dr" is a secondary but does not name the primary it backs`}
}

test_secondary_backs_unknown if {
	messages := _deny([_registry("dr", {"role": "secondary", "backs": "gone"})])
	messages == {`registry "dr" backs "gone", which is not a registry of the inventory`}
}

test_secondary_backs_secondary if {
	registries := [
		_registry("p", {}),
		_registry("dr1", {"role": "secondary", "backs": "p"}),
		_registry("dr2", {"role": "secondary", "backs": "dr1"}),
	]
	_deny(registries) == {`registry "dr2" backs "dr1", which is not a primary registry`}
}

test_unknown_tenant if {
	messages := _deny([_registry("r", {"tenants": ["initech"]})])
	messages == {`registry "r" is dedicated to unknown tenant "initech" (policy.tenancy.tenants: ["acme","globex"])`}
}

test_tenants_must_be_a_list if {
	_deny([_registry("r", {"tenants": "acme"})]) == {`registry "r": tenants must be a list of tenant ids`}
}

test_no_known_tenants_rejects_dedicated_registries if {
	messages := main.deny with input as {"registries": [_registry("r", {"tenants": ["acme"]})]}
	messages == {`registry "r" is dedicated to unknown tenant "acme" (policy.tenancy.tenants: [])`}
}

test_duplicate_names if {
	messages := _deny([_registry("r", {}), _registry("r", {"gdpr": true})])
	messages == {`registry "r": duplicate name, registry names must be unique`}
}

test_egress_cost_camel_case_checked if {
	messages := _deny([_registry("r", {"egressCostPerGb": -1})])
	messages == {`registry "r": egress_cost_per_gb must be a non-negative number, not -1`}
	count(_deny([_registry("r", {"egressCostPerGb": 0.2})])) == 0
}
