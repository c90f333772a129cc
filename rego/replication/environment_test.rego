package replication.environment_test

import rego.v1

import data.replication.environment
import data.replication.fixtures_test as fx

_settings := {"environments": {
	"patterns": [
		{"pattern": "release-*", "environment": "prod"},
		{"pattern": "rel*", "environment": "dev"},
	],
	"default": "qa",
}}

_mismatched(tag) := {d.registry | some d in environment.deny with input as fx.image({"tag": tag})}

test_prod_tag_is_prod if {
	environment.image_environment == "prod" with input as fx.image({"tag": "prod-1.2.3"})
}

test_dev_tag_is_dev if {
	environment.image_environment == "dev" with input as fx.image({"tag": "dev-abc"})
}

test_untagged_environment_is_sandbox if {
	environment.image_environment == "sandbox" with input as fx.image({"tag": "latest"})
}

test_missing_tag_is_sandbox if {
	environment.image_environment == "sandbox" with input as {"image": {"registry": "ci"}}
}

test_non_string_tag_is_sandbox if {
	environment.image_environment == "sandbox" with input as fx.image({"tag": 7})
}

test_first_matching_pattern_wins if {
	environment.image_environment == "prod" with input as fx.image({"tag": "release-1"})
		with data.replication.settings as _settings
}

test_later_pattern_applies_when_first_misses if {
	environment.image_environment == "dev" with input as fx.image({"tag": "rel2"})
		with data.replication.settings as _settings
}

test_default_from_settings if {
	environment.image_environment == "qa" with input as fx.image({"tag": "prod-1"})
		with data.replication.settings as _settings
}

test_missing_settings_use_documented_defaults if {
	environment.image_environment == "prod" with input as fx.image({"tag": "prod-9"})
		with data.replication.settings as {}
}

test_prod_image_denies_other_environments if {
	_mismatched("prod-1.0") == {"dev-us", "dev-eu", "sandbox"}
}

test_dev_image_denies_prod_and_sandbox if {
	_mismatched("dev-1") == {"prod-eu", "prod-eu-dr", "prod-us", "prod-ap", "sandbox", "acme-prod"}
}

test_sandbox_image_only_sandbox_allowed if {
	not "sandbox" in _mismatched("feature-x")
	"prod-us" in _mismatched("feature-x")
	"dev-us" in _mismatched("feature-x")
}

test_source_never_denied if {
	not "ci" in _mismatched("prod-1.0")
}

test_denial_code_is_env_mismatch if {
	some denial in environment.deny with input as fx.image({"tag": "prod-1.0"})
	denial == {"registry": "sandbox", "code": "ENV_MISMATCH"}
}

test_registry_without_environment_mismatches if {
	inventory := array.concat(fx.registries, [{"name": "bare", "region": "us-east-1"}])
	denied := {d.registry | some d in environment.deny with input as fx.with_registries({}, inventory)}
	"bare" in denied
}

test_legacy_destination_lifts_env_mismatch if {
	rules := [{
		"id": "legacy-0", "source_registry": "ci", "source_repository": "team/*",
		"source_regex": "^team/([^/]*)$", "destination_registry": "dev-us",
		"destination_repository": "",
	}]
	denied := {d.registry | some d in environment.deny with input as fx.base
		with data.replication.legacy.rules as rules}
	not "dev-us" in denied
	"dev-eu" in denied
}

test_denial_codes_are_declared_with_messages if {
	denials := environment.deny with input as fx.base
	count(denials) > 0
	every denial in denials { environment.reasons[denial.code] != "" }
}
