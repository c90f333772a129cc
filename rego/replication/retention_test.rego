package replication.retention_test

import rego.v1

import data.replication.retention

_now := "2026-11-28T00:00:00Z"

_image(registry, repository, tag, created_at, size, last_pulled_at) := {
	"registry": registry,
	"repository": repository,
	"tag": tag,
	"digest": concat("", ["sha256:", tag]),
	"created_at": created_at,
	"size_bytes": size,
	"pulls": 0,
	"last_pulled_at": last_pulled_at,
}

# Four copies of acme/web in prod-us, oldest first; t2 was pulled, the others never.
_images := [
	_image("prod-us", "acme/web", "t1", "2026-01-01T00:00:00Z", 100, null),
	_image("prod-us", "acme/web", "t2", "2026-02-01T00:00:00Z", 100, "2026-11-01T00:00:00Z"),
	_image("prod-us", "acme/web", "t3", "2026-03-01T00:00:00Z", 150, null),
	_image("prod-us", "acme/web", "t4", "2026-04-01T00:00:00Z", 100, null),
]

_input(used, limit, images) := {
	"now": _now,
	"tenant": {"id": "acme", "storage_used_bytes": used, "storage_limit_bytes": limit},
	"images": images,
}

_keep_one := {"acme": {"retention": {"keep_last": 1, "older_than_days": 30}}}

_answer(input_value, tenants) := answer if {
	answer := retention with input as input_value with data.replication.tenants as tenants
}

_tags(answer) := [entry.tag | some entry in answer.delete]

_codes(answer) := [reason.code | some reason in answer.reasons]

test_under_the_limit_nothing_is_deleted if {
	answer := _answer(_input(450, 500, _images), _keep_one)
	answer == {"delete": [], "bytes_freed": 0, "reasons": []}
	_answer(_input(500, 500, _images), _keep_one).delete == []
}

test_no_limit_or_no_tenant_deletes_nothing if {
	_answer(_input(450, 0, _images), _keep_one).delete == []
	_answer({"now": _now, "tenant": null, "images": _images}, _keep_one).delete == []
	_answer({"now": _now, "images": _images}, _keep_one).delete == []
	_answer({}, _keep_one) == {"delete": [], "bytes_freed": 0, "reasons": []}
}

test_never_pulled_first_then_oldest_until_at_the_limit if {
	answer := _answer(_input(450, 300, _images), _keep_one)
	_tags(answer) == ["t1", "t3"]
	answer.bytes_freed == 250
	_codes(answer) == ["QUOTA_EXCEEDED"]
	answer.delete[0] == {
		"registry": "prod-us", "repository": "acme/web", "tag": "t1",
		"digest": "sha256:t1", "reason": "QUOTA_EXCEEDED",
	}
}

test_stops_once_the_projected_usage_reaches_the_limit if {
	_tags(_answer(_input(450, 350, _images), _keep_one)) == ["t1"]
	_tags(_answer(_input(450, 349, _images), _keep_one)) == ["t1", "t3"]
}

test_pulled_copies_go_after_never_pulled_ones if {
	answer := _answer(_input(450, 1, _images), _keep_one)
	_tags(answer) == ["t1", "t3", "t2"]
	answer.bytes_freed == 350
	_codes(answer) == ["QUOTA_EXCEEDED", "RETENTION_EXHAUSTED"]
}

test_least_recently_pulled_first if {
	images := [
		_image("r", "acme/a", "old-pull", "2026-01-01T00:00:00Z", 10, "2026-06-01T00:00:00Z"),
		_image("r", "acme/a", "new-pull", "2025-01-01T00:00:00Z", 10, "2026-11-20T00:00:00Z"),
		_image("r", "acme/a", "keep", "2026-05-01T00:00:00Z", 10, null),
	]
	_tags(_answer(_input(30, 1, images), _keep_one)) == ["old-pull", "new-pull"]
}

test_keep_last_counts_per_registry_and_repository if {
	images := array.concat(_images, [
		_image("prod-eu", "acme/web", "t1", "2026-01-01T00:00:00Z", 100, null),
		_image("prod-us", "acme/api", "t1", "2026-01-01T00:00:00Z", 100, null),
	])
	answer := _answer(_input(1000, 1, images), _keep_one)
	_tags(answer) == ["t1", "t3", "t2"]
	{entry.registry | some entry in answer.delete} == {"prod-us"}
	{entry.repository | some entry in answer.delete} == {"acme/web"}
}

test_young_copies_are_never_deleted if {
	young := {"acme": {"retention": {"keep_last": 0, "older_than_days": 280}}}
	_tags(_answer(_input(450, 1, _images), young)) == ["t1", "t2"]
}

test_keep_last_zero_lets_every_old_copy_go if {
	none_kept := {"acme": {"retention": {"keep_last": 0, "older_than_days": 30}}}
	_tags(_answer(_input(450, 1, _images), none_kept)) == ["t1", "t3", "t4", "t2"]
}

