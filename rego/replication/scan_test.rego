package replication.scan_test

import rego.v1

import data.replication.fixtures_test as fx
import data.replication.scan

_with_scan(fields) := fx.image({"scan": object.union(fx.passed_scan, fields)})

_codes(input_value) := {d.code | some d in scan.deny with input as input_value}

_denied(input_value) := {d.registry | some d in scan.deny with input as input_value}

_prod := {"prod-eu", "prod-eu-dr", "prod-us", "prod-ap", "acme-prod"}

test_passed_scan_denies_nothing if {
	count(scan.deny) == 0 with input as fx.base
	not scan.missing with input as fx.base
	not scan.failed with input as fx.base
}

test_null_scan_is_missing if {
	scan.missing with input as fx.image({"scan": null})
	_codes(fx.image({"scan": null})) == {"SCAN_MISSING"}
}

test_absent_scan_is_missing if {
	scan.missing with input as {"image": {"registry": "ci", "tag": "prod-1"}, "registries": fx.registries}
}

test_missing_scan_denies_only_prod if {
	_denied(fx.image({"scan": null})) == _prod
}

test_failed_status_fails if {
	scan.failed with input as _with_scan({"status": "failed"})
	_codes(_with_scan({"status": "failed"})) == {"SCAN_FAILED"}
	_denied(_with_scan({"status": "failed"})) == _prod
}

test_critical_findings_fail if {
	scan.failed with input as _with_scan({"critical": 1})
}

test_high_findings_alone_pass if {
	not scan.failed with input as _with_scan({"high": 40})
}

test_gated_environments_from_settings if {
	denied := _denied(fx.image({"scan": null})) with data.replication.settings.scan as {"gated_environments": ["dev"]}
	denied == {"dev-us", "dev-eu"}
}

test_source_never_denied if {
	inventory := fx.patch_registry("ci", {"environment": "prod"})
	not "ci" in _denied(fx.with_registries({"scan": null}, inventory))
}

test_scan_within_max_age_not_expired if {
	not scan.expired with input as _with_scan({"completed_at": "2026-11-21T12:00:00Z"})
	count(scan.blocking) == 0 with input as _with_scan({"completed_at": "2026-11-21T12:00:00Z"})
}

test_scan_older_than_max_age_expires if {
	scan.expired with input as _with_scan({"completed_at": "2026-11-21T11:59:59Z"})
	scan.blocking == {"SCAN_EXPIRED"} with input as _with_scan({"completed_at": "2026-11-21T11:59:59Z"})
}

test_max_age_from_settings if {
	scan.expired with input as fx.base with data.replication.settings.scan as {"max_age_days": 0.5}
	not scan.expired with input as fx.base with data.replication.settings.scan as {"max_age_days": 2}
}

test_expiry_uses_input_now if {
	not scan.expired with input as object.union(fx.base, {"now": "2026-11-28T00:00:00Z"})
	scan.expired with input as object.union(fx.base, {"now": "2027-01-01T00:00:00Z"})
}

test_unparseable_times_never_expire if {
	not scan.expired with input as _with_scan({"completed_at": "yesterday"})
	not scan.expired with input as object.union(fx.base, {"now": "soon"})
}

test_missing_scan_never_expires if {
	not scan.expired with input as fx.image({"scan": null})
}

test_reason_codes_are_declared_with_messages if {
	codes := _codes(fx.image({"scan": null})) | _codes(_with_scan({"status": "failed"}))
	codes == {"SCAN_MISSING", "SCAN_FAILED"}
	every code in codes { scan.reasons[code] != "" }
	expired := scan.blocking with input as _with_scan({"completed_at": "2020-01-01T00:00:00Z"})
	count(expired) == 1
	every code in expired { scan.reasons[code] != "" }
}
