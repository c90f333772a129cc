package replication.dr_test

import rego.v1

import data.replication.dr
import data.replication.fixtures_test as fx

_primary_down := fx.with_registries({}, fx.patch_registry("prod-eu", {"healthy": false}))

_standby(input_value) := {d.registry | some d in dr.deny with input as input_value}

test_healthy_by_default if {
	count(dr.unhealthy) == 0 with input as fx.base
}

test_missing_health_counts_healthy if {
	count(dr.unhealthy) == 0 with input as {"registries": [{"name": "x"}]}
}

test_explicitly_unhealthy_registry if {
	dr.unhealthy == {"prod-eu"} with input as _primary_down
}

test_secondaries_listed if {
	dr.secondaries == {"prod-eu-dr"} with input as fx.base
}

test_secondary_stands_by_while_primary_healthy if {
	_standby(fx.base) == {"prod-eu-dr"}
	{"registry": "prod-eu-dr", "code": "SECONDARY_STANDBY"} in dr.deny with input as fx.base
	count(dr.failover) == 0 with input as fx.base
}

test_secondary_fails_over_when_primary_unhealthy if {
	dr.failover == {"prod-eu-dr"} with input as _primary_down
	count(_standby(_primary_down)) == 0
}

test_unknown_primary_stands_by if {
	inventory := fx.patch_registry("prod-eu-dr", {"backs": "gone"})
	_standby(fx.with_registries({}, inventory)) == {"prod-eu-dr"}
}

test_null_backs_stands_by if {
	inventory := fx.patch_registry("prod-eu-dr", {"backs": null})
	_standby(fx.with_registries({}, inventory)) == {"prod-eu-dr"}
}

test_unhealthy_other_registry_does_not_trigger_failover if {
	inventory := fx.patch_registry("prod-us", {"healthy": false})
	count(dr.failover) == 0 with input as fx.with_registries({}, inventory)
}

test_source_secondary_is_never_denied if {
	count(dr.deny) == 0 with input as fx.image({"registry": "prod-eu-dr"})
}

test_reason_codes_are_declared_with_messages if {
	dr.reasons.FAILOVER_SECONDARY != ""
	dr.reasons.REGISTRY_UNAVAILABLE != ""
	denials := dr.deny with input as fx.base
	count(denials) > 0
	every denial in denials { dr.reasons[denial.code] != "" }
}
