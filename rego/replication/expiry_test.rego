package replication.expiry_test

import rego.v1

import data.replication.expiry
import data.replication.fixtures_test as fx

# fx.passed_scan completed 2026-11-27T12:00:00Z; the default maximum age is 7 days.
_expiry_ns := time.parse_rfc3339_ns("2026-12-04T12:00:00Z")

_at(now) := object.union(fx.base, {"now": now})

_scanned_at(completed, now) := object.union(
	fx.image({"scan": object.union(fx.passed_scan, {"completed_at": completed})}),
	{"now": now},
)

test_a_boundary_just_after_now_is_next if {
	expiry.next_ns == [_expiry_ns] with input as {"items": [_at("2026-12-04T11:59:59.999999999Z")]}
	expiry.next_ns == [_expiry_ns] with input as {"items": [fx.base]}
}

test_a_boundary_at_or_before_now_is_not_ahead if {
	expiry.next_ns == [null] with input as {"items": [_at("2026-12-04T12:00:00Z")]}
	expiry.next_ns == [null] with input as {"items": [_at("2026-12-10T00:00:00Z")]}
}

test_each_item_has_its_own_next_in_order if {
	items := [
		_scanned_at("2026-11-27T12:00:00Z", "2026-11-28T12:00:00Z"),
		_scanned_at("2026-11-25T06:00:00Z", "2026-11-28T12:00:00Z"),
		fx.image({"scan": null}),
		_scanned_at("2026-11-01T00:00:00Z", "2026-11-28T12:00:00Z"),
	]
	answer := expiry.next_ns with input as {"items": items}
	answer == [_expiry_ns, time.parse_rfc3339_ns("2026-12-02T06:00:00Z"), null, null]
	min([instant | some instant in answer; instant != null]) == time.parse_rfc3339_ns("2026-12-02T06:00:00Z")
}

test_an_item_without_a_scan_or_a_now_has_none if {
	expiry.next_ns == [null] with input as {"items": [fx.image({"scan": null})]}
	expiry.next_ns == [null] with input as {"items": [object.remove(fx.base, ["now"])]}
	expiry.next_ns == [null] with input as {"items": [{}]}
}

test_the_maximum_age_comes_from_the_bundle_data if {
	answer := expiry.next_ns with input as {"items": [fx.base]}
		with data.replication.settings.scan as {"max_age_days": 2}
	answer == [time.parse_rfc3339_ns("2026-11-29T12:00:00Z")]
}

test_no_items_no_instants if {
	expiry.next_ns == [] with input as {}
	expiry.next_ns == [] with input as {"items": "many"}
}

test_the_package_document_is_only_next_ns if {
	document := data.replication.expiry with input as {"items": [fx.base]}
	document == {"next_ns": [_expiry_ns]}
}
