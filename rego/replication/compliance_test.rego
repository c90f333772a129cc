package replication.compliance_test

import rego.v1

import data.replication.compliance
import data.replication.fixtures_test as fx

_restricted := fx.image({"labels": {"compliance-required": "true"}})

test_label_true_restricts if {
	compliance.restricted with input as _restricted
}

test_label_other_values_do_not_restrict if {
	not compliance.restricted with input as fx.image({"labels": {"compliance-required": "false"}})
	not compliance.restricted with input as fx.image({"labels": {"compliance-required": "TRUE"}})
	not compliance.restricted with input as fx.base
}

test_missing_labels_do_not_restrict if {
	not compliance.restricted with input as {"image": {"registry": "ci"}}
}

test_label_name_from_settings if {
	compliance.restricted with input as fx.image({"labels": {"gdpr-only": "true"}})
		with data.replication.settings.compliance.label as "gdpr-only"
	not compliance.restricted with input as _restricted
		with data.replication.settings.compliance.label as "gdpr-only"
}

test_non_gdpr_registries_denied if {
	denied := {d.registry | some d in compliance.deny with input as _restricted}
	denied == {"prod-us", "prod-ap", "dev-us", "sandbox", "acme-prod"}
}

test_denial_code_is_not_gdpr if {
	{"registry": "prod-us", "code": "NOT_GDPR"} in compliance.deny with input as _restricted
}

test_registry_without_gdpr_flag_is_not_gdpr if {
	inventory := array.concat(fx.registries, [{"name": "unflagged", "environment": "prod"}])
	denied := {d.registry | some d in compliance.deny with input as object.union(_restricted, {"registries": inventory})}
	"unflagged" in denied
}

test_string_true_is_not_a_gdpr_flag if {
	inventory := fx.patch_registry("prod-eu", {"gdpr": "true"})
	denied := {d.registry | some d in compliance.deny with input as object.union(_restricted, {"registries": inventory})}
	"prod-eu" in denied
}

test_unrestricted_image_denies_nothing if {
	count(compliance.deny) == 0 with input as fx.base
	count(compliance.required) == 0 with input as fx.base
}

test_gdpr_registries_are_required if {
	compliance.required == {"prod-eu", "prod-eu-dr", "dev-eu"} with input as _restricted
}

test_source_is_never_denied_nor_required if {
	inventory := fx.patch_registry("ci", {"gdpr": true})
	restricted := object.union(_restricted, {"registries": inventory})
	not "ci" in compliance.required with input as restricted
	denied := {d.registry | some d in compliance.deny with input as _restricted}
	not "ci" in denied
}

test_denial_codes_are_declared_with_messages if {
	denials := compliance.deny with input as _restricted
	count(denials) > 0
	every denial in denials { compliance.reasons[denial.code] != "" }
}
