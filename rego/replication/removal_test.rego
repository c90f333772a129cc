package replication.removal_test

import rego.v1

import data.replication.fixtures_test as fx
import data.replication.removal

_everywhere := [r.name | some r in fx.registries]

_present(fields, present_at) := fx.image(object.union(fields, {"present_at": present_at}))

_decide(input_value) := decision if {
	decision := data.replication.decision with input as input_value
}

_removed(decision) := {entry.registry: entry.reasons | some entry in decision.remove}

_denied(decision) := {entry.registry: entry.reasons | some entry in decision.denied}

_compliant := {"labels": {"compliance-required": "true"}}

_consolidated := object.union(
	_present({"size_bytes": 5000000000000}, ["prod-us", "prod-eu", "prod-ap"]),
	{"access": {"eu-west-1": 9}},
)

test_compliance_image_is_taken_out_of_non_gdpr_registries if {
	decision := _decide(_present(_compliant, ["prod-us", "prod-eu", "sandbox"]))
	_removed(decision) == {"prod-us": ["NOT_GDPR"], "sandbox": ["NOT_GDPR"]}
	_denied(decision).sandbox == ["ENV_MISMATCH", "NOT_GDPR"]
	"replication.removal" in decision.policies
}

test_copy_in_another_tenants_registry_is_taken_out if {
	decision := _decide(_present({}, ["acme-prod", "prod-us"]))
	decision.remove == [{"registry": "acme-prod", "reasons": ["TENANT_ISOLATION"]}]
}

test_copy_dropped_by_consolidation_is_taken_out if {
	decision := _decide(_consolidated)
	[route.registry | some route in decision.routes] == ["prod-eu"]
	_removed(decision) == {"prod-us": ["COST_CONSOLIDATED"], "prod-ap": ["COST_CONSOLIDATED"]}
}

test_not_now_codes_never_remove if {
	# SECONDARY_STANDBY (prod-eu-dr), ENV_MISMATCH (dev-us, dev-eu, sandbox), a deferral (prod-ap)
	inventory := fx.patch_registry("prod-ap", {"healthy": false})
	decision := _decide(object.union(fx.with_registries({}, inventory), {"image": {"present_at": _everywhere}}))
	decision.deferred == [{"registry": "prod-ap", "reason": "REGISTRY_UNAVAILABLE"}]
	_removed(decision) == {"acme-prod": ["TENANT_ISOLATION"]}
}

test_scan_codes_never_remove if {
	missing := _decide(_present({"scan": null}, ["prod-us", "prod-eu"]))
	_denied(missing)["prod-us"] == ["SCAN_MISSING"]
	missing.remove == []
	failed := _decide(_present({"scan": object.union(fx.passed_scan, {"critical": 2})}, ["prod-us"]))
	_denied(failed)["prod-us"] == ["SCAN_FAILED"]
	failed.remove == []
}

test_blocked_decisions_never_remove if {
	expired := _decide(_present(
		object.union(_compliant, {"scan": object.union(fx.passed_scan, {"completed_at": "2026-01-01T00:00:00Z"})}),
		_everywhere,
	))
	not expired.allow
	expired.remove == []
	cross := object.union(_present(_compliant, _everywhere), {"caller": {"tenant": "acme"}})
	not _decide(cross).allow
	_decide(cross).remove == []
}

test_source_and_routed_registries_are_never_removed if {
	decision := _decide(_present(_compliant, ["ci", "prod-eu"]))
	decision.remove == []
	removal.present == {"prod-eu"} with input as _present(_compliant, ["ci", "prod-eu"])
}

test_no_observation_removes_nothing if {
	_decide(fx.image(_compliant)).remove == []
	_decide(_present(_compliant, [])).remove == []
	_decide(_present(_compliant, null)).remove == []
	_decide(_present(_compliant, "prod-us")).remove == []
	_decide(_present(_compliant, [7, {"name": "prod-us"}])).remove == []
	not "replication.removal" in _decide(fx.image(_compliant)).policies
}

test_prune_reasons_come_from_data if {
	input_value := _present(_compliant, ["prod-us", "acme-prod"])
	only_gdpr := data.replication.decision with input as input_value with data.replication.prune.reasons as ["NOT_GDPR"]
	_removed(only_gdpr) == {"prod-us": ["NOT_GDPR"], "acme-prod": ["NOT_GDPR"]}
	none := data.replication.decision with input as input_value with data.replication.prune.reasons as []
	none.remove == []
}

test_data_cannot_make_a_not_now_code_remove if {
	codes := ["ENV_MISMATCH", "SCAN_MISSING", "SECONDARY_STANDBY", "REGISTRY_UNAVAILABLE", "CROSS_TENANT", 3]
	removal.reasons == set() with data.replication.prune.reasons as codes
	decision := data.replication.decision with input as _present({"scan": null}, _everywhere)
		with data.replication.prune.reasons as codes
	decision.remove == []
}

test_explicit_rule_codes_remove_only_when_listed if {
	rules := [{"id": "embargo", "deny": [{"registry": "prod-us", "code": "EMBARGO"}]}]
	input_value := _present({}, ["prod-us"])
	kept := data.replication.decision with input as input_value with data.replication.rules as rules
	kept.remove == []
	listed := data.replication.decision with input as input_value
		with data.replication.rules as rules
		with data.replication.prune.reasons as ["EMBARGO"]
	listed.remove == [{"registry": "prod-us", "reasons": ["EMBARGO"]}]
}

test_remove_is_a_subset_of_denied_within_present_at if {
	every present_at in [_everywhere, ["prod-us", "sandbox"], ["dev-us", "acme-prod", "prod-eu"]] {
		every fields in [{}, _compliant, {"scan": null}, {"tag": "dev-1"}] {
			_subset(_decide(_present(fields, present_at)), present_at)
		}
	}
}

_subset(decision, present_at) if {
	denied := _denied(decision)
	every entry in decision.remove {
		entry.registry in present_at
		entry.registry != "ci"
		count(entry.reasons) > 0
		every code in entry.reasons {
			code in denied[entry.registry]
		}
	}
}

test_remove_keeps_the_order_of_denied if {
	decision := _decide(_present(_compliant, _everywhere))
	names := [entry.registry | some entry in decision.remove]
	names == sort(names)
	names == ["acme-prod", "dev-us", "prod-ap", "prod-us", "sandbox"]
}
