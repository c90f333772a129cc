package replication.legacy_test

import rego.v1

import data.replication.fixtures_test as fx
import data.replication.legacy

_rule(id, extra) := object.union(
	{
		"id": id, "source_registry": "", "source_repository": "team/*",
		"source_regex": "^team/([^/]*)$", "destination_registry": "dev-us",
		"destination_repository": "", "tags": [], "tag_regex": "", "tag_filter": "",
		"include_tags": [], "exclude_tags": [],
		"destination_tag_prefix": "", "destination_tag_suffix": "",
	},
	extra,
)

_routes(rules, input_value) := routes if {
	routes := legacy.routes with input as input_value with data.replication.legacy.rules as rules
}

_routed(rules, input_value) := {name | some name, _ in _routes(rules, input_value)}

test_no_rules_no_routes if {
	count(legacy.routes) == 0 with input as fx.base
}

test_empty_destination_keeps_repository if {
	expected := {
		"registry": "dev-us",
		"repository": "team/app",
		"tag": "prod-1.0",
		"rule": "legacy-0",
	}
	_routes([_rule("legacy-0", {})], fx.base) == {"dev-us": expected}
}

test_identical_patterns_keep_repository if {
	rules := [_rule("legacy-0", {"destination_repository": "team/*"})]
	_routes(rules, fx.base)["dev-us"].repository == "team/app"
}

test_captures_substituted if {
	rules := [_rule("legacy-0", {
		"source_repository": "*/svc/*", "source_regex": "^([^/]*)/svc/([^/]*)$",
		"destination_repository": "mirror/$2/$1",
	})]
	_routes(rules, fx.image({"repository": "team/svc/api"}))["dev-us"].repository == "mirror/api/team"
}

test_star_does_not_cross_slash if {
	count(_routes([_rule("legacy-0", {})], fx.image({"repository": "team/a/b"}))) == 0
}

test_without_source_regex_glob_still_matches if {
	rules := [object.remove(_rule("legacy-0", {"destination_repository": "copy"}), ["source_regex"])]
	_routes(rules, fx.base)["dev-us"].repository == "copy"
	count(_routes(rules, fx.image({"repository": "team/a/b"}))) == 0
}

test_exact_source_repository_without_regex if {
	rules := [object.remove(_rule("legacy-0", {"source_repository": "team/app"}), ["source_regex"])]
	_routed(rules, fx.base) == {"dev-us"}
	count(_routed(rules, fx.image({"repository": "team/app2"}))) == 0
}

test_source_registry_must_match_when_given if {
	_routed([_rule("legacy-0", {"source_registry": "ci"})], fx.base) == {"dev-us"}
	count(_routed([_rule("legacy-0", {"source_registry": "ecr"})], fx.base)) == 0
}

test_destination_outside_inventory_ignored if {
	count(_routed([_rule("legacy-0", {"destination_registry": "nowhere"})], fx.base)) == 0
}

test_destination_equal_to_source_ignored if {
	count(_routed([_rule("legacy-0", {"destination_registry": "ci"})], fx.base)) == 0
}

test_exact_tags_list if {
	rules := [_rule("legacy-0", {"tags": ["prod-1.0", "v2"]})]
	_routed(rules, fx.base) == {"dev-us"}
	count(_routed(rules, fx.image({"tag": "prod-1.1"}))) == 0
}

test_tag_regex if {
	rules := [_rule("legacy-0", {"tag_regex": "^prod-[0-9]+\\.0$"})]
	_routed(rules, fx.base) == {"dev-us"}
	count(_routed(rules, fx.image({"tag": "prod-1.1"}))) == 0
}

test_tag_filter_glob if {
	rules := [_rule("legacy-0", {"tag_filter": "prod-*"})]
	_routed(rules, fx.base) == {"dev-us"}
	count(_routed(rules, fx.image({"tag": "dev-1"}))) == 0
}

test_tag_filter_without_star_is_exact if {
	rules := [_rule("legacy-0", {"tag_filter": "prod-1.?"})]
	count(_routed(rules, fx.base)) == 0
	_routed(rules, fx.image({"tag": "prod-1.?"})) == {"dev-us"}
}

test_include_tags if {
	rules := [_rule("legacy-0", {"include_tags": ["v*", "prod-*"]})]
	_routed(rules, fx.base) == {"dev-us"}
	count(_routed(rules, fx.image({"tag": "latest"}))) == 0
}

test_exclude_tags_win if {
	rules := [_rule("legacy-0", {"include_tags": ["prod-*"], "exclude_tags": ["*-rc*"]})]
	_routed(rules, fx.base) == {"dev-us"}
	count(_routed(rules, fx.image({"tag": "prod-2-rc1"}))) == 0
}

test_tag_prefix_and_suffix if {
	rules := [_rule("legacy-0", {"destination_tag_prefix": "mirror-", "destination_tag_suffix": "-eu"})]
	_routes(rules, fx.base)["dev-us"].tag == "mirror-prod-1.0-eu"
}

test_smallest_id_wins_per_destination if {
	rules := [
		_rule("legacy-b", {"destination_repository": "b/$1"}),
		_rule("legacy-a", {"destination_repository": "a/$1"}),
		_rule("legacy-c", {"destination_registry": "sandbox"}),
	]
	routes := _routes(rules, fx.base)
	routes["dev-us"].repository == "a/app"
	routes["dev-us"].rule == "legacy-a"
	routes.sandbox.rule == "legacy-c"
}

test_missing_id_uses_index if {
	_routes([object.remove(_rule("x", {}), ["id"])], fx.base)["dev-us"].rule == "legacy-0"
}

# The converter's prefix index: only rules indexed under the image repository's first segment
# (plus the unindexed ones) are considered, and the answer equals the unindexed walk.
_indexed_routes(rules, by_prefix, unindexed, input_value) := routes if {
	routes := legacy.routes with input as input_value
		with data.replication.legacy.rules as rules
		with data.replication.legacy.by_prefix as by_prefix
		with data.replication.legacy.unindexed as unindexed
}

test_prefix_index_finds_indexed_rule if {
	rules := [
		_rule("legacy-0", {
			"source_repository": "other/*", "source_regex": "^other/([^/]*)$",
			"destination_registry": "prod-eu",
		}),
		_rule("legacy-1", {}),
	]
	routes := _indexed_routes(rules, {"other": [0], "team": [1]}, [], fx.base)
	routes == _routes(rules, fx.base)
	object.keys(routes) == {"dev-us"}
}

test_prefix_index_includes_unindexed_globs if {
	rules := [_rule("legacy-0", {"source_repository": "*/app", "source_regex": "^([^/]*)/app$"})]
	{name | some name, _ in _indexed_routes(rules, {}, [0], fx.base)} == {"dev-us"}
}

test_prefix_index_skips_other_prefixes if {
	# A rule filed under another prefix is never looked at, even if its pattern would match.
	count(_indexed_routes([_rule("legacy-0", {})], {"other": [0]}, [], fx.base)) == 0
}

test_legacy_code_is_declared_with_a_message if {
	legacy.reasons.LEGACY_RULE != ""
}
