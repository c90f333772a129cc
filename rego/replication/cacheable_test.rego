package replication.cacheable_test

import rego.v1

import data.replication.cacheable
import data.replication.fixtures_test as fx

_at(now) := object.union(fx.base, {"now": now})

# fx.passed_scan completed 2026-11-27T12:00:00Z; the default maximum age is 7 days.
_expiry_ns := time.parse_rfc3339_ns("2026-12-04T12:00:00Z")

test_decision_is_the_decision_document if {
	cacheable.decision == data.replication.decision with input as fx.base
	cacheable.decision == data.replication.decision with input as fx.image({"scan": null})
}

test_a_scan_declares_its_expiry if {
	cacheable.time_boundaries_ns == [_expiry_ns] with input as fx.base
}

test_the_boundary_is_where_the_decision_changes if {
	at_boundary := cacheable.decision with input as _at("2026-12-04T12:00:00Z")
	after := cacheable.decision with input as _at("2026-12-04T12:00:00.000000001Z")
	at_boundary.allow
	not after.allow
}

test_fractional_max_age_floors_to_a_nanosecond if {
	boundaries := cacheable.time_boundaries_ns with input as fx.base
		with data.replication.settings.scan as {"max_age_days": 0.5}
	boundaries == [time.parse_rfc3339_ns("2026-11-28T00:00:00Z")]
}

test_no_scan_no_boundary if {
	cacheable.time_boundaries_ns == [] with input as fx.image({"scan": null})
	cacheable.time_boundaries_ns == [] with input as fx.image({"scan": {"status": "passed", "completed_at": "yesterday"}})
}
