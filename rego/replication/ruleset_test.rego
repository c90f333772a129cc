package replication.ruleset_test

import rego.v1

import data.replication.fixtures_test as fx
import data.replication.ruleset

_rule(id, match, extra) := object.union({"id": id, "match": match}, extra)

_matched(rules, input_value) := matched if {
	matched := ruleset.matched with input as input_value with data.replication.rules as rules
}

test_rule_without_match_block_matches_everything if {
	_matched([{"id": "all"}], fx.base) == {"all"}
}

test_repository_glob_does_not_cross_slash if {
	rules := [_rule("one-level", {"repository": "team/*"}, {})]
	_matched(rules, fx.base) == {"one-level"}
	count(_matched(rules, fx.image({"repository": "team/sub/app"}))) == 0
}

test_tag_glob_crosses_dots if {
	rules := [_rule("prod-tags", {"tag": "prod-*"}, {})]
	_matched(rules, fx.image({"tag": "prod-1.2.3"})) == {"prod-tags"}
	count(_matched(rules, fx.image({"tag": "dev-1.2.3"}))) == 0
}

test_labels_match_exactly if {
	rules := [_rule("web", {"labels": {"team": "web"}}, {})]
	_matched(rules, fx.image({"labels": {"team": "web", "x": "y"}})) == {"web"}
	count(_matched(rules, fx.image({"labels": {"team": "webx"}}))) == 0
	count(_matched(rules, fx.base)) == 0
}

test_environment_match if {
	rules := [_rule("dev-only", {"environment": "dev"}, {})]
	_matched(rules, fx.image({"tag": "dev-1"})) == {"dev-only"}
	count(_matched(rules, fx.base)) == 0
}

test_every_given_key_must_match if {
	rules := [_rule("both", {"repository": "team/*", "tag": "dev-*"}, {})]
	count(_matched(rules, fx.base)) == 0
}

test_rules_without_id_are_ignored if {
	count(_matched([{"match": {}}], fx.base)) == 0
}

test_tenant_rules_apply_to_their_tenant_only if {
	tenants := {"acme": {"rules": [{"id": "acme-r"}]}, "globex": {"rules": [{"id": "globex-r"}]}}
	ruleset.matched == {"acme-r"} with input as fx.image({"tenant": "acme"}) with data.replication.tenants as tenants
	count(ruleset.matched) == 0 with input as fx.base with data.replication.tenants as tenants
}

test_chained_rules_become_active_transitively if {
	rules := [
		_rule("a", {"tag": "prod-*"}, {"chain": ["b"]}),
		_rule("b", {"tag": "never"}, {"chain": ["c"]}),
		_rule("c", {"tag": "never"}, {}),
		_rule("d", {"tag": "never"}, {}),
	]
	ruleset.active == {"a", "b", "c"} with input as fx.base with data.replication.rules as rules
}

test_chain_to_unknown_rule_is_ignored if {
	rules := [_rule("a", {}, {"chain": ["ghost"]})]
	ruleset.active == {"a"} with input as fx.base with data.replication.rules as rules
}

test_unmatched_rule_does_not_activate_its_chain if {
	rules := [_rule("a", {"tag": "never"}, {"chain": ["b"]}), _rule("b", {}, {})]
	ruleset.active == {"b"} with input as fx.base with data.replication.rules as rules
}

test_higher_priority_wins if {
	rules := [
		_rule("a-low", {}, {"priority": 1, "set": {"destination_repository": "low/{repository}"}}),
		_rule("z-high", {}, {"priority": 5, "set": {"destination_repository": "high/{repository}"}}),
	]
	ruleset.destination_repository == "high/{repository}" with input as fx.base with data.replication.rules as rules
	ruleset.winners == {"z-high"} with input as fx.base with data.replication.rules as rules
}

test_equal_priority_smallest_id_wins if {
	rules := [
		_rule("b", {}, {"priority": 3, "set": {"priority": 20}}),
		_rule("a", {}, {"priority": 3, "set": {"priority": 70}}),
	]
	ruleset.priority == 70 with input as fx.base with data.replication.rules as rules
}

test_missing_priority_counts_zero if {
	rules := [
		_rule("a", {}, {"set": {"priority": 10}}),
		_rule("b", {}, {"priority": -1, "set": {"priority": 99}}),
		_rule("c", {}, {"priority": "high", "set": {"priority": 50}}),
	]
	ruleset.priority == 10 with input as fx.base with data.replication.rules as rules
}

test_each_value_resolved_independently if {
	rules := [
		_rule("a", {}, {"priority": 9, "set": {"priority": 80}}),
		_rule("b", {}, {"priority": 1, "set": {"retention": {"keep_last": 2}}}),
	]
	ruleset.priority == 80 with input as fx.base with data.replication.rules as rules
	ruleset.retention == {"keep_last": 2} with input as fx.base with data.replication.rules as rules
	not ruleset.destination_repository with input as fx.base with data.replication.rules as rules
}

test_tenant_rule_beats_global_on_priority if {
	tenants := {"acme": {"rules": [_rule("acme", {}, {"priority": 7, "set": {"priority": 95}})]}}
	rules := [_rule("global", {}, {"priority": 2, "set": {"priority": 5}})]
	ruleset.priority == 95 with input as fx.image({"tenant": "acme"})
		with data.replication.rules as rules
		with data.replication.tenants as tenants
}

test_deny_defaults_to_rule_denied if {
	rules := [_rule("block", {}, {"deny": [{"registry": "prod-us"}, {"registry": "prod-ap", "code": "EMBARGO"}]})]
	ruleset.deny == {
		{"registry": "prod-us", "code": "RULE_DENIED"},
		{"registry": "prod-ap", "code": "EMBARGO"},
	} with input as fx.base
		with data.replication.rules as rules
	ruleset.denied_by == {"RULE_DENIED": {"block"}, "EMBARGO": {"block"}} with input as fx.base
		with data.replication.rules as rules
}

test_chained_rule_denies if {
	rules := [_rule("a", {}, {"chain": ["b"]}), _rule("b", {"tag": "never"}, {"deny": [{"registry": "prod-us"}]})]
	denial := {"registry": "prod-us", "code": "RULE_DENIED"}
	denial in ruleset.deny with input as fx.base with data.replication.rules as rules
}

test_source_is_never_rule_denied if {
	rules := [_rule("a", {}, {"deny": [{"registry": "ci"}]})]
	count(ruleset.deny) == 0 with input as fx.base with data.replication.rules as rules
}

test_rule_denial_message_names_every_active_rule_using_the_code if {
	rules := [
		{"id": "b-block", "deny": [{"registry": "prod-us"}]},
		{"id": "a-block", "deny": [{"registry": "dev-us"}, {"registry": "sandbox", "code": "EMBARGO"}]},
	]
	ruleset.message("RULE_DENIED") == "denied by explicit rule a-block, b-block" with input as fx.base
		with data.replication.rules as rules
	ruleset.message("EMBARGO") == "denied by explicit rule a-block" with input as fx.base
		with data.replication.rules as rules
	not ruleset.message("UNUSED") with input as fx.base with data.replication.rules as rules
}
