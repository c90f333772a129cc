package replication.customers_test

import rego.v1

import data.replication.customers
import data.replication.fixtures_test as fx

_allowlist := {"customers": {"allowlist": {"prod-us": ["cust-a", "cust-b"], "dev-us": []}}}

_denied(input_value) := {d.registry | some d in denials} if {
	denials := customers.deny with input as input_value with data.sensitive as _allowlist
}

_customer_image(id) := fx.image({"labels": {"customer-id": id}})

test_allowlisted_customer_reaches_its_registry if {
	_denied(_customer_image("cust-a")) == {"dev-us"}
}

test_other_customer_denied_on_allowlisted_registries if {
	_denied(_customer_image("cust-z")) == {"prod-us", "dev-us"}
}

test_image_without_customer_denied_on_allowlisted_registries if {
	_denied(fx.base) == {"prod-us", "dev-us"}
	_denied(_customer_image("")) == {"prod-us", "dev-us"}
}

test_denial_names_only_registry_and_code if {
	{"registry": "prod-us", "code": "CUSTOMER_NOT_ALLOWED"} in customers.deny with input as _customer_image("cust-z")
		with data.sensitive as _allowlist
}

test_source_registry_never_denied if {
	image := fx.image({"registry": "prod-us", "labels": {"customer-id": "cust-z"}})
	_denied(image) == {"dev-us"}
}

test_no_sensitive_data_restricts_nothing if {
	count(customers.deny) == 0 with input as _customer_image("cust-z")
}

test_malformed_allowlist_is_ignored if {
	count(customers.deny) == 0 with input as _customer_image("cust-z")
		with data.sensitive as {"customers": {"allowlist": ["prod-us"]}}
	count(customers.deny) == 0 with input as _customer_image("cust-z")
		with data.sensitive as {"customers": {"allowlist": {"prod-us": "cust-z"}}}
}

test_denial_codes_are_declared_with_messages if {
	denials := customers.deny with input as _customer_image("cust-z") with data.sensitive as _allowlist
	count(denials) > 0
	every denial in denials { customers.reasons[denial.code] != "" }
}