test_defaults_come_from_settings if {
	# No tenant entry: the settings' keep_last 10 keeps all four.
	_answer(_input(450, 1, _images), {}).delete == []
	answer := retention with input as _input(450, 1, _images)
		with data.replication.tenants as {}
		with data.replication.settings.retention as {"keep_last": 2, "older_than_days": 30}
	_tags(answer) == ["t1", "t2"]
}

test_the_tenants_own_settings_win if {
	answer := retention with input as _input(450, 1, _images)
		with data.replication.tenants as {"acme": {"retention": {"keep_last": 3}}}
		with data.replication.settings.retention as {"keep_last": 0, "older_than_days": 30}
	_tags(answer) == ["t1"]
}

test_ties_break_by_registry_repository_tag_digest if {
	same := "2026-01-01T00:00:00Z"
	images := [
		_image("r2", "acme/a", "x", same, 1, null),
		_image("r1", "acme/b", "x", same, 1, null),
		_image("r1", "acme/a", "y", same, 1, null),
		_image("r1", "acme/a", "x", same, 1, null),
		object.union(_image("r1", "acme/a", "x", same, 1, null), {"digest": "sha256:a"}),
	]
	answer := _answer(_input(10, 1, images), {"acme": {"retention": {"keep_last": 0}}})
	[[e.registry, e.repository, e.tag, e.digest] | some e in answer.delete] == [
		["r1", "acme/a", "x", "sha256:a"],
		["r1", "acme/a", "x", "sha256:x"],
		["r1", "acme/a", "y", "sha256:y"],
		["r1", "acme/b", "x", "sha256:x"],
		["r2", "acme/a", "x", "sha256:x"],
	]
}

test_unreadable_times_keep_a_copy if {
	images := [
		_image("r", "acme/a", "no-created", null, 10, null),
		_image("r", "acme/a", "bad-created", "yesterday", 10, null),
		_image("r", "acme/a", "bad-pull", "2026-01-01T00:00:00Z", 10, "last week"),
		_image("r", "acme/a", "old", "2026-01-02T00:00:00Z", 10, null),
	]
	answer := _answer(_input(40, 1, images), {"acme": {"retention": {"keep_last": 0}}})
	_tags(answer) == ["old"]
	_codes(answer) == ["QUOTA_EXCEEDED", "RETENTION_EXHAUSTED"]
}

test_a_copy_without_created_at_counts_among_the_newest if {
	images := [
		_image("r", "acme/a", "unknown", null, 10, null),
		_image("r", "acme/a", "old", "2026-01-02T00:00:00Z", 10, null),
		_image("r", "acme/a", "older", "2026-01-01T00:00:00Z", 10, null),
	]
	_tags(_answer(_input(30, 1, images), {"acme": {"retention": {"keep_last": 2}}})) == ["older"]
}

test_malformed_entries_are_ignored if {
	images := array.concat(_images, [
		"prod-us/acme/web:t0",
		{"registry": "prod-us", "repository": "acme/web", "tag": 7, "digest": "sha256:7"},
		object.union(_image("prod-us", "acme/web", "t0", "2025-01-01T00:00:00Z", 0, null), {"size_bytes": "big"}),
	])
	answer := _answer(_input(450, 300, images), _keep_one)
	_tags(answer) == ["t0", "t1", "t3"]
	answer.bytes_freed == 250
}

test_an_unreadable_now_deletes_nothing if {
	answer := _answer(object.union(_input(450, 1, _images), {"now": "soon"}), _keep_one)
	answer.delete == []
	_codes(answer) == ["QUOTA_EXCEEDED", "RETENTION_EXHAUSTED"]
}

test_the_answer_holds_exactly_three_fields if {
	object.keys(_answer(_input(450, 300, _images), _keep_one)) == {"delete", "bytes_freed", "reasons"}
	object.keys(_answer({}, {})) == {"delete", "bytes_freed", "reasons"}
}

# 200 copies of one byte, one per day: the running sum crosses several blocks of the prefix sums.
test_long_candidate_lists_stop_at_the_exact_copy if {
	images := [_image("r", "acme/a", sprintf("t%03d", [day]), _day(day), 1, null) | some day in numbers.range(0, 199)]
	answer := _answer(_input(200, 70, images), {"acme": {"retention": {"keep_last": 0, "older_than_days": 0}}})
	count(answer.delete) == 130
	answer.bytes_freed == 130
	answer.delete[0].tag == "t000"
	answer.delete[129].tag == "t129"
}

_day(day) := time.format([
	time.add_date(time.parse_rfc3339_ns("2025-01-01T00:00:00Z"), 0, 0, day),
	"UTC", "2006-01-02T15:04:05Z07:00",
])
